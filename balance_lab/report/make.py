"""One sweep's report: collect the runs, compute the tables, draw the plots, write the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from balance_lab.errors import ConfigError
from balance_lab.report import (
    across,
    collect,
    convergence,
    history,
    html,
    imbalance,
    plots,
    published,
    render,
    sequential,
    stats,
)
from balance_lab.report.contents import Report

PAIRED_KEYS = ("val/ppl", "val/bpb", "val/maxvio_global", "train/maxvio_batch_mean")
# Sweeps whose paper claims more domain specialisation (Global-batch LBL): their reports pair it too.
PAIRED_SPECIALISATION = ("lbl_scope",)


def paired_columns(sweep: str, columns: list) -> list:
    """The columns the paired comparison covers: perplexity and balance; specialisation where claimed."""
    return [
        c
        for c in columns
        if c.key in PAIRED_KEYS or (sweep in PAIRED_SPECIALISATION and c.key.startswith(stats.SPECIALISATION_PREFIX))
    ]


def make_report(
    tracking_uri: str, sweep: str, extra_metrics: list[str] = (), run_filter: str = "", baseline: str | None = None
) -> Report:
    """The numbers of one sweep's report (nothing written yet); its arguments passed check_arguments
    (the CLI checks every sweep's before the first report). ConfigError for a metric no run recorded."""
    runs = collect.load_sweep(tracking_uri, sweep, run_filter)
    _check_recorded(runs.finished, sweep, extra_metrics)
    loads = collect.read_val_loads(runs.finished, tracking_uri) if not runs.finished.empty else {}
    imbalance.add_metrics(runs.finished, loads)
    columns = stats.columns_for(runs.finished, list(extra_metrics))
    cost = imbalance.columns(runs.finished)
    summary = stats.summarise(runs.finished, columns + cost)
    chosen = _baseline(summary, baseline, runs.finished)
    main = paired_columns(sweep, columns)
    compared = main + [c for c in cost if c.key.startswith(imbalance.PAIRED_PREFIXES)]
    against = stats.baselines(runs.finished, chosen) if chosen else {}
    paired = stats.paired_differences(runs.finished, compared, against) if chosen else []
    plan = sequential.read_plan(runs)
    sequential_rows = sequential.rows(runs, plan, _sequential_columns(plan, main)) if plan is not None else []
    paper = published.compare(sweep, runs.finished, summary, sequential.signs(plan, sequential_rows))
    for p in paired:
        p.paper = published.scaled_difference(paper, p.label, p.baseline, p.metric, p.baseline_mean)
    report = Report(
        sweep,
        tracking_uri,
        runs,
        columns,
        summary,
        chosen,
        paired,
        paper,
        _commands(runs.parents),
        sorted(set(runs.finished.get(f"tags.{collect.tracking.TAG_GIT_SHA}", pd.Series(dtype=str)).dropna())),
        _invocations(runs.parents),
    )
    report.cost_columns, report.val_loads, report.against = cost, loads, against
    report.convergence = convergence.at_validations(runs.finished, against if chosen else None, tracking_uri)
    report.shifts = across.shifts(runs.finished, [p for p in paired if p.metric in {c.key for c in main}])
    report.sequential_plan, report.sequential_rows = plan, sequential_rows
    return report


def _sequential_columns(plan: sequential.Plan, main: list[stats.Column]) -> list[stats.Column]:
    """The paired table's metrics, the rule's own first if it is not among them."""
    if plan.metric in {c.key for c in main}:
        return list(main)
    return [stats.Column(plan.metric, plan.metric, None), *main]


def write_report(report: Report, out_root: Path, log_to_parent: bool = True) -> Report:
    """reports/<sweep>/{report.md, report.html, summary.csv, runs.csv, plots/*.png}; plots also go to
    the sweep's latest parent run (artifacts plots/)."""
    out = out_root / report.sweep
    (out / "plots").mkdir(parents=True, exist_ok=True)
    if not report.runs.finished.empty:
        report.plots = _draw(report, out)
        report.config_text = _first_config(report)
    report.summary.to_csv(out / "summary.csv", index=False)
    render.runs_table(report).to_csv(out / "runs.csv", index=False)
    markdown = render.markdown(report)
    (out / "report.md").write_text(markdown)
    (out / "report.html").write_text(html.html(markdown, out, title=f"balance-lab report: {report.sweep}"))
    report.files = {
        "md": out / "report.md",
        "html": out / "report.html",
        "summary": out / "summary.csv",
        "runs": out / "runs.csv",
    }
    if log_to_parent and not report.runs.parents.empty:
        _log_to_parent(report, out)
    return report


def _baseline(summary: pd.DataFrame, wanted: str | None, finished: pd.DataFrame) -> str | None:
    """The configuration named (exactly, or by a unique part) or the first. A part that names the same
    method at several settings (`aux_loss` at tiny and small) picks the first: each setting pairs with its own."""
    labels = list(summary["label"]) if not summary.empty else []
    if not labels:
        return None
    if wanted is None:
        return labels[0]
    if wanted in labels:
        return wanted
    matches = [label for label in labels if wanted in label]
    if len(matches) == 1 or (matches and finished.loc[finished["label"].isin(matches), "treatment"].nunique() == 1):
        return matches[0]
    raise ConfigError(f"--baseline {wanted!r} matches {len(matches)} configurations; choose one of {', '.join(labels)}")


def check_arguments(tracking_uri: str, sweeps: list[str], extra_metrics: list[str], run_filter: str) -> None:
    """The sweep names, --metric specs and --run-filter, before any report is made (ConfigError)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from mlflow.utils.search_utils import SearchUtils

    names = sorted(e.name for e in MlflowClient(tracking_uri).search_experiments() if e.name != "Default")
    for sweep in sweeps:
        if sweep not in names:
            known = f"choose one of {', '.join(names)}" if names else "the store holds no experiment yet"
            raise ConfigError(f"no experiment named '{sweep}' in {tracking_uri}; {known}")
    for spec in extra_metrics:
        better = spec.partition(":")[2]
        if better not in ("", "min", "max"):
            raise ConfigError(f"--metric {spec!r}: after ':' comes min or max (which way is better), not {better!r}")
    if run_filter:
        try:
            SearchUtils.parse_search_filter(run_filter)
        except MlflowException as exc:
            raise ConfigError(f"bad --run-filter {run_filter!r}: {exc.message.splitlines()[0]}") from None


def _check_recorded(finished: pd.DataFrame, sweep: str, extra_metrics: list[str]) -> None:
    """An extra metric no finished run recorded would be a column of dashes: a typo, named."""
    import difflib

    recorded = sorted(c.removeprefix("metrics.") for c in finished.columns if c.startswith("metrics."))
    for spec in extra_metrics:
        key = spec.partition(":")[0]
        if not finished.empty and key not in recorded:
            close = difflib.get_close_matches(key, recorded, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"they record {', '.join(recorded[:12])}, ..."
            raise ConfigError(f"--metric {key}: no finished run of {sweep} recorded it ({hint})")


def _commands(parents: pd.DataFrame) -> list[str]:
    column = f"tags.{collect.tracking.TAG_COMMAND}"
    if parents.empty or column not in parents:
        return []
    ordered = parents.sort_values("start_time")[column].dropna()
    return list(dict.fromkeys(ordered))


def _invocations(parents: pd.DataFrame) -> dict[str, int]:
    if parents.empty:
        return {}
    return {status: int(n) for status, n in parents["status"].value_counts().sort_index().items()}


def _draw(report: Report, out: Path) -> dict[str, str]:
    runs, order = report.runs.finished, list(report.summary["label"])
    paths = {"ppl_vs_maxvio": plots.ppl_vs_maxvio(report.summary, out / "plots" / "ppl_vs_maxvio.png")}
    drawn = order[: plots.MAX_LEGEND]  # only the curves that are drawn are fetched (one query per run)
    curves = collect.curves(runs, drawn, "train/maxvio_batch", report.tracking_uri)
    if any(curves.values()):
        paths["maxvio_batch_steps"] = plots.maxvio_over_training(
            curves, out / "plots" / "maxvio_batch_steps.png", len(order)
        )
    relative, frequency, layer_ids = _first_seed_loads(runs, report.val_loads, order)
    report.plots_left_out = _one_shape(relative, frequency)
    if relative:
        notes = {label: imbalance.layer_notes(counts) for label, counts in relative.items()}
        paths["expert_loads"] = plots.expert_loads(relative, layer_ids, out / "plots" / "expert_loads.png", notes)
        n_experts = next(iter(relative.values())).shape[1]
        straggler = history.straggler_plot(runs, order, n_experts, report.tracking_uri, out)
        if straggler is not None:
            paths["straggler_steps"] = straggler
    paths |= history.load_history_plots(runs, order, report.tracking_uri, out)
    if frequency:
        paths["domain_specialisation"] = plots.domain_specialisation(
            frequency, layer_ids, out / "plots" / "domain_specialisation.png"
        )
    return {name: str(path.relative_to(out)) for name, path in paths.items()}


def _first_seed_loads(runs: pd.DataFrame, loads: dict[str, dict], order: list[str]):
    """Per configuration, from its lowest seed (which experts a router overloads differs from seed to
    seed, so a mean over seeds would paint imbalance as balance): (layer x expert) load / uniform
    load, and per domain the (layer x expert) fraction of the domain's tokens choosing each expert."""
    relative, frequency, layer_ids = {}, {}, None
    for label in order:
        mine = runs[(runs["label"] == label) & runs["run_id"].isin(list(loads))].sort_values("seed")
        if mine.empty:
            continue
        item = loads[mine["run_id"].iloc[0]]
        counts_LE = np.asarray(item["layers"], dtype=np.float64)
        relative[label] = counts_LE / counts_LE.mean(axis=1, keepdims=True).clip(min=1e-12)
        if layer_ids is None:  # the first configuration's: the plots draw the configurations of its shape
            layer_ids = item.get("layer_ids") or list(range(counts_LE.shape[0]))
        if item.get("domains") and item.get("tokens"):
            frequency[label] = {
                d: np.asarray(counts, dtype=np.float64) / max(item["tokens"][d], 1)
                for d, counts in item["domains"].items()
            }
    return relative, frequency, layer_ids or []


def _one_shape(relative: dict[str, np.ndarray], frequency: dict[str, dict]) -> list[str]:
    """Keep, in place, the configurations whose (layers, experts) equal the first one's: a store can
    hold the same sweep at two models, whose loads do not share one heatmap. Returns the others."""
    shape = next(iter(relative.values())).shape if relative else None
    other = [label for label, loads_LE in relative.items() if loads_LE.shape != shape]
    for label in other:
        relative.pop(label)
        frequency.pop(label, None)
    return other


def _first_config(report: Report) -> str:
    row = report.runs.finished.sort_values("order").iloc[0]
    try:
        return collect.artifact_text(row["artifact_uri"], row["run_id"], "config.yaml", report.tracking_uri)
    except Exception:  # noqa: BLE001 - the report says the config is missing rather than failing
        return ""


def _log_to_parent(report: Report, out: Path) -> None:
    from mlflow.tracking import MlflowClient

    parent_id = report.runs.parents.sort_values("start_time")["run_id"].iloc[-1]
    client = MlflowClient(report.tracking_uri)
    client.log_artifacts(parent_id, str(out / "plots"), "plots")
    for name in ("report.md", "report.html", "summary.csv", "runs.csv"):
        client.log_artifact(parent_id, str(out / name), "report")
