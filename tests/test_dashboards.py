"""The shipped Grafana dashboards read what the historian really stores.

The whole chain runs (the simulated station, the unit's own ``heatgw run`` with its controller, a
real Mosquitto, the historian bridge, VictoriaMetrics); then every query of every panel of
``config/grafana/*.json`` is sent to VictoriaMetrics' Prometheus API, as Grafana would send it for
the demo station, and must return data. A renamed field or tag fails here, not on a dispatcher's
empty screen.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tooling.devstack import Mosquitto, VictoriaMetrics, stop_process
from sim.modbus_server import StationModbusServer
from tests.gateway.conftest import station_server  # noqa: F401 - a fixture used here
from tests.historian.conftest import BridgeProcess, bridge_on, bridges, tsdb  # noqa: F401 - fixtures
from tests.mqtt.conftest import STATION, broker, until  # noqa: F401 - broker is a fixture
from tests.test_deployment import install_config, unit_command

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "config" / "grafana").glob("*.json"))
GRAFANA_VARIABLES = {"$station": STATION, "$__rate_interval": "1m", "${datasource}": "historian"}


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target, with Grafana's variables filled in."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], expr))
    return found


def query_range(tsdb: VictoriaMetrics, expr: str, seconds: float = 600) -> list[dict[str, Any]]:
    now = time.time()
    params = urllib.parse.urlencode({"query": expr, "start": f"{now - seconds:.0f}", "end": f"{now:.0f}", "step": "5"})
    with urllib.request.urlopen(f"{tsdb.url}/api/v1/query_range?{params}", timeout=10) as reply:
        answer = json.loads(reply.read())
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_a_dashboard_is_valid_grafana_json_with_a_data_source_variable(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"].startswith("heatgw-") and dashboard["panels"]
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


async def test_every_panel_query_returns_data_from_the_running_chain(
        tmp_path: Path, station_server: StationModbusServer, broker: Mosquitto,  # noqa: F811
        tsdb: VictoriaMetrics, bridges: Callable[..., BridgeProcess]) -> None:  # noqa: F811
    etc, state = tmp_path / "etc" / "heatgw", tmp_path / "state"
    install_config(etc)
    station = etc / "station.yaml"
    station.write_text(station.read_text().replace("port: 5020", f"port: {station_server.port}")
                       .replace("port: 1883", f"port: {broker.port}"))
    # The controller's states feed panels too: a cycle every 5 s instead of the station's minute
    # gets them there without a minute's wait; every other setting is the installed one.
    controller = etc / "controller.yaml"
    controller.write_text(controller.read_text().replace("cycle_s: 60", "cycle_s: 5"))
    bridge = bridges()
    bridge.start()
    process: subprocess.Popen[bytes] | None = None
    every = [(path.stem, title, expr) for path in DASHBOARDS
             for title, expr in queries(json.loads(path.read_text(encoding="utf-8")))]
    empty: list[str] = []

    def all_answer() -> bool:
        tsdb.flush()
        empty[:] = [f"{name}: {title}: {expr}" for name, title, expr in every if not query_range(tsdb, expr)]
        return not empty

    with (tmp_path / "gateway.log").open("ab") as journal:
        try:
            process = subprocess.Popen(unit_command("ExecStart", etc, state), stdout=journal, stderr=journal, cwd=tmp_path)
            try:
                await until(all_answer, 90, "every panel's query to return data")
            except BaseException:
                raise AssertionError("panels without data:\n" + "\n".join(empty)) from None
        finally:
            stop_process(process)
