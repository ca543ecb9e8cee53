"""The documentation is true and whole: the site builds without a warning (a broken link, a missing
anchor or a page left out of the navigation fails the suite, not a reader), and what the pages
document is what the code does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def page(name: str) -> str:
    return (DOCS / name).read_text()


def test_the_documentation_site_builds_strictly_without_a_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = os.environ | {"NO_MKDOCS_2_WARNING": "1"}  # material's notice about a future MkDocs, not about our pages
    build = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert build.returncode == 0, build.stderr
    assert "WARNING" not in build.stderr, build.stderr
    assert (site / "index.html").is_file()
    assert (site / "commissioning" / "station" / "index.html").is_file()


def test_the_readme_stays_short_and_no_page_links_outside_the_clone() -> None:
    assert len(README.splitlines()) < 200
    for text in [README, *(p.read_text() for p in DOCS.rglob("*.md"))]:
        assert "../shared/" not in text


def test_every_page_the_readme_links_exists() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", README)
    assert len(links) >= 20
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert not missing, missing


def test_the_quick_start_has_exactly_the_two_commands() -> None:
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick_start, re.S)
    assert block is not None
    commands = [line.split("#")[0].strip() for line in block[1].splitlines() if line.strip()]
    assert commands == ["./scripts/demo.sh", "./scripts/test.sh"]
    for command in commands:
        assert (ROOT / command).exists()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test.sh" in ci


def test_the_register_map_page_matches_the_simulators_map() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from update_register_map import render
    finally:
        sys.path.pop(0)
    text = page("commissioning/register-map.md")
    assert render(text) == text, "the register map page is stale: run scripts/update_register_map.py"
    assert "| input (FC04) | 0 | outdoor_temperature |" in text
    assert "| holding (FC03/06/16/22) | 100+10c | c{c}_supply_setpoint |" in text


def test_the_simulator_page_documents_every_station_file_and_key() -> None:
    from sim import station_file

    section = page("simulator/index.md").split("## Station files", 1)[1].split("\n## ", 1)[0]
    shipped = sorted(p.name for p in (ROOT / "config" / "stations").glob("*.yaml"))
    assert shipped and all(f"| `{name}` |" in section for name in shipped)
    models = (station_file.StationFile, station_file.StationInfo, station_file.ClimateSection,
              station_file.SeasonSection, station_file.PrimarySection, station_file.BuildingSection,
              station_file.RoomSection, station_file.CircuitSection, station_file.SlabSection,
              station_file.HydraulicsSection)
    undocumented = {name for model in models for name in model.model_fields if f"`{name}`" not in section}
    assert not undocumented - {"buildings", "circuits", "rooms"}, undocumented


def test_every_documented_cli_command_exists() -> None:
    help_text = subprocess.run([sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True,
                               timeout=60, cwd=ROOT).stdout
    commands = re.findall(r"^\| `heatgw (\w+)", page("commissioning/cli.md"), re.M)
    assert len(set(commands)) >= 8
    for command in commands:
        assert re.search(rf"^  {command}\s", help_text.split("\nCommands:\n", 1)[1], re.M), \
            f"the docs document `heatgw {command}`, the CLI lacks it"


def test_every_station_and_modbus_key_is_in_the_station_file_reference() -> None:
    from drivers.modbus.config import ModbusRtuDevice, ModbusTcpDevice, TagConfig
    from gateway.config import StationInfo

    reference = page("commissioning/station.md")
    for model in (StationInfo, TagConfig, ModbusTcpDevice, ModbusRtuDevice):
        for field in model.model_fields:
            assert f"`{field}`" in reference, f"{model.__name__}.{field} is not documented"


def test_every_opcua_device_and_tag_key_is_in_the_station_file_reference() -> None:
    from drivers.opcua.config import Filter, OpcUaDevice, OpcUaTag, Security, Subscription, UserLogin

    reference = page("commissioning/station.md").split("## OPC UA devices", 1)[1].split("\n## ", 1)[0]
    for model in (OpcUaDevice, OpcUaTag, Filter, Security, Subscription, UserLogin):
        for name, field in model.model_fields.items():
            key = field.alias or name
            assert f"`{key}`" in reference, f"{model.__name__}.{key} is not documented"


def test_every_units_documentation_is_a_page_the_install_steps_put_where_it_points() -> None:
    install = (ROOT / "docs" / "getting-started" / "install.md").read_text()
    assert "cp -r docs /opt/heatgw/docs" in install
    for unit in sorted((ROOT / "systemd").glob("*.service")):
        pages = re.findall(r"^Documentation=file:///opt/heatgw/docs/(\S+)$", unit.read_text(), re.MULTILINE)
        assert pages, f"{unit.name} names no installed documentation page"
        assert all((ROOT / "docs" / page).is_file() for page in pages), f"{unit.name}: {pages}"
