"""The controller's memory: what it learned survives a restart, bounded and dropped where it no longer applies."""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml

from gateway.control.learned import CircuitMemory, ControllerMemory, DailyMean
from gateway.control.memory import FILE_NAME, MemoryFile
from gateway.control.season import DailyMeans
from tests.control.conftest import CONFIG_DIR, CONTROLLER_YAML, controller
from tests.control.test_task import Rig


async def test_what_was_learned_survives_a_restart(tmp_path: Path) -> None:
    memory = MemoryFile(tmp_path / FILE_NAME)
    first = Rig(memory=memory)
    await first.run(7 * 3600)  # midnight to 07:00 local: a night, a boost, a morning learned
    learned = first.task._controller.circuits["radiators"]
    assert learned.optimum.factors, "the boost should have taught the rooms' factors"
    assert learned.trims["night"].integral != 0.0 or learned.trims["day"].integral != 0.0
    assert memory.path.exists(), "saved every ten minutes while running"
    assert first.task.save_memory()

    second = Rig(memory=memory)  # a restart: a new task on the same file
    restored = second.task._controller.circuits["radiators"]
    assert restored.optimum.factors == pytest.approx(learned.optimum.factors)
    assert learned.optimum.achieved, "the boost should have taught the rooms' achieved rates"
    assert restored.optimum.achieved == learned.optimum.achieved
    assert learned.dynamics.cooling_per_h, "the coast should have taught the rooms' cooling"
    assert restored.dynamics.cooling_per_h == pytest.approx(learned.dynamics.cooling_per_h)
    assert restored.trims["day"].integral == pytest.approx(learned.trims["day"].integral)
    assert restored.trims["night"].integral == pytest.approx(learned.trims["night"].integral)
    assert Rig().task._controller.circuits["radiators"].optimum.factors == {}  # without memory: fresh


def _saved(curve: str, **circuit: object) -> ControllerMemory:
    values = {"curve": curve, "day_trim_k": 1.5, "night_trim_k": -0.5, "heatup_factors": {"A-1": 3.0}} | circuit
    return ControllerMemory(saved_at=0.0, circuits={"radiators": CircuitMemory.model_validate(values)})


def test_a_new_curve_drops_the_trims_but_keeps_the_building_factors() -> None:
    fresh = controller()
    dropped = fresh.restore(_saved("demo-01-radiators v0 (someone, 2020-01-01)"), now=0.0)
    circuit = fresh.circuits["radiators"]
    assert circuit.trims["day"].integral == 0.0 and circuit.trims["night"].integral == 0.0
    assert circuit.optimum.factors == {"A-1": 3.0}
    assert any("trims" in reason and "v0" in reason for reason in dropped)


def test_restored_values_are_bounded_by_the_settings_in_force() -> None:
    fresh = controller()
    circuit = fresh.circuits["radiators"]
    saved = _saved(circuit.curve.identity, day_trim_k=40.0, heatup_factors={"A-1": 99.0, "D-9": 2.0},
                   cooling_per_h={"A-1": 0.05, "D-9": 0.04},
                   heatup_rates={"A-1": [float(n) for n in range(1, 11)], "D-9": [1.0]})
    dropped = fresh.restore(saved, now=0.0)
    assert circuit.trims["day"].integral == circuit.settings.room_trim.max_trim_k
    assert circuit.trims["night"].integral == -0.5
    assert circuit.optimum.factors == {"A-1": circuit.settings.comfort.optimum_start.max_factor}
    assert circuit.dynamics.cooling_per_h == {"A-1": 0.05}
    assert circuit.optimum.achieved == {"A-1": [4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]}  # the latest RATE_MEMORY
    assert dropped == ["radiators: heat-up factor of room D-9 (no longer configured)",
                       "radiators: heat-up rates of room D-9 (no longer configured)",
                       "radiators: cooling rate of room D-9 (no longer configured)"]
    gone = ControllerMemory(saved_at=0.0, circuits={"floor": _saved("x").circuits["radiators"]})
    assert fresh.restore(gone, now=0.0) == ["circuit floor (no longer configured)"]


def test_daily_means_are_restored_only_from_a_recent_save() -> None:
    days = [DailyMean(day=dt.date(2026, 11, d), mean_c=4.0 + d / 10) for d in (1, 2, 3)]
    recent = ControllerMemory(saved_at=1_000_000.0, daily_means=days)
    fresh = controller()
    assert fresh.restore(recent, now=1_000_000.0 + 3600) == []
    assert fresh.daily.complete == [4.1, 4.2, 4.3]
    stale = controller()
    assert stale.restore(recent, now=1_000_000.0 + 3 * 86_400) == ["daily means (saved 72 h ago)"]
    assert stale.daily.complete == []


def test_restored_days_go_before_the_days_counted_since() -> None:
    means = DailyMeans(keep_days=3)
    means.add(dt.date(2026, 11, 5), 2.0, 50_000)
    means.add(dt.date(2026, 11, 6), 0.0, 1)  # closes the 5th
    means.restore([(dt.date(2026, 11, 3), 5.0), (dt.date(2026, 11, 4), 4.0), (dt.date(2026, 11, 5), 9.0)])
    assert means.days == [(dt.date(2026, 11, 3), 5.0), (dt.date(2026, 11, 4), 4.0), (dt.date(2026, 11, 5), 2.0)]


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"format": 2, "saved_at": 0}),
    json.dumps({"format": 1, "saved_at": 0, "circuits": {"radiators": {"curve": "c", "day_trim_k": "warm",
                                                                         "night_trim_k": 0}}}),
    '{"format": 1, "saved_at": 0, "circuits": {"radiators": {"curve": "c", "day_trim_k": NaN, "night_trim_k": 0}}}',
])
def test_a_damaged_memory_is_reported_and_the_controller_starts_fresh(
        tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / FILE_NAME
    path.write_text(content)
    with caplog.at_level(logging.ERROR, logger="gateway.control.memory"):
        rig = Rig(memory=MemoryFile(path))
    assert rig.task._controller.circuits["radiators"].trims["day"].integral == 0.0
    assert [r.getMessage() for r in caplog.records] == ["controller memory refused: starting from the settings"]
    fields = caplog.records[0].__dict__["fields"]
    assert fields["file"] == path and fields["reason"]


def test_a_failed_save_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    memory = MemoryFile(blocker / FILE_NAME)
    with caplog.at_level(logging.ERROR, logger="gateway.control.memory"):
        assert memory.save(ControllerMemory(saved_at=0.0)) is False
    assert [r.getMessage() for r in caplog.records] == ["controller memory not saved"]


def test_the_save_is_atomic_and_readable(tmp_path: Path) -> None:
    memory = MemoryFile(tmp_path / "state" / FILE_NAME)
    saved = _saved("c")
    assert memory.save(saved)
    assert memory.load() == saved
    assert not list((tmp_path / "state").glob("*.tmp"))
