"""Rewrite the register-map sections of the documentation from sim/registers.py (the single source
of truth).

Run after changing the map: ``.venv/bin/python scripts/update_register_map.py``.
tests/test_docs.py fails while docs/commissioning/register-map.md and the map disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from sim.registers import Device, circuit_markdown_table, markdown_table

PAGE = Path(__file__).resolve().parents[1] / "docs" / "commissioning" / "register-map.md"


def render(text: str) -> str:
    """Page text with every ``register-map:<device>`` section replaced by the current table."""
    tables = {device.value: markdown_table(device) for device in Device} | {"circuits": circuit_markdown_table()}
    for section, table in tables.items():
        pattern = re.compile(rf"(<!-- register-map:{section} -->\n).*?(<!-- /register-map:{section} -->)", re.S)
        text = pattern.sub(lambda m, t=table: m[1] + t + "\n" + m[2], text)
    return text


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
    sys.exit(0)
