"""Everything ``heatgw run`` refuses at start, found in one pass and named by ``file:line:col: field``.

``heatgw run`` and ``heatgw check`` both call ``load_startup``, so a station the systemd unit's
``ExecStartPre=heatgw check`` passes is one the gateway starts with, and a refusal reads the same
in both. One pass: the station file, the controller file and the files they name are all checked
before anything is reported, so a commissioning engineer fixes every problem in one round, not one
per restart. Checks that need another file's model (the controller's tags against the station's)
run once both files are valid on their own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ParamSpec, TypeVar

from gateway.config import GatewayConfig, check_gateway_document
from gateway.control.loader import controller_settings, resolve_curves, tag_problems
from gateway.control.settings import ControllerConfig, ControllerSettings
from gateway.files import unreadable, unwritable_directory
from gateway.mqtt.broker import TlsFileError, tls_context
from gateway.yaml_source import ConfigError, Path_, YamlDocument, load_yaml

STATION_FILES: tuple[Path_, ...] = (("mqtt", "password_file"), ("mqtt", "tls", "ca_file"),
                                    ("mqtt", "tls", "cert_file"), ("mqtt", "tls", "key_file"))
"""Where a station file names other files the gateway reads at start."""

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Startup:
    """A station ready to run: its configuration, and its controller (with the file SIGHUP re-reads)."""

    station: GatewayConfig
    controller: ControllerConfig | None
    controller_path: Path | None


def load_startup(config_path: Path, controller_path: Path | None = None, state_dir: Path | None = None) -> Startup:
    """Check the station file, the controller (``controller_path``, else the station file's own
    ``controller:`` section), every file they name and the state directory (when given);
    ConfigError with every problem found."""
    problems: list[str] = []
    if state_dir is not None and (problem := unwritable_directory(state_dir)) is not None:
        problems.append(f"--state-dir: {problem}")
    station_document = _attempt(problems, load_yaml, config_path)
    station = None if station_document is None else _attempt(problems, check_gateway_document, station_document)
    if station_document is not None:
        problems += _station_file_problems(station_document, station)
    if controller_path is None and station_document is not None and _has_controller(station_document):
        controller_path = config_path
    controller = None
    if controller_path is not None:
        controller = _controller(problems, controller_path, config_path, station_document, station)
    if problems or station is None:
        raise ConfigError(problems)
    return Startup(station, controller, controller_path)


def _controller(problems: list[str], path: Path, config_path: Path, station_document: YamlDocument | None,
                station: GatewayConfig | None) -> ControllerConfig | None:
    """Load the controller and its curves, and check its tags against the station's."""
    if _same_file(path, config_path):
        if station_document is None or station is None:
            return None  # the station file's own problems are reported already
        if station.controller is None:
            problems.append(station_document.error(("controller",), "no controller section in this station file"))
            return None
        return _controller_in(problems, path, station_document, station.controller, station)
    document = _attempt(problems, load_yaml, path)
    settings = None if document is None else _attempt(problems, controller_settings, document)
    if document is None or settings is None:
        return None
    return _controller_in(problems, path, document, settings, station)


def load_controller_for(station: GatewayConfig, path: Path) -> ControllerConfig:
    """The controller in ``path`` (a controller or station file) with its curves, checked against
    ``station``'s tags, every problem at its ``file:line``: a reload (SIGHUP) is refused in the
    same words as a start."""
    problems: list[str] = []
    document = _attempt(problems, load_yaml, path)
    settings = None if document is None else _attempt(problems, controller_settings, document)
    loaded = None if document is None or settings is None else _controller_in(problems, path, document, settings, station)
    if problems or loaded is None:
        raise ConfigError(problems)
    return loaded


def _controller_in(problems: list[str], path: Path, document: YamlDocument, settings: ControllerSettings,
                   station: GatewayConfig | None) -> ControllerConfig | None:
    loaded = _attempt(problems, resolve_curves, settings, path.parent, path, document)
    if station is not None:
        writable = {tag: cfg.writable is not None for tag, (_, cfg) in station.tags().items()}
        found = sorted(tag_problems(settings, writable), key=lambda problem: _position(document, problem[0]))
        problems += [document.error(where, message + _hint(where, message, writable)) for where, message in found]
    return loaded


def _station_file_problems(document: YamlDocument, station: GatewayConfig | None) -> list[str]:
    """Password and certificate files that are missing or unreadable, and TLS files that do not
    load (checked on the raw data, so they are reported even when another field is wrong)."""
    found: list[str] = []
    for where in STATION_FILES:
        named = _lookup(document.data, where)
        if isinstance(named, str) and (problem := unreadable(Path(named))) is not None:
            if not Path(named).is_absolute() and not Path(named).exists():
                problem += " (a relative path is read from the working directory, / under systemd: give an absolute path)"
            found.append(document.error(where, problem))
    if not found and station is not None and station.mqtt is not None and station.mqtt.tls is not None:
        try:
            tls_context(station.mqtt.tls)
        except TlsFileError as exc:
            found.append(document.error(("mqtt", "tls", exc.field), str(exc)))
    return found


def _hint(where: Path_, message: str, tags: Mapping[str, bool]) -> str:
    """What to do about a controller tag the station lacks: the near miss (``did you mean
    'supply_setpoint'?``), or, for a setpoint on a read-only tag, where write permission is given."""
    if message.endswith("is not writable"):
        return " (the station file gives it no writable: limits)"
    if not message.startswith("unknown tag "):
        return ""
    named = message.removeprefix("unknown tag ").strip("'\"")
    candidates = [t for t, writable in tags.items() if writable] if where[-1] == "setpoint_tag" else list(tags)
    close = difflib.get_close_matches(named, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else " (the station file has no such tag)"


def _position(document: YamlDocument, where: Path_) -> tuple[int, int]:
    location = document.locate(where)
    return location.line, location.column


def _has_controller(document: YamlDocument) -> bool:
    return isinstance(document.data, dict) and document.data.get("controller") is not None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b


def _lookup(data: object, where: Path_) -> object:
    for part in where:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _attempt(problems: list[str], step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T | None:
    """Run one loading step; on ConfigError note its messages and return None, so the next file is checked."""
    try:
        return step(*args, **kwargs)
    except ConfigError as exc:
        problems.extend(exc.messages)
        return None
