"""Load YAML while remembering where every value came from.

Operators edit these files by hand at a station, often over a slow remote session. An error that
says ``devices.plc.tags.outdoor.address`` without a line number costs them minutes; one that says
``station.yaml:42:16`` costs seconds. PyYAML also silently keeps the last of two duplicate keys,
which hides copy-paste mistakes, so duplicates are reported here as errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Location:
    """A 1-based line and column in a file."""

    line: int
    column: int


class ConfigError(Exception):
    """One or more problems in one file, each already phrased as ``file:line:col: field: message``."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("\n".join(messages))
        self.messages = messages


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Parsed YAML data plus the location of every mapping key and value in it."""

    path: Path
    data: Any
    value_locations: dict[Path_, Location]
    key_locations: dict[Path_, Location]

    def locate(self, path: Path_) -> Location:
        """Best location for ``path``: the key if present, else the value, else the nearest parent.

        A missing field has no location of its own; pointing at the mapping that should contain
        it is what a person needs.
        """
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in self.key_locations:
                return self.key_locations[prefix]
            if prefix in self.value_locations:
                return self.value_locations[prefix]
        return Location(1, 1)

    def error(self, path: Path_, message: str) -> str:
        """Format one problem as ``file:line:col: dotted.field: message``."""
        where = self.locate(path)
        field = format_field_path(path) or "(document)"
        return f"{self.path}:{where.line}:{where.column}: {field}: {message}"


def format_field_path(path: Path_) -> str:
    """``('devices', 'plc', 'tags', 0)`` -> ``devices.plc.tags[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def load_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file; raise ConfigError (never a traceback) for unreadable or malformed files."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read file: {exc}"]) from exc
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError([f"{path}:1:1: (document): file is empty"])
        value_locations: dict[Path_, Location] = {}
        key_locations: dict[Path_, Location] = {}
        duplicates: list[str] = []
        _index(root, (), value_locations, key_locations, duplicates, path)
        if duplicates:
            raise ConfigError(duplicates)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            problem += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        raise ConfigError([f"{path}:{line}:{column}: YAML syntax: {problem}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: YAML syntax: {exc}"]) from exc
    finally:
        loader.dispose()
    return YamlDocument(path, data, value_locations, key_locations)


def _mark(node: yaml.Node) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


def _index(
    node: yaml.Node,
    path: Path_,
    values: dict[Path_, Location],
    keys: dict[Path_, Location],
    duplicates: list[str],
    file: Path,
) -> None:
    """Walk the node tree recording locations by data path, and collect duplicate keys."""
    values[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, Location] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            if key in seen:
                first = seen[key]
                where = _mark(key_node)
                duplicates.append(
                    f"{file}:{where.line}:{where.column}: {format_field_path(child)}: "
                    f"duplicate key (first defined on line {first.line})"
                )
                continue
            seen[key] = _mark(key_node)
            keys[child] = _mark(key_node)
            _index(value_node, child, values, keys, duplicates, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, (*path, index), values, keys, duplicates, file)
