"""historian.yaml is checked like station.yaml: every mistake as file:line:col: field: message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.historian.settings import HistorianSettings, load_historian_settings
from gateway.validation import validate_document
from gateway.yaml_source import ConfigError, load_yaml

ROOT = Path(__file__).resolve().parents[2]

VALID = """\
instance: bridge-a
mqtt:
  host: broker.example
  port: 8883
  tls: {ca_file: TOKEN}
influxdb:
  url: https://tsdb.example:8086
  token_file: TOKEN
  org: heating
  bucket: stations
"""


def write(tmp_path: Path, text: str) -> Path:
    token = tmp_path / "token"
    token.write_text("secret\n")
    path = tmp_path / "historian.yaml"
    path.write_text(text.replace("TOKEN", str(token)))
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_historian_settings(path)
    return caught.value.messages


def test_the_shipped_example_is_valid() -> None:
    settings = validate_document(load_yaml(ROOT / "config" / "historian.yaml"), HistorianSettings)
    assert settings.client_id == "heatgw-historian-bridge-a"
    assert settings.topics.kinds == ["telemetry", "control", "alarms", "events"]


def test_a_valid_file_loads_with_defaults_filled_in(tmp_path: Path) -> None:
    settings = load_historian_settings(write(tmp_path, VALID))
    assert settings.influxdb.read_token() == "secret"
    assert settings.batch.max_values == 5000 and settings.influxdb.gzip
    assert settings.topics.share_group == "historian" and settings.topics.stations == ["+"]


@pytest.mark.parametrize(("edit", "expected"), [
    (("  bucket: stations\n", "  bucket: stations\n  tokn: x\n"),
     "historian.yaml:11:3: influxdb.tokn: unknown field"),
    (("  url: https://tsdb.example:8086\n", ""), "historian.yaml:6:1: influxdb.url: required field is missing"),
    (("  port: 8883\n", "  port: eighty\n"), "historian.yaml:4:3: mqtt.port: Input should be a valid integer"),
    (("  token_file: TOKEN\n", "  token_file: TOKEN\n  token: abc\n"),
     "historian.yaml:6:1: influxdb: give exactly one of token or token_file"),
    (("instance: bridge-a\n", "instance: bridge/a\n"), "historian.yaml:1:1: instance: String should match pattern"),
    (("  tls: {ca_file: TOKEN}\n", "  tls: {ca_file: /nonexistent/ca.pem}\n"),
     "historian.yaml:5:9: mqtt.tls.ca_file: cannot read /nonexistent/ca.pem: No such file or directory"),
    (("influxdb:\n", "batch: {max_age_s: 0}\ninfluxdb:\n"),
     "historian.yaml:6:9: batch.max_age_s: Input should be greater than 0"),
    (("  host: broker.example\n", "  host: broker.example\n  password: p\n"),
     "historian.yaml:2:1: mqtt: a password needs a username"),
    (("influxdb:\n", "topics: {kinds: [telemetry, alarms]}\ninfluxdb:\n"),
     "historian.yaml:6:1: topics: kinds must include telemetry, control, events (they share one sequence); "
     "missing: control, events"),
])
def test_mistakes_are_reported_with_file_line_and_field(tmp_path: Path, edit: tuple[str, str], expected: str) -> None:
    old, new = edit
    assert old in VALID
    [message] = errors_of(write(tmp_path, VALID.replace(old, new)))
    assert message.removeprefix(f"{tmp_path}/").startswith(expected), message


def test_cli_check_exits_2_with_the_messages_on_stderr(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  org: heating\n", ""))
    proc = subprocess.run([sys.executable, "-m", "gateway.historian", "check", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert f"{path}:6:1: influxdb.org: required field is missing" in proc.stderr


def test_cli_check_says_what_it_found(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "gateway.historian", "check", str(write(tmp_path, VALID))],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "historian 'bridge-a', broker broker.example:8883" in proc.stdout


def test_cli_run_refuses_a_bad_file_with_exit_2_so_systemd_does_not_restart_it(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("instance: bridge-a\n", "instanse: bridge-a\n"))
    proc = subprocess.run([sys.executable, "-m", "gateway.historian", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "instanse: unknown field" in proc.stderr
