"""A report as a rich table (terminal), Markdown, self-contained HTML and per-run CSV."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pandas as pd

from balance_lab.report import stats
from balance_lab.report.contents import PLOTS, Report

MAXVIO_NOTE = (
    "MaxVio = (max load - mean load) / mean load per MoE layer, averaged over layers: *global* over "
    "the whole validation set, *batch* per optimizer step (all micro-batches and ranks) and *compute* "
    "per micro-batch on one rank, both averaged over every training step. *top expert <domain>*: the "
    "largest fraction of the domain's validation tokens that choose one expert, averaged over layers "
    "(higher = more specialised). Mean ± std over seeds; **bold**: best."
)


def cell(summary_row: pd.Series, column: stats.Column) -> str:
    mean, std = summary_row[f"{column.key} mean"], summary_row[f"{column.key} std"]
    if pd.isna(mean):
        return "-"
    text = f"{mean:,.{column.digits}f}"
    if not pd.isna(std):
        text += f" ± {std:,.{column.digits}f}"
    return text


def terminal(report: Report, console) -> None:
    """The comparison table, specialisation, paired differences, the paper's numbers and the runs not counted."""
    runs = report.runs
    common = f" ({runs.common} in every name)" if runs.common else ""
    title = f"sweep {report.sweep}: {len(runs.finished)} finished runs, {len(report.summary)} configurations{common}"
    main = [c for c in report.columns if not c.key.startswith(stats.SPECIALISATION_PREFIX)]
    special = [c for c in report.columns if c.key.startswith(stats.SPECIALISATION_PREFIX)]
    console.print(_rich_summary(report, main, title))
    if special:
        console.print(_rich_summary(report, special, "specialisation: largest expert selection frequency per domain"))
    console.print(f"[dim]{MAXVIO_NOTE.replace('*', '')}[/]")
    if any(p.n >= 2 for p in report.paired):
        console.print(_paired_table(report))
    elif report.paired:
        console.print("[dim]paired comparison: needs at least 2 seeds shared by two configurations[/]")
    if report.sequential_rows:
        console.print(f"[yellow]{SEQUENTIAL_FIRST}[/]")
        console.print(_sequential_table(report))
    if report.paper:
        console.print(_paper_table(report))
    if not runs.unfinished.empty:
        console.print(_unfinished_table(report))


def _rich_summary(report: Report, columns: list[stats.Column], title: str):
    from rich.table import Table

    table = Table(title=title, header_style="bold", title_style="bold")
    table.add_column("configuration", no_wrap=True)
    table.add_column("n", justify="right")
    for column in columns:
        table.add_column(column.title, justify="right")
    best = {c.key: stats.best_labels(report.summary, c) for c in columns}
    for _, row in report.summary.iterrows():
        cells = [cell(row, c) for c in columns]
        cells = [f"[bold green]{text}[/]" if row["label"] in best[c.key] else text for text, c in zip(cells, columns)]
        table.add_row(row["label"], str(row["n_seeds"]), *cells)
    return table


def _paired_table(report: Report):
    from rich.table import Table

    titles = {c.key: c.title for c in report.columns}
    table = Table(
        title=f"paired by seed: configuration - {report.baseline} (95% t-interval)",
        header_style="bold",
        caption=POWER_NOTE_SHORT,
    )
    for name in ("configuration", "metric", "n", "mean diff", "95% interval", "verdict", *POWER_HEADERS):
        table.add_column(
            name,
            justify="left" if name in ("configuration", "metric", "verdict") else "right",
            no_wrap=name == "configuration",
        )
    for p in sorted(report.paired, key=lambda p: _order(report, p.label)):
        colour = {"lower": "green", "higher": "red"}.get(p.verdict, "dim")
        table.add_row(
            p.label,
            titles.get(p.metric, p.metric),
            str(p.n),
            f"{p.mean:+.4f}",
            _interval(p),
            f"[{colour}]{p.verdict}[/]",
            *_power_cells(p),
        )
    return table


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


def _power_cells(p: stats.Paired) -> list[str]:
    def seeds(n: int | None, delta: float | None) -> str:
        if delta is None or p.n < 2:
            return "-"
        return f"{n:,}" if n is not None else "> 100,000"

    resolvable = "-" if math.isnan(p.resolvable_pct) else f"{p.resolvable_pct:.2f}"
    return [resolvable, seeds(p.seeds_to_resolve, p.mean), seeds(p.seeds_for_paper, p.paper)]


def _sequential_title(report: Report) -> str:
    plan = report.sequential_plan
    return (
        f"until resolved: {plan.metric} against {plan.baseline}, looks at {', '.join(map(str, plan.looks))} seeds "
        f"(seeds {plan.seeds[0]}..{plan.seeds[-1]} in the declared order)"
    )


def _sequential_cells(row) -> list[str]:
    final = row.outcome.final
    ruled = "-" if math.isnan(row.ruled_out_pct) else f"{row.ruled_out_pct:.2f}"
    return [
        str(final.seeds),
        f"{final.mean:+.4f}",
        f"[{final.low:+.4f}, {final.high:+.4f}]",
        row.outcome.statement(),
        ruled,
    ]


SEQUENTIAL_FIRST = (
    "this sweep adds seeds until resolved: its verdicts are the sequential intervals below; the "
    "fixed-n intervals above ignore the looks already taken and would call differences too often"
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


def _sequential_table(report: Report):
    from rich.table import Table

    plan = report.sequential_plan
    table = Table(
        title=_sequential_title(report),
        header_style="bold",
        caption=f"stopped: {plan.stopped or 'unknown'}; rules out ±%: differences beyond it in % of the "
        "baseline lie outside the interval",
    )
    for name in SEQUENTIAL_HEADERS:
        table.add_column(name, justify="right" if name in ("seeds", "mean diff", "rules out ±%") else "left")
    for row in report.sequential_rows:
        metric = f"[bold]{row.metric}[/] (the rule's)" if row.metric == plan.metric else row.metric
        table.add_row(row.label, metric, *_sequential_cells(row))
    return table


def _order(report: Report, label: str) -> int:
    labels = list(report.summary["label"])
    return labels.index(label) if label in labels else len(labels)


def _paper_table(report: Report):
    from rich.console import Group
    from rich.table import Table

    rows = report.paper.rows
    table = Table(title=f"published: {report.paper.source}", header_style="bold")
    for name in rows.columns:
        table.add_column(name, justify="left" if name == "label" else "right")
    for _, row in rows.iterrows():
        table.add_row(*[_number(v) for v in row])
    notes = (
        "\n".join(report.paper.verdicts) + "\n[dim]absolute values differ by design: a tiny CPU model vs a 1B model[/]"
    )
    return Group(table, notes)


def _unfinished_table(report: Report):
    from rich.table import Table

    table = Table(title="not counted (did not finish)", header_style="bold red")
    for name in ("run", "status", "reason", "run id"):
        table.add_column(name)
    for _, row in report.runs.unfinished.iterrows():
        table.add_row(str(row["run_name"]), row["status"], str(row["reason"])[:120], row["run_id"])
    return table


def _interval(p: stats.Paired) -> str:
    return "-" if math.isnan(p.low) else f"[{p.low:+.4f}, {p.high:+.4f}]"


def _number(value) -> str:
    if isinstance(value, str):
        return value
    return "-" if value is None or pd.isna(value) else f"{value:.3f}"


# ---- Markdown ----------------------------------------------------------------------------------
def _md_table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    escape = lambda text: str(text).replace("|", "\\|")  # noqa: E731
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    runs, now = report.runs, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# Sweep `{report.sweep}`: which balancing method, at what cost",
        "",
        f"Generated by `balance-lab report` on {now} from `{report.tracking_uri}`: "
        f"{len(runs.finished)} finished runs in {len(report.summary)} configurations, "
        f"{len(runs.unfinished)} not counted. Code: {_shas(report)}.",
        "",
        "## Results",
        "",
    ]
    if report.summary.empty:
        parts += ["No finished run: nothing to compare.", ""]
    else:
        best = {c.key: stats.best_labels(report.summary, c) for c in report.columns}
        rows = []
        for _, row in report.summary.iterrows():
            cells = [f"**{cell(row, c)}**" if row["label"] in best[c.key] else cell(row, c) for c in report.columns]
            rows.append([f"`{row['label']}`", str(row["n_seeds"]), *cells])
        header = ["configuration", "seeds", *[c.title for c in report.columns]]
        parts += [_md_table(header, rows, right=set(range(1, len(header)))), "", MAXVIO_NOTE, ""]
    if report.paired:
        parts += [
            f"## Paired comparison against `{report.baseline}`",
            "",
            "Same seed, configuration minus baseline; the interval is the 95% t-interval of the mean "
            "difference over seeds. *lower*/*higher*: the interval excludes zero.",
            "",
        ]
        rows = [
            [f"`{p.label}`", p.metric, str(p.n), f"{p.mean:+.4f}", _interval(p), p.verdict, *_power_cells(p)]
            for p in report.paired
        ]
        parts += [
            _md_table(
                ["configuration", "metric", "seeds", "mean difference", "95% interval", "verdict", *POWER_HEADERS],
                rows,
                right={2, 3, 4, 6, 7, 8},
            ),
            "",
            POWER_NOTE,
            "",
        ]
    if report.sequential_rows:
        plan = report.sequential_plan
        rows = [
            [
                f"`{r.label}`",
                f"**{r.metric}** (the rule's)" if r.metric == plan.metric else r.metric,
                *_sequential_cells(r),
            ]
            for r in report.sequential_rows
        ]
        parts += [
            f"**{SEQUENTIAL_FIRST[0].upper() + SEQUENTIAL_FIRST[1:]}.**",
            "",
            f"## Sequential comparison ({_sequential_title(report)})",
            "",
            f"Stopped: {plan.stopped or 'unknown'}. Each interval is a repeated confidence interval of a "
            "group-sequential paired t-test (Lan-DeMets O'Brien-Fleming spending over the planned looks): all "
            "looks together keep 95% coverage, so the interval at the look where the sweep stopped is a valid "
            "95% interval. *rules out ±%*: a difference larger than this, in % of the baseline's mean, lies "
            "outside it ([docs/evidence.md](../../docs/evidence.md)).",
            "",
            _md_table(list(SEQUENTIAL_HEADERS), rows, right={2, 3, 6}),
            "",
        ]
    if report.paper:
        rows = [
            [_number(v) if not isinstance(v, str) else f"`{v}`" for v in row] for _, row in report.paper.rows.iterrows()
        ]
        parts += [
            f"## Beside the published numbers ({report.paper.source})",
            "",
            _md_table(list(report.paper.rows.columns), rows, right={1, 2, 3, 4}),
            "",
            *[f"- {v}" for v in report.paper.verdicts],
            "- absolute values cannot match: a tiny model on a CPU vs a 1B model on 100B tokens; "
            "what can match is the ordering.",
            "",
        ]
    if report.plots:
        parts += ["## Plots", ""]
        for name, path in report.plots.items():
            parts += [f"### {PLOTS[name]}", "", f"![{PLOTS[name]}]({path})", ""]
    if not runs.unfinished.empty:
        rows = [
            [f"`{r.run_name}`", r.status, str(r.reason)[:200] or "-", f"`{r.run_id}`"]
            for r in runs.unfinished.itertuples()
        ]
        parts += [
            "## Runs not counted",
            "",
            "Failed, killed or still running; not averaged in.",
            "",
            _md_table(["run", "status", "reason", "run id"], rows),
            "",
        ]
    parts += _provenance(report)
    return "\n".join(parts).rstrip() + "\n"


def _shas(report: Report) -> str:
    return ", ".join(f"`{_short_sha(s)}`" for s in report.git_shas) or "unknown"


def _short_sha(sha: str) -> str:
    return sha[:12] + ("-dirty" if sha.endswith("-dirty") else "")


def _provenance(report: Report) -> list[str]:
    parts = ["## How these numbers were produced", ""]
    if report.commands:
        parts += ["Commands (one per sweep invocation):", "", "```", *report.commands, "```", ""]
    if report.invocations:
        counts = ", ".join(f"{n} {status}" for status, n in report.invocations.items())
        parts += [
            f"Sweep invocations: {sum(report.invocations.values())} ({counts}). Runs an interrupted invocation "
            "stopped continue from their checkpoints in the next one, in the same MLflow run; only FINISHED "
            "runs are averaged.",
            "",
        ]
    if report.runs.varying:
        parts += [
            "Params that differ between the configurations: " + ", ".join(f"`{v}`" for v in report.runs.varying),
            "",
        ]
    parts += [
        "Files: [summary.csv](summary.csv) (one row per configuration: mean, std, n), "
        "[runs.csv](runs.csv) (one row per run), [report.html](report.html).",
        "",
    ]
    if report.config_text:
        parts += [
            "<details><summary>Resolved config of the first configuration's first run</summary>",
            "",
            "```yaml",
            report.config_text.rstrip(),
            "```",
            "",
            "</details>",
            "",
        ]
    return parts


def runs_table(report: Report) -> pd.DataFrame:
    """One row per run (counted ones first): ids, configuration, seed, status and every report column."""
    finished = report.runs.finished
    table = pd.DataFrame(
        {
            "run_id": finished.get("run_id"),
            "run_name": finished.get("run_name"),
            "configuration": finished.get("label"),
            "seed": finished.get("seed"),
            "status": "FINISHED",
        }
    )
    for column in report.columns:
        table[column.key] = stats.metric_values(finished, column) if not finished.empty else []
    unfinished = report.runs.unfinished.rename(columns={"reason": "status_reason"})
    return pd.concat(
        [table.sort_values(["configuration", "seed"]) if not table.empty else table, unfinished], ignore_index=True
    )
