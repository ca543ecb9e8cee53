"""The shipped JSON Schemas are what the configuration models generate, and the example files name
them, so an editor's completion (YAML language server) tells the engineer what ``heatgw check``
will say."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from gateway import json_schemas
from gateway.yaml_source import load_yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "schemas"
EXAMPLES = {
    ROOT / "config" / "station.yaml": "station",
    ROOT / "config" / "station-opcua.yaml": "station",
    ROOT / "config" / "controller.yaml": "controller",
    **{path: "curve" for path in sorted((ROOT / "config" / "curves").glob("*.yaml"))},
}
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def test_the_shipped_schemas_are_what_the_models_generate() -> None:
    shipped = sorted(path.name for path in SHIPPED.glob("*.json"))
    assert shipped == sorted(json_schemas.filename(kind) for kind in json_schemas.SCHEMAS), \
        f"config/schemas/ holds other files than the schemas: regenerate with {json_schemas.REGENERATE}"
    stale = [kind for kind in json_schemas.SCHEMAS
             if (SHIPPED / json_schemas.filename(kind)).read_text(encoding="utf-8") != json_schemas.render(kind)]
    assert not stale, f"config/schemas/ is out of date for {', '.join(stale)}: run {json_schemas.REGENERATE}"


def test_the_generator_writes_every_schema_where_it_is_told(tmp_path: Path) -> None:
    assert json_schemas.main(["--out", str(tmp_path / "schemas")]) == 0
    for kind in json_schemas.SCHEMAS:
        written = json.loads((tmp_path / "schemas" / json_schemas.filename(kind)).read_text(encoding="utf-8"))
        assert written["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert written["additionalProperties"] is False, "unknown keys are errors, in the editor too"


def test_the_station_schema_offers_every_protocol_of_the_registry() -> None:
    from gateway.protocols import DRIVERS

    text = json_schemas.render("station")
    protocols = {protocol for driver in DRIVERS for model in driver.models
                 for protocol in model.model_fields["protocol"].annotation.__args__}
    assert protocols >= {"modbus_tcp", "modbus_rtu", "opcua"}
    for protocol in protocols:
        assert f'"const": "{protocol}"' in text, protocol


def test_a_time_of_day_is_a_pattern_the_files_can_meet() -> None:
    time_of_day = json_schemas.schema("controller")["$defs"]["ComfortSettings"]["properties"]["day_start"]
    pattern = re.compile(time_of_day["pattern"])
    assert "format" not in time_of_day
    assert all(pattern.match(t) for t in ("06:00", "7:30", "21:00:00"))
    assert not any(pattern.match(t) for t in ("24:00", "6", "06:60"))


@pytest.mark.parametrize("example", list(EXAMPLES), ids=lambda path: path.name)
def test_every_example_file_names_its_schema_on_its_first_line(example: Path) -> None:
    first = example.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{example.name}: first line should be '# yaml-language-server: $schema=...'"
    target = (example.parent / match[1]).resolve()
    assert target == SHIPPED / json_schemas.filename(EXAMPLES[example])


@pytest.mark.parametrize("example", list(EXAMPLES), ids=lambda path: path.name)
def test_every_example_file_validates_against_its_schema(example: Path) -> None:
    schema = json.loads((SHIPPED / json_schemas.filename(EXAMPLES[example])).read_text(encoding="utf-8"))
    errors = [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
              for error in jsonschema.Draft202012Validator(schema).iter_errors(load_yaml(example).data)]
    assert not errors, errors
