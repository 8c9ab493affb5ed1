"""The figures of a run: one row each, with its target and whether it is met; printed and saved as JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass
class Figure:
    part: str
    name: str
    value: float
    unit: str
    # The target, when the figure has one: (">=", 70.0) or ("<=", 50.0).
    target: tuple[str, float] | None = None
    note: str = ""

    @property
    def ok(self) -> bool | None:
        if self.target is None or math.isnan(self.value):
            return None if self.target is None else False
        op, bound = self.target
        return self.value >= bound if op == ">=" else self.value <= bound

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = f"{self.target[0]} {self.target[1]:g} {self.unit}" if self.target else None
        data["ok"] = self.ok
        data["value"] = None if math.isnan(self.value) else round(self.value, 3)
        return data


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit in ("ms",):
        return f"{value:,.1f}"
    if unit == "%":
        return f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def print_table(figures: list[Figure], facts: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=170)
    table = Table(title="Passerelle bench", show_lines=False)
    table.add_column("part")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("target")
    table.add_column("", justify="center")
    table.add_column("note", overflow="fold", max_width=70)
    last_part = None
    for f in figures:
        if last_part is not None and f.part != last_part:
            table.add_section()
        last_part = f.part
        verdict = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: ""}[f.ok]
        target = f"{f.target[0]} {f.target[1]:g}" if f.target else ""
        table.add_row(f.part, f.name, _fmt(f.value, f.unit), f.unit, target, verdict, f.note)
    console.print(table)
    for key, value in facts.items():
        console.print(f"[bold]{key}[/]: {value}")
