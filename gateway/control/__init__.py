"""The supply-curve controller: from outdoor temperature, curve and rooms to the PLC setpoint.

``controller`` is the pure core (``Controller.step(inputs, now) -> ControllerDecision``), built
from small parts each tested on its own: ``outdoor`` (plausibility and fallback), ``rooms``,
``comfort`` (comfort floor and optimum start), ``season`` (calendar, cut-out, frost), ``loops``
(PI, lag, ramp, limit lines). ``model`` holds the inputs and the published state, ``learned`` what
the core has learned, ``settings`` the ``controller:`` section. These do no I/O (the import rules
test holds them to it). ``loader`` reads the settings with their curves, ``memory`` and
``operating_points`` keep files in the state directory, ``task`` wires the core to the gateway
(latest values, write queue, bus, commands, reload); ``tooling.harness`` wires it to the simulator;
``curve_cli`` is ``heatgw curve``. Nothing is imported here, so ``gateway.config`` can import the
settings without pulling in the rest.
"""
