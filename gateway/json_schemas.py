"""JSON Schemas of the files a station engineer writes (station, controller, curve), generated
from the very models that validate them, so an editor's completion and checks can never drift
from what ``heatgw check`` accepts.

The shipped copies live in ``config/schemas/`` and the example files name them on their first
line (``# yaml-language-server: $schema=...``), which the YAML language server (VS Code's YAML
extension, and any editor speaking LSP) reads. A test fails when the shipped copies differ from
what the models generate; regenerate them with::

    .venv/bin/python -m gateway.json_schemas --out config/schemas

A schema is a help for the editor, not the rule: it cannot express the cross-references (a tag
an alarm names must exist, a curve file must load) that ``heatgw check`` reports.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from gateway.config import GatewayConfig
from gateway.control.loader import ControllerFile, CurveFile

SCHEMAS: dict[str, type[BaseModel]] = {
    "station": GatewayConfig,
    "controller": ControllerFile,
    "curve": CurveFile,
}
"""File kind -> the model its file is validated with; the schema file is ``<kind>.schema.json``."""

REGENERATE = ".venv/bin/python -m gateway.json_schemas --out config/schemas"

_TIME_OF_DAY = r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


class _StationFileSchema(GenerateJsonSchema):
    """Pydantic's generator, with times of day as the files write them.

    JSON Schema's ``format: time`` is RFC 3339's full time with seconds and a UTC offset, so an
    editor that checks formats would flag the ``"06:00"`` every comfort schedule uses.
    """

    def time_schema(self, schema: core_schema.TimeSchema) -> JsonSchemaValue:
        return {"type": "string", "pattern": _TIME_OF_DAY}


def schema(kind: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one file kind."""
    generated = SCHEMAS[kind].model_json_schema(mode="validation", schema_generator=_StationFileSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **generated}


def filename(kind: str) -> str:
    return f"{kind}.schema.json"


def render(kind: str) -> str:
    """The schema as the shipped file holds it: stable key order, readable, newline-terminated."""
    return json.dumps(schema(kind), indent=2, ensure_ascii=False) + "\n"


def write_all(out: Path) -> list[Path]:
    """Write every schema into ``out`` (created if missing); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in SCHEMAS:
        path = out / filename(kind)
        path.write_text(render(kind), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.json_schemas", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write <kind>.schema.json into")
    args = parser.parse_args(argv)
    for path in write_all(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
