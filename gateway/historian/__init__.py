"""The historian bridge: MQTT telemetry, controller state and alarms into an InfluxDB v2 write API."""
