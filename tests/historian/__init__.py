"""Historian bridge tests: pure schema and sequence logic, and real broker + database runs."""
