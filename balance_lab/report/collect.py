"""From an MLflow store to tidy tables: one row per run, grouped into configurations.

A configuration is everything a run trains except its seed: runs that differ only in `seed`
are repetitions of one configuration. Where an identical config FINISHED more than once (a
`sweep --rerun`), the latest run counts; runs that did not finish are kept apart, never averaged.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from balance_lab.balancing.knobs import ADDED_OFF, is_added_off
from balance_lab.store import tracking

# Params that say where or how a run was recorded or scheduled, not what it trained.
BOOKKEEPING = ("seed", "seeds", "threads", "fail_after_steps", "data.cache_dir", "trainer.enable_progress_bar")
BOOKKEEPING_PREFIXES = ("logger.",)
SEED_IN_NAME = re.compile(r"-s\d+(?=-|$)")
NAME_PART = re.compile(r"-(?!\d)")  # run-name separators; the '-' of 'u1e-3' is not one


@dataclass
class SweepRuns:
    """Every run of one experiment (a sweep), split into the ones that count and the others."""

    name: str
    finished: pd.DataFrame  # one row per counted run: run_id, run_name, config, label, seed, metrics.*, params.*
    unfinished: pd.DataFrame  # run_id, run_name, status, reason
    varying: list[str] = field(default_factory=list)  # params that differ between configurations
    common: str = ""  # name parts every configuration shares (dropped from the labels), e.g. "tiny"
    context_keys: list[str] = field(default_factory=list)  # settings that differ between contexts (see _contexts)
    parents: pd.DataFrame = field(default_factory=pd.DataFrame)  # the sweep invocations (parent runs)


def load_sweep(tracking_uri: str, sweep: str, run_filter: str = "") -> SweepRuns:
    """All runs of experiment `sweep` (MLflow search API, into pandas); raises LookupError if it is absent."""
    import mlflow

    tracking.quiet_mlflow_logs()
    mlflow.set_tracking_uri(tracking_uri)
    if mlflow.get_experiment_by_name(sweep) is None:
        raise LookupError(sweep)
    runs = mlflow.search_runs(
        experiment_names=[sweep], filter_string=run_filter, max_results=100_000, output_format="pandas"
    )
    return split_runs(sweep, runs)


def split_runs(sweep: str, runs: pd.DataFrame) -> SweepRuns:
    if runs.empty:
        return SweepRuns(sweep, runs, runs)
    runs = runs.copy()
    role = runs.get(f"tags.{tracking.TAG_ROLE}", pd.Series(index=runs.index, dtype=object))
    parents = runs[role == tracking.ROLE_SWEEP_PARENT]
    runs = runs[role != tracking.ROLE_SWEEP_PARENT]
    runs["run_name"] = runs.get("tags.mlflow.runName", runs["run_id"])
    finished = runs[runs["status"] == "FINISHED"]
    # a re-run of an identical config replaces the older one
    hash_col = f"tags.{tracking.TAG_CONFIG_HASH}"
    if hash_col in finished:
        finished = finished.sort_values("start_time").drop_duplicates(hash_col, keep="last")
    finished, varying, common, context_keys = _configurations(finished, _grid_order(parents))
    unfinished = runs[runs["status"] != "FINISHED"]
    reason = unfinished.get(f"tags.{tracking.TAG_STATUS_REASON}", pd.Series(index=unfinished.index, dtype=object))
    unfinished = pd.DataFrame(
        {
            "run_id": unfinished["run_id"],
            "run_name": unfinished["run_name"],
            "status": unfinished["status"],
            "reason": reason.fillna(""),
        }
    )
    return SweepRuns(
        sweep,
        finished.reset_index(drop=True),
        unfinished.reset_index(drop=True),
        varying=varying,
        common=common,
        context_keys=context_keys,
        parents=parents,
    )


def _what_was_trained(column: str) -> bool:
    key = column.removeprefix("params.")
    return column.startswith("params.") and key not in BOOKKEEPING and not key.startswith(BOOKKEEPING_PREFIXES)


def _grid_order(parents: pd.DataFrame) -> dict[str, list[str]]:
    """Swept key -> its values in the order the sweep file lists them, so a report's rows (and its
    default baseline, the first) follow the grid, not the alphabet: the fullest list among the parent
    runs' `sweep.values.<key>` params (the latest of equals: the file may have changed), then values
    only other invocations swept. An invocation that pinned the key (`balance=forced` to add one
    method) says nothing of the order."""
    if parents.empty:
        return {}
    prefix = "params.sweep.values."
    newest_first = parents.sort_values("start_time", ascending=False)
    order = {}
    for column in (c for c in parents.columns if c.startswith(prefix)):
        lists = [value.split(",") for value in newest_first[column] if isinstance(value, str)]
        if lists:
            fullest = max(lists, key=len)  # the first of the longest: the newest
            others = [v for values in lists for v in values if v not in fullest]
            order[column.removeprefix(prefix)] = fullest + list(dict.fromkeys(others))
    return order


def _configurations(
    finished: pd.DataFrame, grid: dict[str, list[str]]
) -> tuple[pd.DataFrame, list[str], str, list[str]]:
    """Add `config` (identity), `label` (readable), `seed`, `context` and `treatment` (see _contexts), and
    an `order` that follows the swept values."""
    finished = finished.copy()
    if finished.empty:
        empty = {k: [] for k in ("config", "label", "seed", "order", "context", "context_name", "treatment")}
        return finished.assign(**empty), [], "", []
    trained = sorted(c for c in finished.columns if _what_was_trained(c))
    identity = finished[trained].map(lambda v: "" if v is None or v != v else str(v))  # NaN: a param a run lacks
    for column in trained:  # a knob added later, at its off value, is what a run recorded before it had
        knob = column.removeprefix("params.balance.")
        if knob != column and knob in ADDED_OFF:
            identity[column] = identity[column].map(lambda v, k=knob: "" if is_added_off(k, v) else v)
    finished["config"] = identity.agg("|".join, axis=1)
    varying = [c.removeprefix("params.") for c in trained if identity[c].nunique() > 1]
    swept_keys = {c.removeprefix("tags.sweep.") for c in finished.columns if c.startswith("tags.sweep.")}
    context_columns = _contexts(identity, swept_keys - {"seed"})
    finished["context"] = identity[context_columns].agg("|".join, axis=1) if context_columns else ""
    finished["context_name"] = _context_names(identity, context_columns)
    treatment = [c for c in trained if c not in context_columns]
    finished["treatment"] = identity[treatment].agg("|".join, axis=1) if treatment else ""
    finished["seed"] = pd.to_numeric(finished.get("params.seed"), errors="coerce")
    finished["label"] = finished["run_name"].map(lambda n: SEED_IN_NAME.sub("", str(n)))
    finished["label"] = _disambiguate(finished, varying)
    finished["label"], common = _drop_common_parts(finished["label"])
    swept = sorted(
        c for c in finished.columns if c.startswith(f"tags.{tracking.SWEPT_TAG_PREFIX}") and c != "tags.sweep.seed"
    )
    keys = list(
        zip(
            *[
                finished[c].map(lambda v, c=c: _sort_value(v, grid.get(c.removeprefix("tags.sweep."), [])))
                for c in swept
            ],
            finished["label"],
        )
    )
    rank = {key: i for i, key in enumerate(sorted(set(keys)))}
    finished["order"] = [rank[k] for k in keys]
    return finished, varying, common, [c.removeprefix("params.") for c in context_columns]


def _contexts(identity: pd.DataFrame, swept_keys: set[str]) -> list[str]:
    """The trained params that differ between runs although neither the balancing method nor a swept
    key sets them: the same sweep run at model=tiny and again at model=small in one store differs in
    model.*. Those runs are compared within their context (a configuration is paired only with the
    baseline method at its own model), never across it. [] when every run shares its settings."""
    compared = ("balance", *swept_keys)
    return [
        column
        for column in identity.columns
        if identity[column].nunique() > 1 and not _set_by(column.removeprefix("params."), compared)
    ]


def _context_names(identity: pd.DataFrame, context_columns: list[str]) -> pd.Series | str:
    """Each run's context, readable: the model preset where the model differs, else key=value pairs."""
    if not context_columns:
        return ""
    if "params.model.name" in context_columns:
        return identity["params.model.name"]
    shown = context_columns[:2]
    return identity[shown].apply(lambda row: ", ".join(f"{k.removeprefix('params.')}={row[k]}" for k in shown), axis=1)


def _set_by(key: str, prefixes: tuple[str, ...]) -> bool:
    """'balance.alpha' is set by the config group 'balance' and by the swept key 'balance.alpha'."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _disambiguate(finished: pd.DataFrame, varying: list[str]) -> pd.Series:
    """Two configurations with the same readable label get the params that tell them apart appended."""
    labels = finished["label"].copy()
    per_label = finished.groupby("label")["config"].nunique()
    for label in per_label[per_label > 1].index:
        rows = finished["label"] == label
        differing = [k for k in varying if finished.loc[rows, f"params.{k}"].nunique() > 1]
        labels[rows] = finished.loc[rows].apply(
            lambda r, label=label, differing=differing: (
                label + " " + " ".join(f"{k}={r[f'params.{k}']}" for k in differing)
            ),
            axis=1,
        )
    return labels


def _drop_common_parts(labels: pd.Series) -> tuple[pd.Series, str]:
    """'aux_loss-a1e-3-micro-tiny', 'loss_free-u1e-3-sign-add-tiny' -> drop '-tiny' (shared by all)."""
    split = {label: NAME_PART.split(label) for label in labels.unique()}
    if len(split) < 2:
        return labels, ""
    common = set.intersection(*(set(parts) for parts in split.values()))
    short = {label: "-".join(p for p in parts if p not in common) for label, parts in split.items()}
    if any(not s for s in short.values()) or len(set(short.values())) < len(short):
        return labels, ""
    first = next(iter(split.values()))
    return labels.map(short), "-".join(p for p in first if p in common)


def _sort_value(value, listed: list[str] = ()) -> tuple:
    """Grid order first (values the sweep file lists), then numbers by value, then text."""
    if str(value) in listed:
        return (0, float(listed.index(str(value))), "")
    try:
        return (1, float(value), "")
    except (TypeError, ValueError):
        return (2, 0.0, str(value))


def read_val_loads(runs: pd.DataFrame, tracking_uri: str) -> dict[str, dict]:
    """run_id -> loads/val_loads.json, read in place for local stores, downloaded otherwise."""

    def one(row) -> tuple[str, dict | None]:
        try:
            return row.run_id, json.loads(
                artifact_text(row.artifact_uri, row.run_id, "loads/val_loads.json", tracking_uri)
            )
        except Exception:  # noqa: BLE001 - a run without loads (or an unreachable artifact) is drawn without them
            return row.run_id, None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return {run_id: loads for run_id, loads in pool.map(one, runs.itertuples()) if loads is not None}


def artifact_text(artifact_uri: str, run_id: str, path: str, tracking_uri: str) -> str:
    with local_artifact(artifact_uri, run_id, path, tracking_uri) as local:
        return local.read_text()


@contextmanager
def local_artifact(artifact_uri: str, run_id: str, path: str, tracking_uri: str) -> Iterator[Path]:
    """A run's artifact as a local file while the block runs: in place for a local store; otherwise
    downloaded into a temporary folder removed afterwards (MLflow's own default folder is never
    removed, one per artifact read: a report over a server would leave hundreds)."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme in ("", "file"):
        local = Path(unquote(parsed.path)) / path
        if not local.exists():
            raise FileNotFoundError(local)
        yield local
        return
    import mlflow

    with tempfile.TemporaryDirectory(prefix="balance-lab-artifact-") as folder:
        yield Path(
            mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=tracking_uri, dst_path=folder
            )
        )


def curves(runs: pd.DataFrame, labels: list[str], key: str, tracking_uri: str) -> dict[str, list[pd.Series]]:
    """label -> the metric's history of each of its runs that logged it (only these labels' runs are fetched)."""
    histories = metric_histories(list(runs.loc[runs["label"].isin(labels), "run_id"]), key, tracking_uri)
    return {
        label: [histories[r] for r in runs.loc[runs["label"] == label, "run_id"] if not histories[r].empty]
        for label in labels
    }


def metric_histories(run_ids: list[str], key: str, tracking_uri: str) -> dict[str, pd.Series]:
    """run_id -> the metric's values indexed by step."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)

    def one(run_id: str) -> tuple[str, pd.Series]:
        history = client.get_metric_history(run_id, key)
        return run_id, pd.Series({m.step: m.value for m in history}, dtype=float).sort_index()

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, run_ids))
