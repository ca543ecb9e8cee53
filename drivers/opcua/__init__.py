"""OPC UA: subscriptions with a Read fallback, secured sessions, writes with read-back (``protocol: opcua``)."""
