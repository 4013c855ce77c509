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
    t = Table(title=title, box=box.SIMPLE_HEAD)
    t.add_column("#", no_wrap=True)
    t.add_column("figure", no_wrap=True)
    for name in ("value", "unit", "raw baseline", "ratio", "n", "min / median / max"):
        t.add_column(name, justify="left" if name == "unit" else "right", no_wrap=True)
    t.add_column("target", no_wrap=True)
    t.add_column("met", justify="center")
    for f in figures:
        if f.error:
            t.add_row(f.key, f.title, Text("not measured (see below)", style="red"), *[""] * 7)
            continue
        met = Text("—") if f.met is None else Text("yes", "green") if f.met else Text("no", "bold red")
        t.add_row(
            f.key,
            f.title,
            _num(f.value),
            f.unit,
            _num(f.baseline),
            "—" if f.ratio is None else f"{f.ratio:.2f}x",
            str(f.samples),
            f"{_num(f.min)} / {_num(f.median)} / {_num(f.max)}",
            f.target or "—",
            met,
        )
    return t


def details(figures: list[Figure]) -> Table:
    """What each baseline is and how each figure was taken, under the table."""
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column()
    for f in figures:
        if f.error:
            t.add_row(f.key, Text(f.error, style="red"))
            continue
        text = Text()
        if f.baseline_label:
            text.append(f"baseline: {f.baseline_label}", style="dim")
        if f.detail:
            text.append(("; " if text else "") + f.detail)
        t.add_row(f.key, text)
    return t


def show(figures: list[Figure], meta: dict[str, Any], console: Console) -> None:
    load = meta.get("loadavg_before", [0.0])[0]
    console.print(table(figures, f"crewyard bench — {meta['mode']}, {meta['cpus']} CPUs, load {load:.2f}"))
    console.print(details(figures))
    for note in meta.get("notes", []):
        console.print(Text("note: " + note, style="yellow"))


def write(path: Path, figures: list[Figure], meta: dict[str, Any]) -> None:
    doc = {"meta": meta, "figures": figures}
    path.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2) + b"\n")
