"""Rewrite the register-map sections of README.md from sim/registers.py (the single source of truth).

Run after changing the map: ``.venv/bin/python scripts/update_register_map.py``.
tests/test_readme.py fails while README.md and the map disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sim.registers import Device, circuit_markdown_table, markdown_table

README = Path(__file__).resolve().parents[1] / "README.md"


def render(text: str) -> str:
    """README text with every ``register-map:<device>`` section replaced by the current table."""
    tables = {device.value: markdown_table(device) for device in Device} | {"circuits": circuit_markdown_table()}
    for section, table in tables.items():
        pattern = re.compile(rf"(<!-- register-map:{section} -->\n).*?(<!-- /register-map:{section} -->)", re.S)
        text = pattern.sub(lambda m, t=table: m[1] + t + "\n" + m[2], text)
    return text


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.exit(0)
