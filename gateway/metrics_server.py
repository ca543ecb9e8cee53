"""A Prometheus ``/metrics`` endpoint on its own thread, for the gateway and the historian bridge alike."""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from gateway.config_base import MetricsSettings
from gateway.logs import kv

log = logging.getLogger(__name__)


class MetricsServer:
    """The HTTP endpoint on its own thread, for the lifetime of a ``with`` block.

    A port that cannot be bound is logged and the endpoint is left out: metrics are for watching
    the station, and must never be the reason it stops polling and controlling.
    """

    def __init__(self, settings: MetricsSettings, collector: Collector) -> None:
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> MetricsServer:
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            self._server, self._thread = start_http_server(self.settings.port, addr=self.settings.host,
                                                           registry=self.registry)
        except OSError as exc:
            log.error("metrics endpoint not started", extra=kv(address=address, reason=exc.strerror))
            return self
        log.info("metrics endpoint listening", extra=kv(address=address))
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
