"""The supply-curve controller: from outdoor temperature, curve and rooms to the PLC setpoint.

``controller`` is the pure core (``Controller.step(inputs, now) -> ControllerDecision``), built
from small parts each tested on its own: ``outdoor`` (plausibility and fallback), ``rooms``,
``comfort`` (comfort floor and optimum start), ``season`` (calendar, cut-out, frost), ``loops``
(PI, lag, ramp, limit lines). ``model`` holds the inputs and the published state, ``settings`` the
``controller:`` section, ``loader`` reads it with its curves. ``task`` wires the core to the
gateway (latest values, write queue, bus, commands, reload); ``harness`` to the simulator;
``curve_cli`` is ``heatgw curve``. Nothing is imported here, so ``gateway.config`` can import the
settings without pulling in the rest.
"""
