"""Tests of the MQTT side: outbox, report by exception, payloads, commands, publisher (real broker)."""
