"""The dispatch side on one machine: a Mosquitto broker, a VictoriaMetrics TSDB and a Prometheus
server on loopback.

The demo runs the whole chain with them, and the tests use them as the real services they are.
Nothing is mocked: the broker is Debian's mosquitto with a config file of the test's own (TLS,
passwords and ACLs where a test asks for them), and the historian target is victoria-metrics,
which accepts the InfluxDB v2 line-protocol write API (``/api/v2/write``) and lets a test read
back what arrived through ``/api/v1/export``. Each service can be stopped and started again on
the same port, because outage tests need exactly that.

Each service is a child that the starter owns: its port must be free before it starts (so that
what answers there is the child, never a leftover of an earlier run), it runs in a session of its
own (a terminal's Ctrl-C or hang-up reaches only the starter, which stops the services in order),
and it is sent SIGTERM by the kernel if the starter dies without stopping it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PortInUse(RuntimeError):
    """A port a service was told to use is already held by another process: attaching to that
    process (a stale broker from an earlier run, say) would silently mix two runs."""


def claim_port(port: int, what: str) -> None:
    """Refuse to start ``what`` on ``port`` when something already listens there.

    Checked before the child starts, so that "the port answers" afterwards can only mean that
    our own child answers (``wait_for_port`` also fails if the child dies first).
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the services do: TIME_WAIT is no owner
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUse(f"{what}: port {port} on 127.0.0.1 is already in use by another process "
                            f"(a run that was not stopped? see `ss -ltnp 'sport = :{port}'`); "
                            "stop it or choose another port") from None


def die_with_parent() -> None:
    """``preexec_fn`` for a child service: Linux sends it SIGTERM when the process that started it
    dies, even by SIGKILL, so a killed demo or test run leaves no broker or database behind.

    Strictly, the signal follows the *thread* that started the child: start services from the
    main thread (or one that lives as long as they should), not from a short-lived worker."""
    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):  # not Linux: no parent-death signal, nothing else lost
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def wait_for_port(port: int, process: subprocess.Popen[bytes], what: str, timeout_s: float = 10.0) -> None:
    """Block until ``port`` accepts connections; fail loudly if ``process`` dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s} s")


def stop_process(process: subprocess.Popen[bytes] | None, timeout_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


def kill_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: no shutdown handler runs, which is the point of an outage test."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)


class _ChildProcess:
    """Stop and kill for a service running as one child process in ``self.process``."""

    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        """Clean stop (SIGTERM): clients see an orderly disconnect."""
        stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """Stop at once, as a crash or power cut would: clients see their connection reset."""
        kill_process(self.process)
        self.process = None


@dataclass
class Mosquitto(_ChildProcess):
    """A private broker. ``extra_config`` lines are appended to the listener's config.

    For TLS pass ``cafile``/``certfile``/``keyfile`` lines in ``extra_config`` (the test makes its
    own CA); for passwords, write a password file with ``mosquitto_passwd`` or
    ``Mosquitto.password_file`` and add ``password_file`` / ``acl_file`` lines.
    """

    directory: Path
    extra_config: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.directory / "mosquitto.log"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            *(self.extra_config or ["allow_anonymous true"]),
        ]
        if not any(line.startswith("allow_anonymous") for line in lines):
            lines.append("allow_anonymous false")
        self.config_path.write_text("\n".join(lines) + "\n")
        log = self.log_path.open("ab")
        claim_port(self.port, "mosquitto")
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config_path)], stdout=log, stderr=log,
                                        preexec_fn=die_with_parent, start_new_session=True)
        wait_for_port(self.port, self.process, "mosquitto")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def password_file(self, users: dict[str, str]) -> Path:
        """Write a mosquitto password file (hashed with mosquitto_passwd) and return its path."""
        path = self.directory / "passwords"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(path), user, password], check=True, timeout=30,
                           capture_output=True)
        return path


@dataclass
class VictoriaMetrics(_ChildProcess):
    """A private VictoriaMetrics with its own data directory; the InfluxDB v2 write API is at ``url``.

    ``extra_args`` go on its command line, e.g. ``["-dedup.minScrapeInterval=1ms"]``: without it
    VictoriaMetrics keeps two identical points where InfluxDB overwrites the same series+timestamp.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = (self.directory / "victoria-metrics.log").open("ab")
        claim_port(self.port, "victoria-metrics")
        self.process = subprocess.Popen(
            [VICTORIA_METRICS, f"-httpListenAddr=127.0.0.1:{self.port}",
             f"-storageDataPath={self.directory / 'data'}", "-retentionPeriod=100y",
             "-search.latencyOffset=0s", "-loggerLevel=ERROR", *self.extra_args],
            stdout=log, stderr=log, preexec_fn=die_with_parent, start_new_session=True,
        )
        wait_for_port(self.port, self.process, "victoria-metrics", timeout_s=20)

    def flush(self) -> None:
        """Make everything written so far visible to queries (VictoriaMetrics buffers briefly)."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()

    def export(self, match: str = '{__name__!=""}') -> list[dict[str, object]]:
        """Every series matching ``match`` with all its samples, as the JSON-lines export returns them."""
        self.flush()
        query = urllib.parse.urlencode({"match[]": match, "start": "0"})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=30) as reply:
            return [json.loads(line) for line in reply.read().decode().splitlines() if line.strip()]


@dataclass
class Prometheus(_ChildProcess):
    """A private Prometheus scraping ``targets`` (``host:port`` of /metrics endpoints) every second."""

    directory: Path
    targets: list[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "heatgw", "static_configs": [{"targets": self.targets}]}],
        }))
        log = (self.directory / "prometheus.log").open("ab")
        claim_port(self.port, "prometheus")
        self.process = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={self.directory / 'data'}", "--log.level=warn"],
            stdout=log, stderr=log, preexec_fn=die_with_parent, start_new_session=True,
        )
        wait_for_port(self.port, self.process, "prometheus", timeout_s=30)
        deadline = time.monotonic() + 30
        while True:  # listening comes before the storage is open: /-/ready says 503 until then
            try:
                urllib.request.urlopen(f"{self.url}/-/ready", timeout=2).read()
                return
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("prometheus did not become ready") from None
                time.sleep(0.1)

    def query(self, expression: str) -> list[dict[str, object]]:
        """The instant vector ``expression`` evaluates to now (``[]`` when nothing matches)."""
        query = urllib.parse.urlencode({"query": expression})
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{query}", timeout=10) as reply:
            answer = json.loads(reply.read())
        if answer.get("status") != "success":
            raise RuntimeError(f"prometheus query {expression!r} failed: {answer}")
        return list(answer["data"]["result"])
