"""Tooling around the gateway, apart from its production path: the demo, the development stack
that starts brokers and databases, and the harness and clock that couple the controller to the
simulator. Only this package (and the tests and benches) imports ``sim``."""
