"""``heatgw curve FILE [--png OUT] [--points CSV]``: show a heating curve the way operators read it.

Prints the curve as a table (the form filed with the dispatch centre) and, with ``--png``, draws
it with matplotlib: the curve, its design points, the min/max supply limits and, when a CSV of
operating points is given (``outdoor_c,setpoint_c`` columns: a live station's own
``<state_dir>/operating-points.csv``, see ``gateway.control.operating_points``, or what
``bench/season.py --points`` writes), where the station actually ran.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from gateway.control.loader import load_curve
from gateway.curves import Curve
from gateway.yaml_source import ConfigError

TABLE_OUTDOOR_C: tuple[float, ...] = (-30.0, -20.0, -15.0, -10.0, -7.6, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0)
EXIT_INVALID = 2


def curve_table(curve: Curve) -> str:
    """The curve as text: identity, limits and supply (and design return) against outdoor temperature."""
    outdoor = sorted(set(TABLE_OUTDOOR_C) | {p.outdoor_c for p in curve.points or ()}
                     | ({curve.physical.design_outdoor_c} if curve.physical else set()))
    supply = curve.supply_at(outdoor)
    returns = curve.return_at(outdoor)
    lines = [
        f"curve {curve.identity}, circuit {curve.circuit}, by {curve.author}"
        + (f", filed with {curve.filed_with}" if curve.filed_with else ""),
        f"serves rooms at {curve.room_c:g} C; supply limited to [{curve.min_supply_c:g}, {curve.max_supply_c:g}] C; "
        + ("point table" if curve.points else "physical form"),
        "",
        "outdoor C  supply C" + ("  return C" if returns is not None else ""),
    ]
    for i, (x, y) in enumerate(zip(outdoor, supply, strict=True)):
        row = f"{x:9.1f}  {y:8.1f}"
        if returns is not None:
            row += f"  {min(max(returns[i], 0.0), y):8.1f}"
        lines.append(row)
    return "\n".join(lines)


POINT_COLUMNS = ("outdoor_c", "setpoint_c")
"""The operating-points CSV columns ``--points`` reads (and ``--help`` names)."""
PLOT_EXTRA_HINT = ("--png needs matplotlib: install heatgw with its plot extra, "
                   f"{sys.executable} -m pip install '/path/to/heatgw[plot]' (where heatgw was installed from)")


def read_points(path: Path, circuit: str | None = None) -> tuple[list[float], list[float]]:
    """Operating points from a CSV with ``outdoor_c`` and ``setpoint_c`` columns; if it also has a
    ``circuit`` column (the gateway's own ``operating-points.csv``), only that ``circuit``'s rows."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle)
                if circuit is None or row.get("circuit") in (None, circuit)]
    outdoor_column, setpoint_column = POINT_COLUMNS
    try:
        outdoor = [float(row[outdoor_column]) for row in rows]
        setpoint = [float(row[setpoint_column]) for row in rows]
    except (KeyError, ValueError) as exc:
        raise ConfigError([f"{path}: operating points need numeric {outdoor_column} and {setpoint_column} columns "
                           f"({exc})"]) from None
    return outdoor, setpoint


def can_plot() -> bool:
    """Whether matplotlib is there: an optional dependency (the `plot` extra), not on every station PC."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def plot_curve(curve: Curve, png: Path, points: tuple[Sequence[float], Sequence[float]] | None = None,
               title: str | None = None, extra: Sequence[tuple[str, Curve]] = ()) -> None:
    """Draw the curve (and any ``extra`` curves for comparison) to ``png``, with operating points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdoor = [-20.0 + 0.25 * step for step in range(161)]
    fig, ax = plt.subplots(figsize=(8.0, 5.0), dpi=120)
    if points is not None:
        ax.scatter(points[0], points[1], s=4, alpha=0.25, color="tab:orange", label="operating points (setpoint)",
                   rasterized=True)
    ax.plot(outdoor, curve.supply_at(outdoor), color="tab:red", lw=2, label=f"supply: {curve.name} v{curve.version}")
    returns = curve.return_at(outdoor)
    if returns is not None:
        ax.plot(outdoor, [min(r, s) for r, s in zip(returns, curve.supply_at(outdoor))], color="tab:blue", lw=1, ls="--",
                label="design return")
    for label, other in extra:
        ax.plot(outdoor, other.supply_at(outdoor), lw=1, ls="-.", label=label)
    if curve.points is not None:
        ax.plot([p.outdoor_c for p in curve.points], [p.supply_c for p in curve.points], "o", color="tab:red",
                label="table points")
    elif curve.physical is not None:
        d = curve.physical
        ax.plot([d.design_outdoor_c, d.design_outdoor_c], [d.design_supply_c, d.design_return_c], "o",
                color="black", label=f"design {d.design_supply_c:g}/{d.design_return_c:g} C at {d.design_outdoor_c:g} C")
    for value, name in ((curve.min_supply_c, "min"), (curve.max_supply_c, "max")):
        ax.axhline(value, color="grey", lw=0.8, ls=":")
        ax.annotate(f"{name} {value:g} C", (outdoor[-1], value), ha="right", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("outdoor temperature, C")
    ax.set_ylabel("secondary supply, C")
    ax.set_title(title or f"{curve.identity}, circuit {curve.circuit}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", bbox_to_anchor=(1.0, 0.93))
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)


def curve_command(file: Path, png: Path | None = None, points: Path | None = None,
                  out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The CLI command: print the table, draw the PNG; returns the exit code (2 on a bad file, 1
    when --png cannot be drawn here)."""
    if png is not None and not can_plot():
        err.write(PLOT_EXTRA_HINT + "\n")
        return 1
    try:
        curve = load_curve(file)
        operating = read_points(points, curve.circuit) if points is not None else None
    except ConfigError as exc:
        for message in exc.messages:
            err.write(message + "\n")
        return EXIT_INVALID
    out.write(curve_table(curve) + "\n")
    if png is not None:
        plot_curve(curve, png, operating)
        out.write(f"plot written to {png}\n")
    return 0
