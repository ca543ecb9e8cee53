"""Acquisition, whatever the protocol: what the core asks of every device and of every driver.

A protocol lives in its own folder under ``drivers/`` (its configuration models, its session and
its producer of samples); the core only knows the models in ``models``, the ``Device`` interface
in ``device`` and the ``Driver`` entry in ``driver``. ``gateway.protocols`` lists the drivers.
"""
