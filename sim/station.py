"""INTERFACE SKELETON - to be replaced by the physics implementation (helper A owns this file).

Contract used by sim.modbus_server / sim.runner (helper B) and by the tests:

    station = Station(params=StationParams(), start=datetime(2026, 1, 10, tzinfo=UTC), seed=1)
    station.step(dt_s)                  # advance simulated time deterministically (any dt > 0)
    station.now -> datetime             # simulated UTC time
    station.measurements() -> Measurements   (sim.readings; sensor faults applied)
    station.plc -> Plc                  # the station PLC: setpoints the protocol server writes
        plc.supply_setpoint_c           # float, secondary supply setpoint (degC)
        plc.pump_frequency_setpoint_hz  # float
        plc.pump_run_command            # bool
        plc.makeup_auto                 # bool, make-up pump holds the static pressure
        plc.valve_mode                  # ValveMode.AUTO (PI tracks setpoint) | ValveMode.MANUAL
        plc.manual_valve_pct            # float
        plc.limits -> PlcLimits         # min/max for each writable value; the server enforces them
        plc.reset_alarms()              # clears latched interlocks if their cause is gone
    station.faults -> Faults            # fault injection (see sim.faults)
    station.ledger -> EnergyLedger      # cumulative joules: primary_in, delivered, stored, losses
    station.truth                       # true (not measured) internal state for tests
"""
