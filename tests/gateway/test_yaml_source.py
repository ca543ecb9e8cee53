"""The fast path of ``load_yaml`` (libyaml's parser under our composer) reads a file exactly as
PyYAML's pure-Python parser does: the same data and the same line and column for every key and
value, so ``file:line:col`` errors do not depend on which parser a machine has."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway import yaml_source
from gateway.yaml_source import load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted([*ROOT.glob("config/*.yaml"), *ROOT.glob("config/stations/*.yaml"),
                   *ROOT.glob("tests/data/stations/base/*.yaml")])


def pure_python_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> yaml_source.YamlDocument:
    with monkeypatch.context() as patch:
        patch.setattr(yaml_source, "_FastLoader", None)
        return load_yaml(path)


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="this PyYAML has no libyaml")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_file_read_through_libyaml_has_the_data_and_locations_of_the_pure_python_parser(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, pure = load_yaml(path), pure_python_load(path, monkeypatch)
    assert fast.data == pure.data
    assert fast.value_locations == pure.value_locations
    assert fast.key_locations == pure.key_locations


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="this PyYAML has no libyaml")
def test_a_file_libyaml_refuses_is_reported_in_pure_python_parsers_words(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "station.yaml"
    broken.write_text("station:\n  id: a\n  name: [unclosed\ndevices: {}\n")
    with pytest.raises(yaml_source.ConfigError) as fast:
        load_yaml(broken)
    with pytest.raises(yaml_source.ConfigError) as pure:
        pure_python_load(broken, monkeypatch)
    assert fast.value.messages == pure.value.messages
    assert "YAML syntax" in fast.value.messages[0]
