"""Load the controller's configuration: the ``controller:`` section and the curve files it names.

Used at start-up and by the hot reload, so a reload is checked exactly as strictly as a start: a
file with any problem is refused as a whole (``ConfigError`` with ``file:line:field`` lines) and
the running configuration stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gateway.config import check_gateway_document
from gateway.config_base import Strict
from gateway.control.settings import ControllerConfig, ControllerSettings
from gateway.curves import Curve
from gateway.validation import validate_document
from gateway.yaml_source import ConfigError, Path_, UnreadableFile, YamlDocument, format_field_path, load_yaml


class CurveFile(Strict):
    """A curve file holds one curve under the top-level key ``curve``."""

    curve: Curve


def load_curve(path: Path) -> Curve:
    """Load and validate a curve file, or raise ConfigError naming file:line:field."""
    return validate_document(load_yaml(path), CurveFile).curve


class ControllerFile(Strict):
    """A stand-alone controller file: the ``controller:`` section alone (``config/controller.yaml``)."""

    controller: ControllerSettings


def load_controller_config(path: Path) -> ControllerConfig:
    """Read the controller settings from ``path`` and load their curves, or raise ConfigError.

    ``path`` is either a stand-alone controller file or a whole station file with a
    ``controller:`` section (then the whole station file is validated, so a reload cannot slip in
    a broken station file unnoticed). Curve paths are relative to ``path``'s directory.
    """
    document = load_yaml(path)
    settings = controller_settings(document)
    return resolve_curves(settings, path.parent, path, document)


def controller_settings(document: YamlDocument) -> ControllerSettings:
    """The ``controller:`` section of a stand-alone controller file or of a whole (fully checked) station file."""
    data = document.data
    if isinstance(data, dict) and "devices" in data:
        config = check_gateway_document(document)  # a station file: the full check
        if config.controller is None:
            raise ConfigError([document.error(("controller",), "no controller section in this station file")])
        return config.controller
    return validate_document(document, ControllerFile).controller


def resolve_curves(settings: ControllerSettings, base_dir: Path, source: Path | None = None,
                   document: YamlDocument | None = None) -> ControllerConfig:
    """Load every circuit's curve file (relative paths from ``base_dir``); all problems at once.

    A curve file that cannot be read at all (missing, a device, too large) is reported at the
    ``curve:`` line of ``document``, the file that names it, when it is given."""
    curves: dict[str, Curve] = {}
    problems: list[str] = []
    for name, circuit in settings.circuits.items():
        path = Path(circuit.curve)
        if not path.is_absolute():
            path = base_dir / path
        try:
            curves[name] = load_curve(path)
        except UnreadableFile as exc:
            where = ("controller", "circuits", name, "curve")
            problems.extend(f"circuit {name}: {message}" if document is None
                            else document.error(where, f"circuit {name}: {message}") for message in exc.messages)
        except ConfigError as exc:
            # The fault is in the curve file, at its own file:line: that comes first, as in every message.
            problems.extend(f"{message} (the curve of circuit {name})" for message in exc.messages)
    if problems:
        raise ConfigError(problems)
    return ControllerConfig(settings, curves, source)


def tag_problems(settings: ControllerSettings, known_tags: Mapping[str, bool]) -> list[tuple[Path_, str]]:
    """Tags the controller names that the station does not have (or cannot write), as
    ``(path, message)`` with paths from the top of the station file, the form
    ``GatewayConfig.problems`` reports, so ``heatgw check`` can catch a misspelt tag too.

    ``known_tags`` maps every station tag to whether it is writable.
    """
    problems: list[tuple[Path_, str]] = [(("controller", *where), f"unknown tag {tag!r}")
                                         for tag, where in settings.tags().items() if tag not in known_tags]
    for name, circuit in settings.circuits.items():
        if known_tags.get(circuit.setpoint_tag) is False:
            problems.append((("controller", "circuits", name, "setpoint_tag"),
                             f"tag {circuit.setpoint_tag!r} is not writable"))
    return problems


def describe_problems(problems: list[tuple[Path_, str]]) -> list[str]:
    """``controller.circuits.radiators.setpoint_tag: tag 'x' is not writable`` lines."""
    return [f"{format_field_path(path)}: {message}" for path, message in problems]
