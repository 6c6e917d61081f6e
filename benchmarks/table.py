"""The results table: one row per metric, SQLite and PostgreSQL side by side, the target, the raw
database limit measured in the same run and our ratio to it (ours / raw)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HEADERS = ("metric", "SQLite", "PostgreSQL", "target", "raw limit (S | P)", "ratio (S | P)", "met (S | P)")


@dataclass(slots=True)
class Row:
    metric: str
    sqlite: float | None
    postgresql: float | None
    target: tuple[str, float] | None = None  # (">=" or "<=", value)
    raw_sqlite: float | None = None
    raw_postgresql: float | None = None
    digits: int = 0

    def met(self, value: float | None) -> str:
        if self.target is None or value is None:
            return "-"
        op, goal = self.target
        return "yes" if (value >= goal if op == ">=" else value <= goal) else "NO"

    def to_json(self) -> dict[str, Any]:
        def ratio(ours: float | None, raw: float | None) -> float | None:
            return ours / raw if ours is not None and raw else None

        return {"metric": self.metric, "sqlite": self.sqlite, "postgresql": self.postgresql,
                "target": list(self.target) if self.target else None,
                "raw_sqlite": self.raw_sqlite, "raw_postgresql": self.raw_postgresql,
                "ratio_sqlite": ratio(self.sqlite, self.raw_sqlite),
                "ratio_postgresql": ratio(self.postgresql, self.raw_postgresql),
                "met_sqlite": self.met(self.sqlite), "met_postgresql": self.met(self.postgresql)}


def _num(v: float | None, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v:,.{digits}f}"


def _pair(a: str, b: str) -> str:
    return "-" if a == b == "-" else f"{a} | {b}"


def render(rows: list[Row]) -> str:
    cells = [HEADERS]
    for r in rows:
        j = r.to_json()
        target = f"{'>=' if r.target[0] == '>=' else '<='} {_num(r.target[1], r.digits)}" if r.target else "-"
        cells.append((
            r.metric, _num(r.sqlite, r.digits), _num(r.postgresql, r.digits), target,
            _pair(_num(r.raw_sqlite, 0), _num(r.raw_postgresql, 0)),
            _pair(_num(j["ratio_sqlite"], 2), _num(j["ratio_postgresql"], 2)),
            _pair(r.met(r.sqlite), r.met(r.postgresql)) if r.target else "-"))
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    lines = []
    for n, c in enumerate(cells):
        lines.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(c, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
