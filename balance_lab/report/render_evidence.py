"""How sure a report's comparisons are, as table cells: the power columns of the paired table and the
sequential section of a sweep run until resolved (evidence/, report/sequential.py)."""

from __future__ import annotations

import math

from balance_lab.report import stats
from balance_lab.report.contents import Report

POWER_HEADERS = ("resolves ±%", "seeds: this diff", "seeds: paper's")
POWER_NOTE_SHORT = (
    "resolves ±%: the interval's half-width in % of the baseline (smaller differences are noise at this n); "
    "seeds: needed for 80% power at 95% from the observed spread"
)
POWER_NOTE = (
    "*resolves ±%*: the smallest difference these seeds can tell from zero, the 95% interval's half-width in % "
    "of the baseline's mean. *seeds: this diff* / *seeds: paper's*: the seeds a paired t-test needs to detect "
    "the observed difference / the paper's difference (its relative difference scaled to our baseline) with "
    "80% power at 95%, from the non-central t distribution with the observed spread of the paired differences "
    "taken as the true one and the differences as normal (docs/evidence.md)."
)


def power_cells(p: stats.Paired) -> list[str]:
    def seeds(n: int | None, delta: float | None, tie: str) -> str:
        if delta is None or p.n < 2 or not p.sd > 0:  # no spread: no t-test whose power to compute
            return "-"
        if delta == 0:
            return tie
        return f"{n:,}" if n is not None else "> 100,000"

    observed, paper = seeds(p.seeds_to_resolve, p.mean, "-"), seeds(p.seeds_for_paper, p.paper, "a tie")
    return [percent(p.resolvable_pct), observed, paper]


def percent(value: float) -> str:
    """A % of the baseline's mean; beyond 1,000% the baseline is near zero (a floor) and % says nothing."""
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value <= 1000 else "> 1,000"


def sequential_title(report: Report) -> str:
    plan = report.sequential_plan
    return (
        f"until resolved: {plan.metric} against {plan.baseline}, looks at {', '.join(map(str, plan.looks))} seeds "
        f"(seeds {plan.seeds[0]}..{plan.seeds[-1]} in the declared order)"
    )


def sequential_cells(row) -> list[str]:
    final = row.outcome.final
    ruled = percent(row.ruled_out_pct)
    return [
        str(final.seeds),
        f"{final.mean:+.4f}",
        f"[{final.low:+.4f}, {final.high:+.4f}]",
        row.outcome.statement(),
        ruled,
    ]


SEQUENTIAL_FIRST = (
    "this sweep adds seeds until resolved: its verdicts are the sequential intervals here; the "
    "fixed-n paired table after them ignores the looks already taken and would call differences too often"
)
SEQUENTIAL_HEADERS = (
    "configuration",
    "metric",
    "seeds",
    "mean diff",
    "sequential 95% interval",
    "outcome",
    "rules out ±%",
)


def sequential_table(report: Report):
    from rich.table import Table

    plan = report.sequential_plan
    table = Table(
        title=sequential_title(report),
        header_style="bold",
        caption=f"stopped: {plan.stopped or 'unknown'}; rules out ±%: differences beyond it in % of the "
        "baseline lie outside the interval",
    )
    for name in SEQUENTIAL_HEADERS:
        table.add_column(name, justify="right" if name in ("seeds", "mean diff", "rules out ±%") else "left")
    for row in report.sequential_rows:
        metric = f"[bold]{row.metric}[/] (the rule's)" if row.metric == plan.metric else row.metric
        table.add_row(row.label, metric, *sequential_cells(row))
    return table


def judged_sequentially(report: Report, p: stats.Paired) -> bool:
    """Whether the sequential section judges this pair (its fixed-n verdict is then not the verdict)."""
    return any(r.label == p.label and r.metric == p.metric for r in report.sequential_rows)


def fixed_verdict(report: Report, p: stats.Paired) -> str:
    return f"{p.verdict} (fixed n: see the sequential interval)" if judged_sequentially(report, p) else p.verdict


def sequential_markdown(report: Report, md_table) -> list[str]:
    if not report.sequential_rows:
        return []
    plan = report.sequential_plan
    rows = [
        [f"`{r.label}`", f"**{r.metric}** (the rule's)" if r.metric == plan.metric else r.metric] + sequential_cells(r)
        for r in report.sequential_rows
    ]
    changed = [f"**Warning: {plan.changed}.**", ""] if plan.changed else []
    return [
        f"**{SEQUENTIAL_FIRST[0].upper() + SEQUENTIAL_FIRST[1:]}.**",
        "",
        *changed,
        f"## Sequential comparison ({sequential_title(report)})",
        "",
        f"Stopped: {plan.stopped or 'unknown'}. Each interval is a repeated confidence interval of a "
        "group-sequential paired t-test (Lan-DeMets O'Brien-Fleming spending over the planned looks): all "
        "looks together keep 95% coverage, so the interval at the look where the sweep stopped is a valid "
        "95% interval. *rules out ±%*: a difference larger than this, in % of the baseline's mean, lies "
        "outside it ([docs/evidence.md](../../docs/evidence.md)).",
        "",
        md_table(list(SEQUENTIAL_HEADERS), rows, right={2, 3, 6}),
        "",
    ]
