"""``heatgw report`` on a historian filled by a simulated station with a known cold spell.

The simulator runs three days from the season's first day with the primary supply lost for a day
(rooms fall to 12-13 °C, then recover). What its sensors report goes, as the gateway's own
telemetry encoder writes it, through a real Mosquitto and the real historian bridge into
VictoriaMetrics, with the simulation's timestamps; so do the station events the gateway's own event
engine derives from those readings (the supply interruption), numbered in the same sequence. The
report command then reads it back. Its room-day tiers, heat and interruption must agree with the
simulator's truth (true air and supply temperatures, the fault's own window, the meter's own
register), not with anything the test computed from the same telemetry.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt

from gateway.alarms.events import EventEngine, StationEvent
from gateway.config import load_gateway_config
from tooling.devstack import Mosquitto, VictoriaMetrics
from gateway.mqtt.payloads import TelemetryEncoder, config_hash, event_transition, meta
from gateway.samples import Sample, SampleBatch
from sim.readings import Measurements
from sim.station import Station
from tests.historian.conftest import BridgeProcess, bridge_on, bridges, broker, tsdb, wait_until  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parents[2]
STATION_FILE = ROOT / "config" / "station.yaml"
CONTROLLER_FILE = ROOT / "config" / "controller.yaml"
ZONE = ZoneInfo("Asia/Shanghai")
FIRST_DAY = dt.date(2026, 11, 15)  # the demo's heating_from: the first-week report applies
DAYS = 3
REPORT_EVERY_S = 300  # the station's integrity interval: every tag at least this often
TIER_EDGES = (18.0, 16.0, 12.0)
OUTAGE_MINUTES = (20 * 60, 44 * 60)  # the primary supply is lost from 20:00 on the first day to 20:00 on the second
INTERRUPTION_TOLERANCE_S = 2 * REPORT_EVERY_S
"""The event engine sees the station through readings every ``REPORT_EVERY_S``: its start and its
end may each be one reading after the true change."""


def room_tag(room: str) -> str:
    return "room_" + room.lower().replace("-", "_") + "_temp"


def samples_of(measured: Measurements) -> list[Sample]:
    t = measured.timestamp
    values = {
        "outdoor_temp": measured.outdoor_c, "primary_flow": measured.primary_flow_m3h,
        "primary_supply_pressure": measured.primary_supply_mpa, "primary_supply_temp": measured.primary_supply_c,
        "secondary_flow": measured.secondary_flow_m3h, "secondary_supply_pressure": measured.secondary_supply_mpa,
        "secondary_supply_temp": measured.secondary_supply_c, "secondary_return_temp": measured.secondary_return_c,
        "meter_energy_gj": measured.meter.energy_gj,
    }
    for room in measured.rooms:
        if room.temperature_c is not None:
            values[room_tag(room.name)] = room.temperature_c
    flags = {"primary_supply_lost": measured.primary_supply_lost, "pump_running": measured.pump_running,
             "pump_fault": measured.pump_fault}
    return [Sample(tag, round(value, 3), t) for tag, value in values.items()] + [
        Sample(tag, flag, t) for tag, flag in flags.items()]


@dataclass
class Simulated:
    """What the station sent (telemetry batches, each followed by the event updates it caused) and
    the truth the report is checked against."""

    sent: list[tuple[list[Sample], list[StationEvent]]] = field(default_factory=list)
    lowest: dict[str, dict[dt.date, float]] = field(default_factory=dict)
    heat_gj: float = 0.0
    interrupted: list[float] = field(default_factory=list)  # minutes' end times when no heat reached the users


def simulate() -> Simulated:
    """Telemetry batches and the station events they cause; each room's true lowest hourly mean in
    06-21 h per local day; the heat the meter counted between the first and the last reading the
    report period holds; and the minutes no heat reached the users, by the interruption rule's own
    definition applied to the simulator's truth (the primary supply lost, the true supply below the
    collapse threshold, or the pump stopped)."""
    config = load_gateway_config(STATION_FILE)
    assert config.events is not None and config.events.interruption is not None
    collapsed_below_c = config.events.interruption.supply_collapsed_below_c
    engine = EventEngine(config.events, config.station.timezone, config.report.refund_tiers)
    start = dt.datetime.combine(FIRST_DAY, dt.time(0), ZONE)
    station = Station(start=start, seed=3)
    simulated = Simulated()
    minutes: dict[str, list[tuple[dt.datetime, float]]] = {}
    end = (start + dt.timedelta(days=DAYS)).timestamp()
    energy: list[float] = []
    for minute in range(DAYS * 1440):
        if minute == OUTAGE_MINUTES[0]:
            station.faults.primary_loss()
        if minute == OUTAGE_MINUTES[1]:
            station.faults.clear("primary_loss")
        station.step(60)
        truth = station.truth
        if (OUTAGE_MINUTES[0] <= minute < OUTAGE_MINUTES[1] or truth.secondary_supply_c < collapsed_below_c
                or not truth.pump_running):
            simulated.interrupted.append(station.time_s)
        local = dt.datetime.fromtimestamp(station.time_s, ZONE)
        for room, value in truth.rooms_c.items():
            minutes.setdefault(room, []).append((local - dt.timedelta(seconds=1), value))
        if (minute + 1) * 60 % REPORT_EVERY_S == 0:
            measured = station.measurements()
            samples = samples_of(measured)
            events = engine.on_item(SampleBatch("plc", "fast", tuple(samples)), measured.timestamp)
            simulated.sent.append((samples, events + engine.tick(measured.timestamp)))
            if measured.timestamp < end:  # a reading at midnight belongs to the next day
                energy.append(measured.meter.energy_gj)
    lowest = simulated.lowest
    for room, values in minutes.items():
        hours: dict[dt.datetime, list[float]] = {}
        for at, value in values:
            hours.setdefault(at.replace(minute=0, second=0, microsecond=0), []).append(value)
        for hour, readings in hours.items():
            if dt.time(6) <= hour.time() < dt.time(21):
                day = lowest.setdefault(room, {})
                day[hour.date()] = min(day.get(hour.date(), 99.0), mean(readings))
    simulated.heat_gj = energy[-1] - energy[0]
    return simulated


def publish(broker_port: int, sent: list[tuple[list[Sample], list[StationEvent]]]) -> float:
    """The station's meta, numbered telemetry and event updates (one sequence, as the gateway sends
    them through its outbox); the last sample's time."""
    config = load_gateway_config(STATION_FILE)
    encoder = TelemetryEncoder.for_config(config)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="report-station", protocol=mqtt.MQTTv311)
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", broker_port)
    client.loop_start()
    try:
        client.publish("heatgw/demo-01/meta", meta(config, config_hash(config)), qos=1, retain=True).wait_for_publish(10)
        numbers = itertools.count(1)
        infos = []
        for batch, events in sent:
            infos.append(client.publish("heatgw/demo-01/telemetry", encoder.encode(next(numbers), batch), qos=1))
            infos.extend(client.publish("heatgw/demo-01/events", event_transition(next(numbers), event), qos=1)
                         for event in events)
        for info in infos:
            info.wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent[-1][0][0].timestamp


def stored_until(tsdb: VictoriaMetrics, timestamp: float) -> bool:
    series = tsdb.export('{__name__="telemetry_value",station="demo-01",tag="meter_energy_gj"}')
    return bool(series) and max(series[0]["timestamps"]) >= round(timestamp * 1000)  # type: ignore[arg-type]


def near_an_edge(value: float) -> bool:
    """Sensors report every 5-15 min in 0.1 K steps: within 0.4 K of a tier edge, either side is honest."""
    return any(abs(value - edge) < 0.4 for edge in TIER_EDGES)


def tier_of(value: float) -> str:
    return "100" if value < 12 else "50" if value < 16 else "20" if value < 18 else ""


def test_room_day_tiers_and_heat_match_the_simulated_truth(
        tmp_path: Path, broker: Mosquitto, tsdb: VictoriaMetrics,  # noqa: F811
        bridges: Callable[..., BridgeProcess]) -> None:  # noqa: F811
    simulated = simulate()
    truth, true_heat = simulated.lowest, simulated.heat_gj
    bridge = bridges()
    bridge.start()
    last = publish(broker.port, simulated.sent)
    wait_until(lambda: stored_until(tsdb, last), 60, "every telemetry message in the database")
    out = tmp_path / "report"
    to_day = FIRST_DAY + dt.timedelta(days=DAYS - 1)
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "report", "--historian", tsdb.url, "--from", FIRST_DAY.isoformat(),
         "--to", to_day.isoformat(), "--config", str(STATION_FILE), "--controller", str(CONTROLLER_FILE),
         "--csv", str(out), "--html", str(out / "report.html")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    rows = list(csv.DictReader((out / "rooms.csv").open(encoding="utf-8")))
    assert len(rows) == 6 * DAYS, "every representative room on every day"
    compared = refunded = 0
    for row in rows:
        day, room = dt.date.fromisoformat(row["day"]), row["room"]
        true_lowest = truth[room][day]
        reported = float(row["lowest_day_hour_c"])
        assert abs(reported - true_lowest) < 0.5, (room, day, reported, true_lowest)
        if not near_an_edge(true_lowest):
            assert row["refund_pct"] == tier_of(true_lowest), (room, day, reported, true_lowest)
            compared += 1
        refunded += row["refund_pct"] != ""
    assert compared >= 12, "most room-days are far from an edge and compared exactly"
    assert {row["refund_pct"] for row in rows} >= {"", "20", "50"}, "the spell reaches the 50 % tier"
    assert refunded >= 6

    summary = dict(csv.reader((out / "summary.csv").open(encoding="utf-8")))
    heat = float(summary["heat used"].split()[0])
    assert abs(heat - true_heat) < 0.05, (heat, true_heat)  # the report prints one decimal
    first_week = list(csv.DictReader((out / "first-week.csv").open(encoding="utf-8")))
    assert len(first_week) == 24 * DAYS, "every hour of the first week in the period has a row"
    blank = [row["hour"] for row in first_week if row["primary_supply_temp"] == ""]
    assert blank == ["2026-11-15T00:00:00+08:00"], "only the hour before the first reading has no mean"
    assert {row["report_at"][11:16] for row in first_week} == {"09:00", "17:00"}
    # The interruption: one, as long as the truth says no heat reached the users.
    minutes = simulated.interrupted
    assert all(b - a == 60 for a, b in itertools.pairwise(minutes)), "the truth has one unbroken interruption"
    true_start, true_end = minutes[0] - 60, minutes[-1]
    [interruption] = list(csv.DictReader((out / "interruptions.csv").open(encoding="utf-8")))
    started = dt.datetime.fromisoformat(interruption["started"]).timestamp()
    ended = dt.datetime.fromisoformat(interruption["ended"]).timestamp()
    reported_s = float(interruption["duration_h"]) * 3600
    print(f"interruption: true {(true_end - true_start) / 3600:.3f} h from {true_start}, reported "
          f"{reported_s / 3600:.3f} h from {started}")
    assert true_start <= started <= true_start + INTERRUPTION_TOLERANCE_S
    assert true_end <= ended <= true_end + INTERRUPTION_TOLERANCE_S
    assert abs(reported_s - (true_end - true_start)) <= INTERRUPTION_TOLERANCE_S
    assert abs(reported_s - (ended - started)) < 36, "the duration is the end less the start (to 0.01 h)"
    assert float(interruption["escalated_h"]) == 24, "escalated at 1, 8 and 24 h"
    assert summary["supply interruptions"] == f"1, {float(interruption['duration_h']):.2f} h in all"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 2 and "A-top-corner" in page
    assert interruption["started"] in page
    assert json.dumps(FIRST_DAY.isoformat())[1:-1] in page
