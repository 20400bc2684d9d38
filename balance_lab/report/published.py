"""The papers' published numbers (docs/papers.md) beside ours.

Absolute values at tiny scale cannot match a 1B model trained on 100B tokens; what can match is
the ordering of the methods, pair by pair. A pair the paper reports as a tie is not judged; a pair
it orders is judged by our paired 95% t interval over the seeds both ran (by the sequential interval
where a sweep run until resolved compared the pair): it matches where the interval excludes zero in
the paper's direction, goes the other way where it excludes zero in the other, and is not resolved
otherwise (one seed, no spread, or an interval spanning zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from balance_lab.report.stats import Column, per_seed


@dataclass(frozen=True)
class PublishedRow:
    match: dict[str, object]  # params a configuration must have (numbers compared as numbers)
    ppl: float
    maxvio_global: float | None = None


@dataclass(frozen=True)
class PublishedTable:
    source: str
    rows: tuple[PublishedRow, ...]


_SIGN_ADD = {"balance.name": "loss_free", "balance.rule": "sign", "balance.bias": "additive"}
# The paper's u = 1e-3 was chosen for 40,000 steps; our runs scale u to their length (config/resolvers.py:
# horizon_rate, 1e-2 at 300 steps). A row matching HORIZON takes the run whose u is its horizon's rate.
HORIZON = "the run's horizon rate"
PUBLISHED: dict[str, PublishedTable] = {
    "paper_main": PublishedTable(
        "Loss-Free Balancing, main table (1B)",
        (
            PublishedRow({"balance.name": "aux_loss", "balance.alpha": 1e-3}, 9.56, 0.72),
            PublishedRow({"balance.name": "loss_free", "balance.update_rate": HORIZON}, 9.50, 0.04),
        ),
    ),
    "update_rate": PublishedTable(
        "Loss-Free Balancing, update rate u (1B)",
        (
            PublishedRow({**_SIGN_ADD, "balance.update_rate": 1e-4}, 9.51),
            PublishedRow({**_SIGN_ADD, "balance.update_rate": 1e-3}, 9.50),
            PublishedRow({**_SIGN_ADD, "balance.update_rate": 1e-2}, 9.51),
        ),
    ),
    "update_rule": PublishedTable(
        "Loss-Free Balancing, update rule (1B, u = 1e-3)",
        (
            PublishedRow({**_SIGN_ADD, "balance.update_rate": HORIZON}, 9.50, 0.044),
            PublishedRow({**_SIGN_ADD, "balance.rule": "raw", "balance.update_rate": HORIZON}, 9.51, 0.036),
        ),
    ),
    "bias_type": PublishedTable(
        "Loss-Free Balancing, bias type (1B, u = 1e-3)",
        (
            PublishedRow({**_SIGN_ADD, "balance.update_rate": HORIZON}, 9.50, 0.044),
            PublishedRow({**_SIGN_ADD, "balance.bias": "multiplicative", "balance.update_rate": HORIZON}, 9.52, 0.036),
        ),
    ),
    # Qiu et al. balance over 4 sequences (micro) or the 32 of the global batch; ours: 8 of the step's 32.
    "lbl_scope": PublishedTable(
        "Global-batch LBL, Qiu et al. 2025 (3.4B MoE, 4 vs 32 sequences)",
        (
            PublishedRow({"balance.name": "aux_loss", "balance.scope": "micro"}, 8.167),
            PublishedRow({"balance.name": "aux_loss", "balance.scope": "global"}, 8.062),
        ),
    ),
}
# Our metric -> the published column it corresponds to.
PAPER_COLUMN = {"val/ppl": "paper ppl", "val/maxvio_global": "paper MaxVio global"}


def _matches(params: pd.Series, match: dict[str, object]) -> bool:
    from balance_lab.config.resolvers import horizon_rate

    for key, wanted in match.items():
        if wanted == HORIZON:
            try:
                wanted = horizon_rate(int(params.get("params.trainer.max_steps")))
            except (TypeError, ValueError):
                return False
        if not _equal(params.get(f"params.{key}"), wanted):
            return False
    return True


def _equal(value, wanted) -> bool:
    if isinstance(wanted, float):
        try:
            return abs(float(value) - wanted) <= 1e-9 * max(1.0, abs(wanted))
        except (TypeError, ValueError):
            return False
    return str(value) == str(wanted)


@dataclass
class Comparison:
    source: str
    rows: pd.DataFrame  # label, paper ppl, paper MaxVio, our ppl, our MaxVio
    verdicts: list[str]  # one sentence per metric


def compare(
    sweep: str, runs: pd.DataFrame, summary: pd.DataFrame, sequential: dict[tuple[str, str, str], int] | None = None
) -> Comparison | None:
    """None when the sweep has no published counterpart or no configuration matches a row. `sequential`:
    (label, baseline, metric) -> the sign a sweep run until resolved settled (report/sequential.signs),
    which judges those pairs in place of the fixed-n interval."""
    table = PUBLISHED.get(sweep)
    if table is None or runs.empty:
        return None
    first = runs.drop_duplicates("label").set_index("label")
    ours = summary.set_index("label")
    matched, contexts = [], []
    for row in table.rows:
        seen = set()  # one configuration per context (collect._contexts: e.g. the sweep at two models)
        for label, params in first.iterrows():
            context = params.get("context", "")
            if context not in seen and _matches(params, row.match):
                seen.add(context)
                contexts.append(context)
                matched.append(
                    {
                        "label": label,
                        "paper ppl": row.ppl,
                        "paper MaxVio global": row.maxvio_global,
                        "our ppl": ours.at[label, "val/ppl mean"],
                        "our MaxVio global": ours.at[label, "val/maxvio_global mean"],
                    }
                )
    if len(matched) < 2:
        return None
    rows = pd.DataFrame(matched)
    settled = sequential or {}
    verdicts = [
        _ordering(rows, _judge(runs, "val/ppl", settled), contexts, "ppl", "perplexity"),
        _ordering(rows, _judge(runs, "val/maxvio_global", settled), contexts, "MaxVio global", "MaxVio_global"),
    ]
    return Comparison(table.source, rows, [v for v in verdicts if v])


def scaled_difference(
    comparison: Comparison | None, label: str, baseline: str, metric: str, baseline_mean: float
) -> float | None:
    """The paper's difference label - baseline as a share of its baseline value, times our baseline's
    mean: the difference the paper would predict at our scale. None where the paper gives none."""
    column = PAPER_COLUMN.get(metric)
    if comparison is None or column is None:
        return None
    paper = comparison.rows.set_index("label")[column]
    if (
        label not in paper
        or baseline not in paper
        or pd.isna(paper[label])
        or pd.isna(paper[baseline])
        or not paper[baseline]
    ):
        return None
    return float((paper[label] / paper[baseline] - 1) * baseline_mean)


def paired_sign(table: pd.DataFrame, a: str, b: str) -> int:
    """+1 / -1 where the paired 95% t interval of a - b lies above / below zero, 0 where it is not
    resolved (fewer than 2 common seeds, no spread, or an interval spanning zero)."""
    from balance_lab.evidence.seeds import half_width

    if a not in table or b not in table:
        return 0
    diff = (table[a] - table[b]).dropna()
    if len(diff) < 2 or not diff.std(ddof=1) > 0:
        return 0
    half = half_width(float(diff.std(ddof=1)), len(diff))
    return 1 if diff.mean() - half > 0 else -1 if diff.mean() + half < 0 else 0


def _judge(runs: pd.DataFrame, key: str, settled: dict[tuple[str, str, str], int]):
    """(a, b) -> the sign of a - b: the sequential outcome where the sweep settled the pair, else the
    paired 95% interval over the seeds both ran."""
    table = per_seed(runs, Column(key, key, None))

    def sign(a: str, b: str) -> int:
        if (a, b, key) in settled:
            return settled[(a, b, key)]
        if (b, a, key) in settled:
            return -settled[(b, a, key)]
        return paired_sign(table, a, b)

    return sign


def _ordering(rows: pd.DataFrame, judge, contexts: list[str], metric: str, name: str) -> str:
    """'perplexity: the ordering matches the paper (2 of 2 pairs ...)' over the pairs the paper orders,
    each within one context, each judged by our paired interval (module docstring)."""
    paper, labels = rows[f"paper {metric}"], rows["label"]
    agree, against, unresolved = [], [], []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if contexts[i] != contexts[j] or pd.isna(paper[i]) or pd.isna(paper[j]) or paper[i] == paper[j]:
                continue
            ours = judge(labels[i], labels[j])
            pair = f"{labels[i]} vs {labels[j]}"
            (unresolved if ours == 0 else agree if ours == (1 if paper[i] > paper[j] else -1) else against).append(pair)
    judged = len(agree) + len(against) + len(unresolved)
    if judged == 0:
        return f"{name}: the paper reports no ordering to check (ties or no values)"
    if len(agree) == judged:
        return f"{name}: the ordering matches the paper ({judged} of {judged} pairs, each resolved by the seeds)"
    parts = [f"{len(agree)} of {judged} pairs the paper orders match it"]
    if against:
        parts.append(f"{len(against)} go the other way ({'; '.join(against)})")
    if unresolved:
        parts.append(f"{len(unresolved)} are not resolved by the seeds ({'; '.join(unresolved)})")
    return f"{name}: " + ", ".join(parts)
