"""A report as a rich table (terminal), Markdown, self-contained HTML and per-run CSV."""

from __future__ import annotations

import math
from datetime import datetime, timezone

import pandas as pd

from balance_lab.report import convergence, imbalance, render_across, stats
from balance_lab.report import render_evidence as evidence
from balance_lab.report.contents import Report, plot_title

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
    console.print(f"[dim]{_notes(report, MAXVIO_NOTE).replace('*', '')}[/]")
    if report.cost_columns:
        console.print(_rich_summary(report, report.cost_columns, "what imbalance would cost"))
        console.print(f"[dim]{imbalance.NOTE.replace('*', '')}[/]")
    if report.sequential_rows:  # a sweep run until resolved: its verdicts come first
        console.print(f"[yellow]{evidence.SEQUENTIAL_FIRST}[/]")
        if report.sequential_plan.changed:
            console.print(f"[bold red]warning: {report.sequential_plan.changed}[/]")
        console.print(evidence.sequential_table(report))
    if any(p.n >= 2 for p in report.paired):
        console.print(_paired_table(report))
    elif report.paired:
        console.print("[dim]paired comparison: needs at least 2 seeds shared by two configurations[/]")
    if report.shifts:
        console.print(render_across.terminal_table(report.shifts, _titles(report)))
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
        table.add_row(stats.shown_label(row), str(row["n_seeds"]), *cells)
    return table


def _paired_table(report: Report):
    from rich.table import Table

    titles = _titles(report)
    table = Table(
        title=f"paired by seed: configuration - {report.baseline_text} (95% t-interval)",
        header_style="bold",
        caption=evidence.POWER_NOTE_SHORT,
    )
    for name in ("configuration", "metric", "n", "mean diff", "95% interval", "verdict", *evidence.POWER_HEADERS):
        table.add_column(
            name,
            justify="left" if name in ("configuration", "metric", "verdict") else "right",
            no_wrap=name == "configuration",
        )
    for p in sorted(report.paired, key=lambda p: _order(report, p.label)):
        colour = (
            "dim"
            if evidence.judged_sequentially(report, p)
            else {"lower": "green", "higher": "red"}.get(p.verdict, "dim")
        )
        table.add_row(
            p.label,
            titles.get(p.metric, p.metric),
            str(p.n),
            f"{p.mean:+.4f}",
            _interval(p),
            f"[{colour}]{evidence.fixed_verdict(report, p)}[/]",
            *evidence.power_cells(p),
        )
    return table


def _titles(report: Report) -> dict[str, str]:
    return {c.key: c.title for c in [*report.columns, *report.cost_columns]}


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
    """report.md: one section after the other, each left out where the report has nothing for it."""
    sections = (
        _md_header,
        _md_results,
        lambda r: evidence.sequential_markdown(r, _md_table),  # before the fixed-n verdicts
        _md_paired,
        lambda r: render_across.markdown(r.shifts, _titles(r), _md_table),
        lambda r: convergence.markdown(r.convergence, _md_baseline(r), _md_table),
        _md_paper,
        _md_plots,
        _md_unfinished,
        _provenance,
    )
    return "\n".join(line for section in sections for line in section(report)).rstrip() + "\n"


def _md_header(report: Report) -> list[str]:
    runs, now = report.runs, datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# Sweep `{report.sweep}`: which balancing method, at what cost",
        "",
        f"Generated by `balance-lab report` on {now} from `{report.tracking_uri}`: "
        f"{len(runs.finished)} finished runs in {len(report.summary)} configurations, "
        f"{len(runs.unfinished)} not counted. Code: {_shas(report)}.",
        "",
    ]


def _md_results(report: Report) -> list[str]:
    if report.summary.empty:
        return ["## Results", "", "No finished run: nothing to compare.", ""]
    best = {c.key: stats.best_labels(report.summary, c) for c in report.columns}
    rows = []
    for _, row in report.summary.iterrows():
        cells = [f"**{cell(row, c)}**" if row["label"] in best[c.key] else cell(row, c) for c in report.columns]
        rows.append([stats.shown_label(row, "`"), str(row["n_seeds"]), *cells])
    header = ["configuration", "seeds", *[c.title for c in report.columns]]
    table = _md_table(header, rows, right=set(range(1, len(header))))
    return ["## Results", "", table, "", _notes(report, MAXVIO_NOTE), "", *_cost_markdown(report)]


def _md_paired(report: Report) -> list[str]:
    if not report.paired:
        return []
    rows = [
        [
            f"`{p.label}`",
            p.metric,
            str(p.n),
            f"{p.mean:+.4f}",
            _interval(p),
            evidence.fixed_verdict(report, p),
            *evidence.power_cells(p),
        ]
        for p in report.paired
    ]
    header = ["configuration", "metric", "seeds", "mean difference", "95% interval", "verdict", *evidence.POWER_HEADERS]
    return [
        f"## Paired comparison against {_md_baseline(report)}",
        "",
        "Same seed, configuration minus baseline; the interval is the 95% t-interval of the mean "
        "difference over seeds. *lower*/*higher*: the interval excludes zero.",
        "",
        _md_table(header, rows, right={2, 3, 4, 6, 7, 8}),
        "",
        evidence.POWER_NOTE,
        "",
    ]


def _md_paper(report: Report) -> list[str]:
    if not report.paper:
        return []
    rows = [
        [_number(v) if not isinstance(v, str) else f"`{v}`" for v in row] for _, row in report.paper.rows.iterrows()
    ]
    return [
        f"## Beside the published numbers ({report.paper.source})",
        "",
        _md_table(list(report.paper.rows.columns), rows, right={1, 2, 3, 4}),
        "",
        *[f"- {v}" for v in report.paper.verdicts],
        "- absolute values cannot match: a tiny model on a CPU vs a 1B model on 100B tokens; "
        "what can match is the ordering, each pair judged by our paired 95% interval over the seeds both ran "
        "(by the sequential interval where the sweep ran until resolved).",
        "",
    ]


def _md_plots(report: Report) -> list[str]:
    if not report.plots:
        return []
    parts = ["## Plots", ""]
    if report.plots_left_out:
        names = ", ".join(f"`{label}`" for label in report.plots_left_out)
        parts += [f"The expert-load plots leave out {names}: another model shape than the first configuration's.", ""]
    for name, path in report.plots.items():
        title = plot_title(name)
        parts += [f"### {title}", "", f"![{title}]({path})", ""]
    return parts


def _md_unfinished(report: Report) -> list[str]:
    unfinished = report.runs.unfinished
    if unfinished.empty:
        return []
    rows = [[f"`{r.run_name}`", r.status, str(r.reason)[:200] or "-", f"`{r.run_id}`"] for r in unfinished.itertuples()]
    return [
        "## Runs not counted",
        "",
        "Failed, killed or still running; not averaged in.",
        "",
        _md_table(["run", "status", "reason", "run id"], rows),
        "",
    ]


def _md_baseline(report: Report) -> str:
    return f"`{report.baseline}`" if report.baseline_text == str(report.baseline) else report.baseline_text


def _notes(report: Report, note: str) -> str:
    """The table's note, and what a reference row is where the table has one."""
    has_reference = "reference" in report.summary and bool(report.summary["reference"].any())
    return f"{note} *(reference)*: {stats.REFERENCE_NOTE}." if has_reference else note


def _cost_markdown(report: Report) -> list[str]:
    if not report.cost_columns:
        return []
    best = {c.key: stats.best_labels(report.summary, c) for c in report.cost_columns}
    rows = [
        [
            stats.shown_label(row, "`"),
            *[f"**{cell(row, c)}**" if row["label"] in best[c.key] else cell(row, c) for c in report.cost_columns],
        ]
        for _, row in report.summary.iterrows()
    ]
    header = ["configuration", *[c.title for c in report.cost_columns]]
    return [
        "## What imbalance would cost",
        "",
        _md_table(header, rows, right=set(range(1, len(header)))),
        "",
        imbalance.NOTE,
        "",
    ]


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
