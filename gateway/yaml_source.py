"""Load YAML while remembering where every value came from, and refuse hostile or ambiguous files.

Operators edit these files by hand at a station, often over a slow remote session. An error that
says ``devices.plc.tags.outdoor.address`` without a line number costs them minutes; one that says
``station.yaml:42:16`` costs seconds. PyYAML also silently keeps the last of two duplicate keys,
which hides copy-paste mistakes, so duplicates are reported here as errors.

Every YAML file heatgw reads (station, controller, curves, historian settings) goes through
``load_yaml``, at ``heatgw check``, at start-up and on a reload alike, and a file is refused, as
``file:line:col: field: message`` lines (``ConfigError``), never with a traceback, when:

* it is not a regular file (``/dev/zero``, a FIFO, a directory) or larger than ``MAX_FILE_BYTES``;
* it is not UTF-8 (the line of the first bad byte, and a hint to save it as UTF-8), or holds a
  control character (NUL, ESC...);
* it nests deeper than ``MAX_DEPTH``, or its aliases expand it beyond ``MAX_VALUES`` values (a
  "billion laughs" file), or an alias refers to the node that contains it. The limits are
  enforced while the node graph is composed, before anything is expanded, so a hostile file costs
  as much as its bytes, not as much as its expansion;
* it uses a YAML 1.1 form that other YAML 1.1 readers (PyYAML's ``safe_load``, most tools) turn
  into something else than YAML 1.2 does: ``0100`` (octal 64), ``5:02`` or ``21:00`` (base 60:
  302, 1260), ``yes``/``no``/``on``/``off`` (booleans), ``1_000``. These are refused with a hint to
  quote or rewrite them, so a file means one thing to every reader.

Otherwise values follow the YAML 1.2 core schema: ``true``/``false``, ``null``/``~``, decimal,
``0o`` octal and ``0x`` hexadecimal integers, floats (``.nan`` and ``.inf`` are read, and refused
by the models wherever a number is configured). There are no implicit timestamps: ``2026-10-20``
is text that the models parse as a date, so an impossible date is an ordinary field error.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.error import MarkedYAMLError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

Path_ = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
"""A station with a thousand tags is about 200 kB; more than this is not a configuration file."""
MAX_VALUES = 100_000
"""Scalars, lists and mappings after alias expansion (the demo station has about 1,500)."""
MAX_DEPTH = 64
"""Nesting levels after alias expansion (the deepest configuration file has 8)."""
MAX_ERRORS = 50
"""Problems listed per file; the rest are counted."""


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


class UnreadableFile(ConfigError):
    """The file itself could not be read (missing, not a regular file, too large): no line in it
    is at fault, so whoever named the file can point at where it was named."""


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """Parsed YAML data plus the location of every mapping key, and of every value that has no key."""

    path: Path
    data: Any
    value_locations: dict[Path_, Location]  # of the values that have no key: the document, list items
    key_locations: dict[Path_, Location]
    origin: Callable[[Path_], Path_] | None = None
    """Where a path of ``data`` was written in the file, when ``data`` was rewritten after parsing
    (a device's tags that its template declares are written once, in the template)."""

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
        if self.origin is not None:
            path = self.origin(path)
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
    """Parse one YAML file; raise ConfigError (never a traceback) for unreadable, malformed,
    hostile or ambiguous files. Bounded in memory and time by the file size and the limits above."""
    text = _decode(path, read_config_bytes(path))
    root = _compose_fast(text)
    loader: _Loader | None = None
    try:
        if root is None:
            loader = _Loader(text)  # inside: PyYAML's reader checks the text already here
            root = loader.get_single_node()
        if root is None:
            raise ConfigError([f"{path}:1:1: (document): file is empty"])
        walk = _Walk(path)
        data = walk.value(root, ())
        if walk.problems:
            raise ConfigError(walk.report())
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or str(exc)
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            problem += f" ({exc.context} started on line {exc.context_mark.line + 1})"
        label = "(document)" if isinstance(exc, _LimitExceeded) else "YAML syntax"
        raise ConfigError([f"{path}:{line}:{column}: {label}: {problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}:1:1: YAML syntax: {exc}"]) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDocument(path, data, walk.values, walk.keys)


def _compose_fast(text: str) -> Node | None:
    """The node graph composed from libyaml's events (4x faster than PyYAML's own scanner and
    parser, which dominated start-up at a hundred devices), or None when libyaml is missing or
    finds a problem: the pure-Python loader then reads the file again, so every message and its
    line stay PyYAML's own, whichever parser a machine has. The composer and its limits are the
    same in both, and libyaml's events carry the same line and column marks."""
    if _FastLoader is None:
        return None
    loader = _FastLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def read_config_bytes(path: Path) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``, or ``UnreadableFile``.

    Opened non-blocking, so a FIFO is refused instead of waiting forever for a writer, and read
    with a bound, so a device or a file that grows while it is read cannot exhaust memory.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise UnreadableFile([f"{path}: cannot read file: {exc.strerror or exc}"]) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise UnreadableFile([f"{path}: cannot read file: it is a directory (name the YAML files in it)"])
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile([f"{path}:1:1: (document): not a regular file (a device, FIFO or socket): "
                                  "a configuration must be a plain file"])
        if info.st_size > MAX_FILE_BYTES:
            raise UnreadableFile([f"{path}:1:1: (document): file is {info.st_size} bytes, more than the "
                                  f"{MAX_FILE_BYTES} a configuration file may have"])
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, MAX_FILE_BYTES + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise UnreadableFile([f"{path}:1:1: (document): file is larger than the "
                                      f"{MAX_FILE_BYTES} bytes a configuration file may have"])
        return b"".join(chunks)
    except OSError as exc:
        raise UnreadableFile([f"{path}: cannot read file: {exc.strerror or exc}"]) from None
    finally:
        os.close(fd)


NON_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""What YAML forbids in a stream (PyYAML's own set): NUL, ESC, DEL and the other control codes."""
CONTROL_NAMES = {0x00: "NUL", 0x07: "BEL", 0x08: "BS", 0x1B: "ESC", 0x7F: "DEL", 0x0C: "FF", 0x0B: "VT"}


def _decode(path: Path, data: bytes) -> str:
    """UTF-8 text without control characters, or ConfigError at the line of the first offender."""
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + bom
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        hint = "save the file as UTF-8"
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            hint = "the file is UTF-16: save it as UTF-8"
        elif _reads_as_gbk(data):
            hint += (" (it reads as GBK/GB18030, what Chinese Windows editors write by default: "
                     "in Notepad, 'Save As' with the encoding UTF-8)")
        raise ConfigError([f"{path}:{line}:{column}: (document): not UTF-8 text "
                           f"(byte 0x{data[offset]:02x}): {hint}"]) from None
    found = []
    for match in NON_PRINTABLE.finditer(text):
        if len(found) == 5:
            break
        offset = match.start()
        line = text.count("\n", 0, offset) + 1
        column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        code = ord(match[0])
        name = f" ({CONTROL_NAMES[code]})" if code in CONTROL_NAMES else ""
        found.append(f"{path}:{line}:{column}: (document): control character U+{code:04X}{name} is not "
                     "allowed in a configuration file: remove it (write \\t, \\e... inside double quotes "
                     "if it is really meant)")
    if found:
        raise ConfigError(found)
    return text


def _reads_as_gbk(data: bytes) -> bool:
    try:
        data.decode("gb18030")
    except UnicodeDecodeError:
        return False
    return True


# --- YAML 1.2 core schema, with the YAML 1.1 forms that mean something else refused ------------

NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"
STR_TAG = "tag:yaml.org,2002:str"
SEQ_TAG = "tag:yaml.org,2002:seq"
MAP_TAG = "tag:yaml.org,2002:map"
MERGE_TAG = "tag:yaml.org,2002:merge"
YAML11_TAG = "tag:heatgw,2026:yaml11-ambiguous"

YAML11_BOOL = re.compile(r"^(?:yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF)$")
YAML11_OCTAL = re.compile(r"^[-+]?0[0-9_]+$")
YAML11_SEXAGESIMAL = re.compile(r"^[-+]?(?:[1-9][0-9_]*(?::[0-5]?[0-9])+|[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*)$")
"""YAML 1.1's base-60 forms, exactly (``06:00`` and ``00:00`` are text in both versions)."""
YAML11_UNDERSCORE = re.compile(r"^[-+]?[0-9][0-9]*_[0-9_]*(?:\.[0-9_]*)?$")


class _Resolver(BaseResolver):
    """Plain scalars to tags: the YAML 1.2 core schema, plus a tag marking YAML 1.1 forms."""

    yaml_implicit_resolvers: dict[Any, Any] = {}


for _regexp, _first in ((YAML11_BOOL, "yYnNoO"), (YAML11_OCTAL, "-+0"), (YAML11_SEXAGESIMAL, "-+0123456789"),
                        (YAML11_UNDERSCORE, "-+0123456789")):
    _Resolver.add_implicit_resolver(YAML11_TAG, _regexp, list(_first))
_Resolver.add_implicit_resolver(NULL_TAG, re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""])
_Resolver.add_implicit_resolver(BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Resolver.add_implicit_resolver(INT_TAG, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                                list("-+0123456789"))
_Resolver.add_implicit_resolver(
    FLOAT_TAG,
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+.0123456789"))
_Resolver.add_implicit_resolver(MERGE_TAG, re.compile(r"^(?:<<)$"), ["<"])


class _LimitExceeded(MarkedYAMLError):
    """A size, depth or alias limit; reported as a ``(document)`` problem, not as bad syntax."""


class _LimitedComposer(Composer):
    """PyYAML's composer, counting what the document would be once its aliases are expanded.

    An alias is a reference to an already composed node, so composing costs what the file's bytes
    cost; expanding is what explodes. Each completed node's expanded size and height are kept, an
    alias adds its target's, and the document is refused at the first alias or node that passes
    ``MAX_VALUES`` or ``MAX_DEPTH``. An alias to a node not yet completed is one inside the node
    it names: a cycle, refused here (it would otherwise recurse without end).
    """

    def __init__(self) -> None:
        super().__init__()
        self._expanded = 0
        self._through_aliases = 0  # values that aliases add
        self._depth = 0
        self._shape: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, expanded height)

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:
                shape = self._shape.get(id(target))
                if shape is None:
                    raise _LimitExceeded(None, None, f"alias *{event.anchor} refers to a node that contains it "
                                         "(a recursive alias)", event.start_mark)
                self._count(shape[0], self._depth + shape[1], event.start_mark)
            return super().compose_node(parent, index)
        start = self.peek_event().start_mark
        self._depth += 1
        self._count(1, self._depth, start)
        node = super().compose_node(parent, index)
        self._depth -= 1
        if isinstance(node, ScalarNode):
            self._shape[id(node)] = (1, 1)
        else:
            children = [item for pair in node.value for item in pair] if isinstance(node, MappingNode) else node.value
            shapes = [self._shape[id(child)] for child in children]
            self._shape[id(node)] = (1 + sum(s for s, _ in shapes), 1 + max((h for _, h in shapes), default=0))
        return node

    def _count(self, values: int, depth: int, mark: Any) -> None:
        self._expanded += values
        self._through_aliases += values - 1
        if self._expanded > MAX_VALUES and self._through_aliases:
            raise _LimitExceeded(None, None, f"the document expands to more than {MAX_VALUES} values "
                                 "(aliases repeating aliases, a 'billion laughs' file?): write the values out",
                                 mark)
        if self._expanded > MAX_VALUES:
            raise _LimitExceeded(None, None, f"more than {MAX_VALUES} values: too many for a configuration file",
                                 mark)
        if depth > MAX_DEPTH:
            raise _LimitExceeded(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)


class _Loader(Reader, Scanner, Parser, _LimitedComposer, _Resolver):
    """Reads, scans, parses and composes; constructing is ``_Walk``'s job."""

    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        _LimitedComposer.__init__(self)
        _Resolver.__init__(self)


if yaml.__with_libyaml__:
    from yaml.cyaml import CParser

    class _FastLoader(_LimitedComposer, _Resolver, CParser):  # type: ignore[misc]
        """libyaml's scanner and parser under ``_Loader``'s composer and resolver (first in the MRO:
        libyaml's own composer would build the graph without the limits)."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            _LimitedComposer.__init__(self)
            _Resolver.__init__(self)
else:
    _FastLoader = None  # type: ignore[assignment,misc]


def _yaml11_hint(text: str) -> str:
    """Why a YAML 1.1 form is refused, and what to write instead."""
    if YAML11_BOOL.match(text):
        return (f"{text!r} is a boolean in YAML 1.1 and text in YAML 1.2: write true or false, "
                f"or \"{text}\" in quotes for the text")
    if YAML11_SEXAGESIMAL.match(text):
        return (f"{text} is a base-60 number in YAML 1.1 (21:00 reads as 1260): write a time or text in quotes, "
                f"\"{text}\"")
    if YAML11_OCTAL.match(text):
        return (f"{text} is an octal number in YAML 1.1 (0100 reads as 64) and decimal in YAML 1.2: "
                f"write it without the leading zero, with 0o for octal, or in quotes for text")
    return f"{text} is a number with '_' in YAML 1.1 and text in YAML 1.2: write it without '_', or in quotes"


class _Walk:
    """Builds the data from the composed nodes while recording every location by data path, and
    collects problems (duplicate keys, YAML 1.1 forms, bad numbers) with their field paths."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.values: dict[Path_, Location] = {}
        self.keys: dict[Path_, Location] = {}
        self.problems: list[str] = []

    def report(self) -> list[str]:
        shown = self.problems[:MAX_ERRORS]
        if len(self.problems) > MAX_ERRORS:
            shown.append(f"{self.file}: ... and {len(self.problems) - MAX_ERRORS} more problems")
        return shown

    def _problem(self, node: Node, path: Path_, message: str) -> None:
        where = _mark(node)
        field = format_field_path(path) or "(document)"
        self.problems.append(f"{self.file}:{where.line}:{where.column}: {field}: {message}")

    def value(self, node: Node, path: Path_, keyed: bool = False) -> Any:
        if not keyed:  # a mapping's value is located at its key (``locate``): only the root and list items
            self.values[path] = _mark(node)  # need their own, and a big station has tens of thousands of keys
        if isinstance(node, MappingNode):
            if node.tag != MAP_TAG:
                self._problem(node, path, f"unsupported tag {node.tag} (only plain mappings, lists and values)")
                return None
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != SEQ_TAG:
                self._problem(node, path, f"unsupported tag {node.tag} (only plain mappings, lists and values)")
                return None
            return [self.value(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.scalar(node, path)

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        text = node.value
        try:
            if node.tag == STR_TAG:
                return text
            if node.tag == NULL_TAG:
                return None
            if node.tag == BOOL_TAG and text.lower() in ("true", "false"):
                return text.lower() == "true"
            if node.tag == INT_TAG:
                return int(text, 0)
            if node.tag == FLOAT_TAG:
                return SafeConstructor.construct_yaml_float(_CONSTRUCTOR, node)
        except (ValueError, OverflowError):
            self._problem(node, path, f"{text[:40]!r} is not a valid {node.tag.rsplit(':', 1)[-1]}")
            return None
        if node.tag == YAML11_TAG:
            self._problem(node, path, _yaml11_hint(text))
        elif node.tag == MERGE_TAG:
            self._problem(node, path, "a merge key (<<) only goes where a key is expected")
        else:
            self._problem(node, path, f"unsupported tag {node.tag} (only plain mappings, lists and values)")
        return None

    def _mapping(self, node: MappingNode, path: Path_) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merges: list[Node] = []
        explicit: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == MERGE_TAG:
                merges.extend(value_node.value if isinstance(value_node, SequenceNode) else [value_node])
            else:
                explicit.append((key_node, value_node))
        # ``<<: *base`` (or a list of them) first: keys given explicitly win, and the first merged
        # mapping wins over later ones, as in YAML 1.1's merge key.
        for source in reversed(merges):
            if isinstance(source, MappingNode):
                result.update(self._mapping(source, path))
            else:
                self._problem(source, path, "a merge key (<<) takes a mapping or a list of mappings")
        seen: dict[Any, Location] = {}
        for key_node, value_node in explicit:
            if not isinstance(key_node, ScalarNode):
                self._problem(key_node, path, "a mapping key must be a plain value, not a list or mapping")
                continue
            key = self.scalar(key_node, path)
            child = (*path, key)
            if key in seen:
                self._problem(key_node, child, f"duplicate key (first defined on line {seen[key].line})")
                continue
            seen[key] = _mark(key_node)
            self.keys[child] = _mark(key_node)
            result[key] = self.value(value_node, child, keyed=True)
        return result


_CONSTRUCTOR = SafeConstructor()


def _mark(node: Node) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)
