"""One synchronous, gzipped write of a batch through ``influxdb-client``, with its failures sorted.

Retrying belongs to the caller (it also has to know when to give up: shutdown, a stale MQTT
session); this module only says *what kind* of failure happened, because the kinds need opposite
reactions: a database that is down or slow must be waited for, whereas lines it refuses as
malformed will be refused forever and must not block every station behind them.
"""

from __future__ import annotations

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from gateway.historian.settings import InfluxSettings


class WriteError(Exception):
    """A batch was not written. ``retry`` says whether the same batch can succeed later."""

    def __init__(self, reason: str, retry: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry
        self.status = status


RETRY_STATUSES = {401, 403, 404, 408, 425, 429}
"""4xx answers worth waiting out: a token or bucket the operator can fix, throttling, timeouts.
Every 5xx is retried too; any other 4xx (400 malformed, 422 outside retention) is final."""

TOO_LARGE = 413


class DatabaseWriter:
    """The InfluxDB v2 write API (or anything serving ``/api/v2/write``) for one bucket."""

    def __init__(self, settings: InfluxSettings) -> None:
        self._bucket = settings.bucket
        self._org = settings.org
        self._client = InfluxDBClient(
            url=settings.url, token=settings.read_token(), org=settings.org,
            timeout=int(settings.timeout_s * 1000), enable_gzip=settings.gzip,
            verify_ssl=settings.verify_tls, ssl_ca_cert=str(settings.ca_file) if settings.ca_file else None,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, body: bytes) -> None:
        """Write newline-separated lines (millisecond timestamps); raise WriteError on any failure."""
        try:
            self._api.write(bucket=self._bucket, org=self._org, record=body, write_precision=WritePrecision.MS)
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _first_line(exc.body) or exc.reason or f"HTTP {status}"
            retry = status >= 500 or status in RETRY_STATUSES
            raise WriteError(f"HTTP {status}: {message}", retry=retry, status=status) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"{type(exc).__name__}: {_first_line(str(exc))}", retry=True) from None

    def close(self) -> None:
        self._client.close()


def _first_line(text: object) -> str:
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    lines = str(text or "").strip().splitlines()
    return lines[0][:300] if lines else ""
