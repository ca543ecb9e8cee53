"""`heatgw check` finds everything `heatgw run` refuses at start, in the same words, before anything connects.

The corpus: ``tests/data/stations/base`` is a small valid station (station file, controller file,
curve, password and CA files); every other directory there is one broken station, the files it
holds laid over the base ones, and its ``expect`` file lists the problems both commands must
report, in order, one per line as ``FILE:LINE FIELD | MESSAGE``. Both commands run as the unit
runs them, as subprocesses, from the station's directory (so the messages name its files as
given), with the device and the broker (``15999`` in the files) on a port this test listens on:
``run`` must exit 2 without a single connection arriving there.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "data" / "stations"
CASES = sorted(path for path in CORPUS.iterdir() if path.is_dir() and path.name != "base")
PORT_PLACEHOLDER = "15999"
COMMAND_TIMEOUT_S = 60


def lay_out(case: Path | None, target: Path, port: int) -> Path:
    """The base station with ``case``'s files over it, pointed at ``port``."""
    shutil.copytree(CORPUS / "base", target)
    if case is not None:
        shutil.copytree(case, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("expect"))
    for path in target.rglob("*.yaml"):
        path.write_text(path.read_text().replace(PORT_PLACEHOLDER, str(port)))
    return target


def expected(case: Path) -> list[tuple[str, str, str]]:
    """``(file:line, field, message)`` per line of the case's ``expect`` file."""
    found = []
    for line in (case / "expect").read_text().splitlines():
        where, rest = line.split(" ", 1)
        field, message = rest.split(" | ", 1)
        found.append((where, field, message))
    return found


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Where the station's PLC and broker are: a socket that records whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    try:
        yield sock
    finally:
        sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def heatgw(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S, **kwargs)  # type: ignore[call-overload]


def side_by_side(*commands: tuple[str, ...], cwd: Path) -> list[subprocess.CompletedProcess[str]]:
    """Run heatgw commands at the same time (two cores, and each spends most of its time starting
    Python), each as its own process, as ``heatgw`` would run them one after the other."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: heatgw(*args, cwd=cwd), commands))


STATION_ARGS = ("--config", "station.yaml", "--controller", "controller.yaml")


def test_the_corpus_holds_thirty_broken_stations_each_with_its_expectation() -> None:
    assert len(CASES) >= 30
    for case in CASES:
        assert expected(case), f"{case.name}: no expectation"


@pytest.mark.parametrize("case", CASES, ids=lambda path: path.name)
def test_a_broken_station_is_refused_by_check_and_run_with_the_same_words(
        case: Path, tmp_path: Path, listener: socket.socket) -> None:
    station = lay_out(case, tmp_path / "station", listener.getsockname()[1])
    state = tmp_path / "state"
    check, run = side_by_side(("check", *STATION_ARGS), ("run", *STATION_ARGS, "--state-dir", str(state)), cwd=station)

    assert (check.returncode, run.returncode) == (2, 2), check.stderr + run.stderr
    assert run.stderr == check.stderr
    assert run.stdout == "" and "ok " not in check.stdout
    lines = check.stderr.splitlines()
    wanted = expected(case)
    assert len(lines) == len(wanted), check.stderr
    for line, (where, field, message) in zip(lines, wanted, strict=True):
        assert line.startswith(f"{where}:"), line
        assert f": {field}: " in line, line
        assert line.split(f": {field}: ", 1)[1].startswith(message), line
    assert not connected(listener), "run connected to the station before refusing it"
    assert not state.exists(), "run created its state directory before refusing the station"


def test_the_base_station_passes_check_and_run_connects_to_it(tmp_path: Path, listener: socket.socket) -> None:
    """The other side of the corpus test: the same station without a mistake passes, and the
    gateway then does reach the listener, so "nothing connected" above means something."""
    station = lay_out(None, tmp_path / "station", listener.getsockname()[1])
    check = heatgw("check", *STATION_ARGS, cwd=station)
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        "ok station.yaml: station 's1': 1 devices, 4 tags, 1 groups",
        "ok controller.yaml: controller: radiators on s1-radiators v1 (2026-10-20), tags of station.yaml",
    ]
    process = subprocess.Popen([sys.executable, "-m", "gateway", "run", *STATION_ARGS, "--state-dir",
                                str(tmp_path / "state")], cwd=station, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not connected(listener) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert process.poll() is None, "the base station did not start"
        assert time.monotonic() < deadline, "the gateway never connected"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _as_another_user() -> None:
    """Root reads every file; as the real user ``nobody`` (effective root, so the interpreter and
    the test's files stay readable), ``os.access`` answers for ``nobody``, as it answers for the
    ``heatgw`` user when the unit runs the check."""
    os.setreuid(65534, 0)


def test_a_password_file_the_service_user_cannot_read_is_named_with_that_user(
        tmp_path: Path, listener: socket.socket) -> None:
    station = lay_out(None, tmp_path / "station", listener.getsockname()[1])
    (station / "secrets" / "password").chmod(0o600)
    (station / "secrets" / "password").parent.chmod(0o755)
    as_user = {"preexec_fn": _as_another_user} if os.geteuid() == 0 else {}
    if not as_user:
        (station / "secrets" / "password").chmod(0)
    # A state directory the service user may write, as systemd's StateDirectory= is: only the password is wrong.
    state = Path(tempfile.mkdtemp(prefix="heatgw-state-"))
    state.chmod(0o777)
    try:
        check = heatgw("check", *STATION_ARGS, "--state-dir", str(state), cwd=station, **as_user)
        run = heatgw("run", *STATION_ARGS, "--state-dir", str(state), cwd=station, **as_user)
    finally:
        shutil.rmtree(state)
    assert (check.returncode, run.returncode) == (2, 2), check.stderr + run.stderr
    assert run.stderr == check.stderr
    (line,) = check.stderr.splitlines()
    user = "nobody" if as_user else pwd.getpwuid(os.getuid()).pw_name
    assert line.startswith("station.yaml:6:3: mqtt.password_file: cannot read secrets/password: "
                           f"not readable by user {user} (mode 0"), line
    assert "the service runs as this user" in line
    assert not connected(listener)


def test_a_station_file_holding_its_controller_is_checked_with_it(tmp_path: Path) -> None:
    station = lay_out(None, tmp_path / "station", 15999)
    text = (station / "station.yaml").read_text()
    controller = (station / "controller.yaml").read_text()
    (station / "station.yaml").write_text(text + controller.replace("setpoint_tag: supply_setpoint",
                                                                    "setpoint_tag: supply_temp"))
    line = len(text.splitlines()) + next(n for n, row in enumerate(controller.splitlines(), 1) if "setpoint_tag" in row)
    check = heatgw("check", "--config", "station.yaml", cwd=station)
    assert check.returncode == 2
    assert check.stderr.startswith(f"station.yaml:{line}:7: controller.circuits.radiators.setpoint_tag: "
                                   "tag 'supply_temp' is not writable"), check.stderr


def test_a_station_file_named_as_the_controller_must_have_one(tmp_path: Path) -> None:
    station = lay_out(None, tmp_path / "station", 15999)
    check = heatgw("check", "--config", "station.yaml", "--controller", "station.yaml", cwd=station)
    assert check.returncode == 2
    assert check.stderr == "station.yaml:1:1: controller: no controller section in this station file\n"


def test_a_state_directory_the_service_user_cannot_write_is_refused_by_check_and_run_alike(
        tmp_path: Path, listener: socket.socket) -> None:
    station = lay_out(None, tmp_path / "station", listener.getsockname()[1])
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o755)
    as_user = {"preexec_fn": _as_another_user} if os.geteuid() == 0 else {}
    if not as_user:
        locked.chmod(0o555)
    state = locked / "heatgw"  # missing: run would create it, in a directory the user cannot write
    check = heatgw("check", *STATION_ARGS, "--state-dir", str(state), cwd=station, **as_user)
    run = heatgw("run", *STATION_ARGS, "--state-dir", str(state), cwd=station, **as_user)
    assert (check.returncode, run.returncode) == (2, 2), check.stderr + run.stderr
    assert run.stderr == check.stderr
    user = "nobody" if as_user else pwd.getpwuid(os.getuid()).pw_name
    assert check.stderr.startswith(f"--state-dir: cannot write in {locked} (heatgw would be created there): "
                                   f"not writable by user {user}"), check.stderr
    assert not connected(listener)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    check = heatgw("check", *STATION_ARGS, "--state-dir", str(a_file), cwd=station)
    assert check.returncode == 2 and check.stderr.startswith(f"--state-dir: cannot use {a_file}: {a_file} is not a "
                                                             "directory"), check.stderr
