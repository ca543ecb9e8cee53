"""The station's own record of where it ran: hourly rows, bounded, read back by ``heatgw curve``."""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import pytest

from gateway.control.curve_cli import curve_command, read_points
from gateway.control.model import ControllerState
from gateway.control.operating_points import COLUMNS, OperatingPointLog
from tests.control.conftest import CONFIG_DIR, controller
from tests.control.test_controller import NOON, inputs

HOUR = 3600.0
START = NOON - NOON % HOUR  # an hour boundary


def state_at(timestamp: float, outdoor: float = -5.0, **changes: object) -> ControllerState:
    """A real controller state, moved to ``timestamp`` with the circuit fields in ``changes``."""
    state = controller().step(inputs(outdoor=outdoor), timestamp).state
    circuit = dataclasses.replace(state.circuits[0], **changes)
    return dataclasses.replace(state, timestamp=timestamp, circuits=(circuit,))


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_one_row_per_hour_of_means_written_when_the_hour_is_over(tmp_path: Path) -> None:
    path = tmp_path / "operating-points.csv"
    log = OperatingPointLog(path)
    for minute, (setpoint, phase) in enumerate([(50.0, "day"), (52.0, "day"), (60.0, "preheat")]):
        log.add(state_at(START + 60.0 * minute, setpoint_c=setpoint, phase=phase, room_used_c=18.0 + minute))
    assert not path.exists()  # the hour is not over yet
    log.add(state_at(START + HOUR, setpoint_c=40.0))
    (row,) = rows(path)
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert row["circuit"] == "radiators" and row["cycles"] == "3" and row["phase"] == "day"
    assert float(row["setpoint_c"]) == pytest.approx(54.0) and float(row["room_c"]) == pytest.approx(19.0)
    assert float(row["outdoor_c"]) == pytest.approx(-5.0)
    assert row["hour_utc"].endswith(":00Z")
    log.close()  # the hour in progress, as a partial row
    assert [r["cycles"] for r in rows(path)] == ["3", "1"]


def test_hours_without_heating_and_rooms_are_handled(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    log = OperatingPointLog(path)
    log.add(state_at(START, heating=False))
    log.add(state_at(START + HOUR, room_used_c=None))
    log.add(state_at(START + 2 * HOUR))
    (row,) = rows(path)  # the hour that did not heat wrote nothing
    assert row["room_c"] == "" and row["cycles"] == "1"


def test_the_file_is_kept_to_its_bound_and_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "points.csv"
    log = OperatingPointLog(path, keep_rows=10)
    for hour in range(30):
        log.add(state_at(START + hour * HOUR, setpoint_c=float(hour)))
    kept = rows(path)
    assert 10 <= len(kept) <= 11 and float(kept[-1]["setpoint_c"]) == 28.0  # hour 29 is in progress
    again = OperatingPointLog(path, keep_rows=10)  # a restart counts what is there and appends
    again.add(state_at(START + 40 * HOUR, setpoint_c=40.0))
    again.close()
    after = rows(path)
    assert after[-1]["setpoint_c"] == "40.00" and len(after) <= 11
    assert path.read_text().count("hour_utc") == 1


def test_a_foreign_file_is_kept_aside_and_a_full_disk_is_only_logged(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "points.csv"
    path.write_text("something,else\n1,2\n")
    log = OperatingPointLog(path)
    log.add(state_at(START))
    log.close()
    assert (tmp_path / "points.csv.old").read_text() == "something,else\n1,2\n"
    assert len(rows(path)) == 1
    blocked = OperatingPointLog(tmp_path / "points.csv" / "cannot-be-a-directory.csv")
    with caplog.at_level(logging.ERROR):
        blocked.add(state_at(START))
        blocked.close()
    assert "operating points not written" in caplog.text


def test_heatgw_curve_draws_the_circuits_own_points(tmp_path: Path) -> None:
    path = tmp_path / "operating-points.csv"
    log = OperatingPointLog(path)
    for hour, outdoor in enumerate((-5.0, 0.0)):
        log.add(state_at(START + hour * HOUR, outdoor=outdoor, setpoint_c=60.0 - hour))
    log.close()
    with path.open("a", encoding="utf-8") as handle:  # another circuit's row in the same file
        handle.write("2027-01-10T06:00Z,floor,-5.00,-5.00,40.00,40.00,,day,60\n")
    outdoor, setpoint = read_points(path, "radiators")
    assert np.allclose(outdoor, [-5.0, 0.0]) and np.allclose(setpoint, [60.0, 59.0])
    out = io.StringIO()
    assert curve_command(CONFIG_DIR / "curves" / "radiators-75-50.yaml", tmp_path / "curve.png", path, out=out) == 0
    assert (tmp_path / "curve.png").stat().st_size > 10_000
