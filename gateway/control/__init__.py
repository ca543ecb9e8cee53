"""The supply-curve controller: from outdoor temperature and rooms to the PLC setpoint."""
