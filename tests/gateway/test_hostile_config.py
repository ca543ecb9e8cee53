"""Hostile and ambiguous configuration files: every one is refused by the real ``heatgw check`` with
exit 2 and ``file:line:col: field: message``, never a traceback, in bounded time and memory.

The corpus is ``tests/data/hostile/`` (made by its ``generate.py``); files that cannot be made
there (a device, a FIFO, a directory, a file too large) are made here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import load_gateway_config
from gateway.yaml_source import MAX_FILE_BYTES, ConfigError, load_yaml

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "data" / "hostile"
CORPUS = sorted(HOSTILE.glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (\d+) (.+?) \| (.*)$")
SPECIAL = {  # files whose first line cannot carry the expectation
    "utf16_station.yaml": (1, "(document)", "the file is UTF-16: save it as UTF-8"),
    "binary_png.yaml": (1, "(document)", "not UTF-8 text (byte 0x89): save the file as UTF-8"),
}
PEAK_RSS_LIMIT = 200 * 1024 * 1024
TIMEOUT_S = 120.0  # generous: the bound asserted is memory; this only ends a runaway


def expectation(path: Path) -> tuple[int, str, str]:
    if path.name in SPECIAL:
        return SPECIAL[path.name]
    match = EXPECT.match(path.read_bytes().split(b"\n", 1)[0].decode("ascii", "replace"))
    assert match, f"{path.name} lacks its '# expect: LINE FIELD | TEXT' header"
    return int(match[1]), match[2], match[3]


@dataclass
class Run:
    """One ``heatgw check`` child: its exit code, output, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int


MEASURED = """
import os, sys
rss_file, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execv(argv[0], argv)
_, status, usage = os.wait4(pid, 0)
with open(rss_file, "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""
"""Runs a command and writes its peak RSS (KiB). Why a small process in between: a child that
Python spawns (vfork) and execs is charged the parent's resident size as its peak, so measured
from the test process, ``heatgw check`` would weigh as much as pytest itself does at the time.
Forked from this small helper, it is charged only the helper's few megabytes and its own."""


def heatgw_check(*files: Path | str, tmp: Path) -> Run:
    """Run the real CLI in a child process and measure that child alone (``wait4``'s rusage)."""
    out, err = tmp / f"out-{threading.get_ident()}", tmp / f"err-{threading.get_ident()}"
    rss = tmp / f"rss-{threading.get_ident()}"
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        child = subprocess.Popen([sys.executable, "-c", MEASURED, str(rss), sys.executable, "-m", "gateway", "check",
                                  *map(str, files)],
                                 stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, cwd=ROOT,
                                 start_new_session=True)
    killer = threading.Timer(TIMEOUT_S, lambda: os.killpg(child.pid, signal.SIGKILL))
    killer.start()
    try:
        child.wait()
    finally:
        killer.cancel()
    peak_kib = int(rss.read_text()) if rss.exists() else 0
    return Run(child.returncode, out.read_text(errors="replace"), err.read_text(errors="replace"),
               time.monotonic() - started, peak_kib * 1024)


def assert_refused_at(run: Run, path: Path | str, line: int, field: str = "", fragment: str = "") -> None:
    assert run.returncode == 2, (run.returncode, run.stderr[-2000:])
    assert "Traceback" not in run.stderr + run.stdout, run.stderr[-3000:]
    first = run.stderr.strip().splitlines()[0]
    assert first.startswith(f"{path}:{line}:"), first
    assert f": {field}:" in first, first
    assert fragment in first, first


def test_the_hostile_corpus_has_more_than_fifty_files_of_every_kind() -> None:
    assert len(CORPUS) >= 50
    kinds = {"station": 0, "controller": 0, "curve": 0, "historian": 0}
    for path in CORPUS:
        text = path.read_bytes()
        kind = ("historian" if b"influxdb:" in text else "curve" if b"\ncurve:" in text
                else "controller" if b"\ncontroller:" in text else "station")
        kinds[kind] += 1
    assert all(count >= 2 for count in kinds.values()), kinds


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_every_hostile_file_is_refused_by_the_real_cli_with_exit_2_at_its_line(path: Path, tmp_path: Path) -> None:
    line, field, fragment = expectation(path)
    run = heatgw_check(path, tmp=tmp_path)
    assert_refused_at(run, path, line, field, fragment)
    assert run.peak_rss < PEAK_RSS_LIMIT, f"peak RSS {run.peak_rss / 1e6:.0f} MB"


def test_a_device_a_fifo_a_directory_or_a_missing_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    fifo = tmp_path / "station.fifo"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    for path, where, message in [("/dev/zero", "/dev/zero:1:1: (document):", "not a regular file"),
                                 (fifo, f"{fifo}:1:1: (document):", "not a regular file"),
                                 (tmp_path, f"{tmp_path}: cannot read file:", "it is a directory"),
                                 (tmp_path / "missing.yaml", f"{tmp_path / 'missing.yaml'}: cannot read file:",
                                  "No such file or directory")]:
        run = heatgw_check(path, tmp=tmp_path)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.startswith(where) and message in run.stderr, run.stderr
        assert run.peak_rss < PEAK_RSS_LIMIT, f"{path}: peak RSS {run.peak_rss / 1e6:.0f} MB"


def test_a_curve_named_as_dev_zero_is_refused_at_the_controller_line_in_bounded_memory(tmp_path: Path) -> None:
    path = HOSTILE / "controller_curve_is_dev_zero.yaml"
    line, field, fragment = expectation(path)
    run = heatgw_check(path, tmp=tmp_path)
    assert_refused_at(run, path, line, field, fragment)
    assert run.peak_rss < PEAK_RSS_LIMIT


def test_a_file_larger_than_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    big = tmp_path / "station.yaml"
    big.write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    run = heatgw_check(big, tmp=tmp_path)
    assert_refused_at(run, big, 1, "(document)", f"more than the {MAX_FILE_BYTES} a configuration file may have")


def test_the_largest_file_allowed_is_parsed_in_bounded_memory_up_to_the_value_limit(tmp_path: Path) -> None:
    flat = tmp_path / "station.yaml"
    text = "station: {id: s1, name: S}\nvalues:\n" + "- 1\n" * (MAX_FILE_BYTES // 4)
    flat.write_text(text[:MAX_FILE_BYTES])
    run = heatgw_check(flat, tmp=tmp_path)
    assert run.returncode == 2 and "more than 100000 values: too many for a configuration file" in run.stderr
    assert run.peak_rss < PEAK_RSS_LIMIT, f"peak RSS {run.peak_rss / 1e6:.0f} MB"


# --- what stays accepted, and means what it says ----------------------------------------------

STATION = """station: {id: s1, name: Station 1}
devices:
  plc:
    protocol: modbus_tcp
    host: 127.0.0.1
    tags:
"""


def station(tmp_path: Path, tags: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(STATION + tags)
    return path


def test_yaml_12_numbers_and_quoted_text_mean_what_they_say(tmp_path: Path) -> None:
    document = load_yaml(station(tmp_path, "      t1: {function: holding, address: 0o17, scale: 1e-1}\n"
                                           "      t2: {function: holding, address: 0x1F, description: \"0100\"}\n"
                                           "      t3: {function: holding, address: 0, unit: \"yes\"}\n"))
    tags = document.data["devices"]["plc"]["tags"]
    assert tags["t1"]["address"] == 15 and tags["t1"]["scale"] == 0.1
    assert tags["t2"]["address"] == 31 and tags["t2"]["description"] == "0100"
    assert tags["t3"]["unit"] == "yes"


def test_times_read_as_a_person_reads_them(tmp_path: Path) -> None:
    controller = (ROOT / "config" / "controller.yaml").read_text()
    (tmp_path / "curves").symlink_to(ROOT / "config" / "curves")
    from gateway.control.loader import load_controller_config

    for written, meant in [('"7:30"', "07:30:00"), ("07:30", "07:30:00"), ('"06:00"', "06:00:00")]:
        path = tmp_path / "controller.yaml"
        path.write_text(controller.replace('day_start: "06:00"', f"day_start: {written}"))
        comfort = load_controller_config(path).settings.circuits["radiators"].comfort
        assert comfort.day_start.isoformat() == meant, written


def test_dates_are_text_to_the_loader_and_dates_to_the_curve(tmp_path: Path) -> None:
    assert load_yaml(station(tmp_path, "      t1: {function: holding, address: 0}\n")).data["station"]["id"] == "s1"
    from gateway.control.loader import load_curve

    curve = load_curve(ROOT / "config" / "curves" / "radiators-75-50.yaml")
    assert curve.date.isoformat() == "2026-10-20"


def test_merge_keys_still_work_with_explicit_keys_winning(tmp_path: Path) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("x-probe: &probe {function: input, type: int16, scale: 0.1, unit: degC}\n"
                    .replace("x-probe", "base") + STATION.replace("    tags:\n", "    tags:\n"
                    "      t1: {<<: *probe, address: 0}\n      t2: {<<: *probe, address: 1, scale: 0.01}\n"))
    document = load_yaml(path)
    tags = document.data["devices"]["plc"]["tags"]
    assert tags["t1"] == {"function": "input", "type": "int16", "scale": 0.1, "unit": "degC", "address": 0}
    assert tags["t2"]["scale"] == 0.01


def test_bits_of_one_status_word_may_each_have_their_writer(tmp_path: Path) -> None:
    config = load_gateway_config(station(
        tmp_path, "      run: {function: holding, address: 5, type: bool, bit: 0, writable: {min: 0, max: 1}}\n"
                  "      reset: {function: holding, address: 5, type: bool, bit: 1, writable: {min: 0, max: 1}}\n"))
    assert set(config.devices["plc"].tags) == {"run", "reset"}


def test_writable_limits_inside_the_register_are_accepted(tmp_path: Path) -> None:
    config = load_gateway_config(station(
        tmp_path, "      sp: {function: holding, address: 0, type: int16, scale: 0.1, writable: {min: -3276.8, max: 3276.7}}\n"
                  "      big: {function: holding, address: 1, type: uint32, offset: 100, writable: {min: 100, max: 500}}\n"))
    assert config.devices["plc"].tags["sp"].writable is not None


def test_a_refusal_lists_every_problem_of_the_file_at_once(tmp_path: Path) -> None:
    path = station(tmp_path, "      t1: {function: holding, address: 0100, scale: 5:02}\n"
                             "      t2: {function: holding, address: 1, unit: on}\n")
    with pytest.raises(ConfigError) as caught:
        load_yaml(path)
    assert [message.split(": ", 2)[1] for message in caught.value.messages] == [
        "devices.plc.tags.t1.address", "devices.plc.tags.t1.scale", "devices.plc.tags.t2.unit"]


def heatgw_run(config: Path | str, controller: Path | None, tmp: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "gateway", "run", "--config", str(config), "--state-dir", str(tmp / "state")]
    if controller is not None:
        command += ["--controller", str(controller)]
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT)


@pytest.mark.parametrize(("station", "controller"), [
    ("billion_laughs_station", None), ("true_unit_id", None), ("writable_same_register", None), ("/dev/zero", None),
    (None, "day_end_unquoted"), (None, "controller_curve_is_dev_zero"), (None, "gbk_in_controller"),
])
def test_heatgw_run_refuses_the_same_files_with_exit_2_so_systemd_does_not_restart_it(
        station: str | None, controller: str | None, tmp_path: Path) -> None:
    station_path = ROOT / "config" / "station.yaml" if station is None else (
        Path(station) if station.startswith("/") else HOSTILE / f"{station}.yaml")
    controller_path = None if controller is None else HOSTILE / f"{controller}.yaml"
    refused = controller_path or station_path
    result = heatgw_run(station_path, controller_path, tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = 1 if refused.name == "zero" else expectation(refused)[0]
    assert any(message.startswith(f"{refused}:{line}:") for message in result.stderr.splitlines()), result.stderr
