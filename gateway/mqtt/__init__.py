"""The gateway's MQTT side: durable outbox, publisher, status and commands."""
