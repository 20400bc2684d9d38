"""The across-contexts table (across.py) in the terminal and in report.md: one builder of rows for both."""

from __future__ import annotations

import math

from balance_lab.report.across import Gap, Shift

HEADERS = ("comparison", "metric", "gap at first", "gap at other", "change", "change (% points)", "verdict")
NOTE = (
    "gap: the paired mean difference over each context's seeds, and in % of that context's baseline; "
    "change: the second gap minus the first, and in % points, with a Welch 95% interval "
    "(independent seeds at each setting)"
)


def rows(shifts: list[Shift], titles: dict[str, str]) -> list[list[str]]:
    return [
        [
            s.comparison,
            titles.get(s.metric, s.metric),
            _gap(s.first),
            _gap(s.other),
            _change(s.change, ".4f"),
            _change(s.change_pct, ".2f"),
            s.verdict,
        ]
        for s in shifts
    ]


def title(shifts: list[Shift]) -> str:
    contexts = list(dict.fromkeys(c for s in shifts for c in (s.first.context, s.other.context)))
    return f"the same comparison at {' and '.join(contexts)}: does the gap move?"


def terminal_table(shifts: list[Shift], titles: dict[str, str]):
    from rich.table import Table

    table = Table(title=title(shifts), header_style="bold", caption=NOTE)
    for name in HEADERS:
        table.add_column(name, justify="right" if name.startswith(("gap", "change")) else "left")
    for row in rows(shifts, titles):
        table.add_row(*row)
    return table


def markdown(shifts: list[Shift], titles: dict[str, str], md_table) -> list[str]:
    if not shifts:
        return []
    return [
        f"## Across settings: {title(shifts)}",
        "",
        f"{NOTE[0].upper()}{NOTE[1:]}.",
        "",
        md_table(list(HEADERS), rows(shifts, titles), right={2, 3, 4, 5}),
        "",
    ]


def _gap(gap: Gap) -> str:
    return f"{gap.context}: {gap.mean:+.4f} ({gap.pct:+.2f}%, n={gap.n})"


def _change(change: tuple[float, float, float], spec: str) -> str:
    estimate, low, high = change
    interval = "" if math.isnan(low) else f" [{low:+{spec}}, {high:+{spec}}]"
    return f"{estimate:+{spec}}{interval}"
