"""How sure a comparison is (balance_lab/evidence/): power against hand computations and simulation,
and the sequential rule's false-positive rate against naive re-testing, by simulation (pure arithmetic)."""

import math

import numpy as np
import pytest

from balance_lab.evidence import seeds, sequential

# Monte-Carlo sweeps per simulated check, and the tolerance of a rate estimated from them (2.58 standard errors).
SIMULATED = 4000


def mc_tolerance(rate: float, n: int = SIMULATED) -> float:
    return 2.58 * math.sqrt(rate * (1 - rate) / n)


def test_half_width_is_the_t_quantile_times_the_standard_error():
    # t(0.975, 4) = 2.7764451 (tables); sd 2 over 5 seeds
    assert seeds.half_width(2.0, 5) == pytest.approx(2.7764451 * 2 / math.sqrt(5), rel=1e-6)
    assert math.isnan(seeds.half_width(1.0, 1))


@pytest.mark.parametrize("effect", [0.3, 0.5, 0.8, 1.0, 1.5])
def test_seeds_needed_matches_the_hand_formula_and_the_published_tables(effect):
    """Guenther's (1981) hand formula for the one-sample t-test, n = ((z_.975 + z_.8) / d)^2 + z_.975^2 / 2,
    is within one seed of the exact non-central-t answer; Cohen's tables give 34 seeds for d = 0.5 and 10 for d = 1."""
    exact = seeds.seeds_needed(effect, 1.0)
    hand = ((1.959964 + 0.841621) / effect) ** 2 + 1.959964**2 / 2
    assert math.ceil(hand) - 1 <= exact <= math.ceil(hand) + 1
    cohen = {0.5: 34, 1.0: 10}
    if effect in cohen:
        assert exact == cohen[effect]
    assert seeds.seeds_needed(effect * 3, 3.0) == exact  # only delta / sd matters


def test_seeds_needed_gives_eighty_percent_power_in_simulation():
    delta, sd = 0.6, 1.0
    n = seeds.seeds_needed(delta, sd)
    rng = np.random.default_rng(1)
    diffs = rng.normal(delta, sd, (SIMULATED, n))
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
    from scipy.stats import t as student

    rejected = float((np.abs(t) >= student.ppf(0.975, n - 1)).mean())
    assert seeds.power(delta, sd, n) >= 0.8 > seeds.power(delta, sd, n - 1)
    assert rejected == pytest.approx(seeds.power(delta, sd, n), abs=mc_tolerance(0.8))


def test_no_difference_needs_no_finite_number_of_seeds():
    assert seeds.seeds_needed(0.0, 1.0) is None
    assert seeds.seeds_needed(1e-4, 1.0) is None  # more than MAX_SEEDS


def test_the_first_looks_boundary_is_the_exact_t_quantile_of_the_alpha_it_spends():
    """At look 1 every sweep is still running: t has n_1 - 1 degrees of freedom, so the boundary needs
    no simulation (which would rest on a few dozen exceedances of a 1e-4 tail)."""
    from scipy.stats import t

    for looks in [(3, 6, 9, 12), (2, 3, 4), (5, 10)]:
        first = sequential.boundaries(looks)[0]
        spent = sequential.spent(looks[0] / looks[-1])
        assert 2 * t.sf(first, looks[0] - 1) == pytest.approx(spent, rel=1e-6)
    assert sequential.boundaries((12,)) == [pytest.approx(t.ppf(0.975, 11))]  # one look: the plain 95% test


@pytest.mark.parametrize("looks", [(3, 6, 9, 12), (2, 3, 4, 5, 6, 7, 8)])
def test_the_sequential_rule_keeps_false_positives_at_five_percent_where_naive_retesting_does_not(looks):
    """Paired differences with zero mean (and a spread the rule does not know): the sequential rule says
    'resolved' in at most 5% of sweeps (+ Monte-Carlo error), re-testing a plain 95% interval at every look far more."""
    bounds = sequential.boundaries(looks)
    rng = np.random.default_rng(7)
    diffs = rng.normal(0.0, 3.7, (SIMULATED, looks[-1]))
    resolved, _ = sequential.sequential_crossed(diffs, looks, bounds)
    naive = sequential.naive_looks_crossed(diffs, looks)
    assert resolved.mean() <= 0.05 + mc_tolerance(0.05), resolved.mean()
    assert naive.mean() > 0.05 + mc_tolerance(0.05), naive.mean()
    assert naive.mean() > 1.5 * resolved.mean()


def test_on_a_true_difference_the_rule_stops_before_the_budget_on_average():
    looks = sequential.planned_looks(3, 3, 12)
    bounds = sequential.boundaries(looks)
    rng = np.random.default_rng(11)
    diffs = rng.normal(1.2, 1.0, (SIMULATED, looks[-1]))
    resolved, spent = sequential.sequential_crossed(diffs, looks, bounds)
    assert resolved.mean() > 0.9
    assert spent.mean() < looks[-1] - 2, spent.mean()  # 9.2 of 12 seeds with this generator


def test_boundaries_spend_the_planned_alpha_look_by_look():
    looks = (3, 6, 9, 12)
    bounds = sequential.boundaries(looks)
    assert bounds == sorted(bounds, reverse=True)  # O'Brien-Fleming: strict early, near a plain test at the end
    from scipy.stats import t as student

    assert student.ppf(0.975, 11) < bounds[-1] < student.ppf(0.99, 11)
    assert sequential.spent(1.0) == pytest.approx(0.05)
    assert sequential.spent(0.25) < 0.001 < sequential.spent(0.5) < 0.01


def test_analyse_reports_the_first_look_that_excludes_zero_and_its_repeated_interval():
    looks = (3, 6)
    bounds = [50.0, 2.5]
    diffs = [1.0, 1.1, 0.9, 1.0, 1.2, 0.8]
    outcome = sequential.analyse(diffs, looks, bounds)
    first, second = outcome.looks
    assert not first.crossed and second.crossed
    sd = float(np.std(diffs, ddof=1))
    assert second.low == pytest.approx(1.0 - 2.5 * sd / math.sqrt(6))
    assert outcome.statement() == "resolved at look 2 (6 seeds)"
    assert sequential.analyse(diffs[:3], looks, bounds).statement() == "open after look 1 of 2 (3 seeds)"
    assert sequential.analyse([1, -1, 1, -1, 1, -1], looks, bounds).statement() == "not resolved within 6 seeds"


def test_planned_looks_end_at_the_budget_and_refuse_bad_plans():
    assert sequential.planned_looks(3, 3, 12) == (3, 6, 9, 12)
    assert sequential.planned_looks(3, 4, 12) == (3, 7, 11, 12)
    for args in ((1, 1, 4), (3, 0, 6), (5, 1, 4)):
        with pytest.raises(ValueError):
            sequential.planned_looks(*args)
