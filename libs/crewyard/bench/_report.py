"""The results as a rich table on the terminal and as a JSON file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._stats import Figure


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure], title: str) -> Table:
    t = Table(title=title, box=box.SIMPLE_HEAD, show_lines=False)
    for name, justify in (
        ("#", "left"),
        ("figure", "left"),
        ("value", "right"),
        ("raw baseline", "right"),
        ("ratio", "right"),
        ("n", "right"),
        ("min / median / max", "right"),
        ("unit", "left"),
        ("target", "left"),
        ("met", "center"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for f in figures:
        if f.error:
            t.add_row(f.key, f.title, Text(f.error, style="red"), *[""] * 7)
            continue
        met = Text("—") if f.met is None else Text("yes", "green") if f.met else Text("no", "bold red")
        t.add_row(
            f.key,
            Text.assemble(f.title, ("\n" + f.detail if f.detail else "", "dim")),
            _num(f.value),
            Text.assemble(_num(f.baseline), ("\n" + f.baseline_label if f.baseline_label else "", "dim")),
            "—" if f.ratio is None else f"{f.ratio:.2f}×",
            str(f.samples),
            f"{_num(f.min)} / {_num(f.median)} / {_num(f.max)}",
            f.unit,
            f.target or "—",
            met,
        )
    return t


def show(figures: list[Figure], meta: dict[str, Any], console: Console) -> None:
    load = meta.get("loadavg_before", [0.0])[0]
    console.print(table(figures, f"crewyard bench — {meta['mode']}, {meta['cpus']} CPUs, load {load:.2f}"))
    for note in meta.get("notes", []):
        console.print(Text("note: " + note, style="yellow"))


def write(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    doc = {"meta": meta, "figures": figures}
    path.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n")
