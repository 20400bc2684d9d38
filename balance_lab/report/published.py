"""The papers' published numbers (docs/papers.md) beside ours.

Absolute values at tiny scale cannot match a 1B model trained on 100B tokens; what can match is
the ordering of the methods, pair by pair. A pair the paper reports as a tie is not judged.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


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


def compare(sweep: str, runs: pd.DataFrame, summary: pd.DataFrame) -> Comparison | None:
    """None when the sweep has no published counterpart or no configuration matches a row."""
    table = PUBLISHED.get(sweep)
    if table is None or runs.empty:
        return None
    first = runs.drop_duplicates("label").set_index("label")
    ours = summary.set_index("label")
    matched, errors, contexts = [], [], []
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
                errors.append(
                    {
                        "ppl": _standard_error(ours.loc[label], "val/ppl"),
                        "MaxVio global": _standard_error(ours.loc[label], "val/maxvio_global"),
                    }
                )
    if len(matched) < 2:
        return None
    rows = pd.DataFrame(matched)
    verdicts = [
        _ordering(rows, errors, contexts, "ppl", "perplexity"),
        _ordering(rows, errors, contexts, "MaxVio global", "MaxVio_global"),
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


def _standard_error(summary_row: pd.Series, key: str) -> float:
    """Standard error of the mean over seeds; nan with fewer than 2 seeds."""
    n, std = summary_row.get(f"{key} n", 0), summary_row.get(f"{key} std", float("nan"))
    return float(std) / n**0.5 if n and n >= 2 and not pd.isna(std) else float("nan")


def _ordering(rows: pd.DataFrame, errors: list[dict[str, float]], contexts: list[str], metric: str, name: str) -> str:
    """'perplexity: the ordering matches the paper in 2 of 2 pairs ...' over the pairs the paper separates,
    each within one context. A pair whose two means are less than 2 standard errors apart is called
    within seed noise."""
    paper, ours = rows[f"paper {metric}"], rows[f"our {metric}"]
    agree, judged, noisy, disagreements = 0, 0, 0, []
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if contexts[i] != contexts[j]:
                continue
            if pd.isna(paper[i]) or pd.isna(paper[j]) or paper[i] == paper[j] or pd.isna(ours[i]) or pd.isna(ours[j]):
                continue
            judged += 1
            if (paper[i] < paper[j]) == (ours[i] < ours[j]):
                agree += 1
            else:
                disagreements.append(f"{rows['label'][i]} vs {rows['label'][j]}")
            error = (errors[i][metric] ** 2 + errors[j][metric] ** 2) ** 0.5
            noisy += bool(error != error or abs(ours[i] - ours[j]) < 2 * error)  # nan error: one seed only
    if judged == 0:
        return f"{name}: the paper reports no ordering to check (ties or no values)"
    if agree == judged:
        text = f"{name}: the ordering matches the paper ({agree} of {judged} pairs)"
    else:
        text = (
            f"{name}: the ordering differs from the paper in {judged - agree} of {judged} pairs "
            f"({'; '.join(disagreements)})"
        )
    if noisy:
        text += f"; {noisy} of {judged} pairs within seed noise (means less than 2 standard errors apart, or one seed)"
    return text
