"""Unit tier: `rft.report.power`, the minimum detectable effect of a difference between two cell means, against
hand-computed values.

    p = 0.5, n = 150, k = 3, seed sd 0:  se = sqrt(2 x 0.25 / 150 / 3) = 1/30
        z:  (1.95996 + 0.84162) / 30 = 0.09339   (9.3 points)
        t:  3.76106 / 30 = 0.12537               (12.5 points; noncentral t, 4 degrees of freedom)

python -m pytest -q tests/test_power.py
"""

from __future__ import annotations

import math

import pytest
from scipy import stats

from rft.report import power


def test_normal_mde_by_hand():
    se = math.sqrt(2 * 0.25 / 150 / 3)
    assert se == pytest.approx(1 / 30)
    assert power.noncentrality(3, normal=True) == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert power.mde(150, 3, 0.5, seed_sd=0.0, normal=True) == pytest.approx(2.801585 / 30, abs=1e-6)
    assert 0.09 < power.mde(150, 3, 0.5, seed_sd=0.0, normal=True) < 0.10  # "about 9-10 points with z"
    # FGVC's 3,333 test questions: 2.0 points from the questions alone
    assert power.mde(3333, 3, seed_sd=0.0, normal=True) == pytest.approx(2.801585 * math.sqrt(0.5 / 3333 / 3))


def test_t_mde_is_the_exact_two_sided_power_of_the_t_test():
    """At the MDE's noncentrality the two-sided t test on 2k - 2 degrees of freedom rejects 80% of the time;
    within 2% of the textbook approximation t_{0.975} + t_{0.8} (3.717 for 4 degrees of freedom)."""
    for k, approx in ((3, 2.776445 + 0.940965), (10, 2.100922 + 0.862333)):
        lam, df = power.noncentrality(k), 2 * k - 2
        crit = stats.t.ppf(0.975, df)
        assert stats.nct.sf(crit, df, lam) + stats.nct.cdf(-crit, df, lam) == pytest.approx(0.8, abs=1e-6)
        assert lam == pytest.approx(approx, rel=0.02)
    assert power.noncentrality(3) == pytest.approx(3.7611, abs=1e-3)
    assert power.mde(150, 3, 0.5, seed_sd=0.0) == pytest.approx(3.7611 / 30, abs=1e-4)
    # many seeds: the t test tends to the normal one
    assert power.noncentrality(500) == pytest.approx(power.noncentrality(500, normal=True), rel=1e-3)


def test_the_between_seed_variance_adds_to_the_binomial():
    """var = p (1 - p) / n + seed_sd^2: with 2 points between seeds, FGVC's 3,333 questions hardly matter."""
    assert power.run_variance(0.5, 150, 0.0) == pytest.approx(0.25 / 150)
    assert power.run_variance(0.3, 1000, 0.02) == pytest.approx(0.21 / 1000 + 0.0004)
    se = math.sqrt(2 * (0.25 / 3333 + 0.02**2) / 3)
    assert power.mde(3333, 3) == pytest.approx(power.noncentrality(3) * se)
    assert power.mde(3333, 3) > 2 * power.mde(3333, 3, seed_sd=0.0)
    # more seeds, more questions or a higher level resolve less; more power asks for a bigger difference
    assert power.mde(150, 5) < power.mde(150, 3) and power.mde(3333, 3) < power.mde(150, 3)
    assert power.mde(150, 3, power=0.9) > power.mde(150, 3) > power.mde(150, 3, alpha=0.1)
    # accuracy near 0 or 1 has less binomial variance than 50%
    assert power.mde(150, 3, p=0.9, seed_sd=0.0) == pytest.approx(power.mde(150, 3, seed_sd=0.0) * 0.6)


def test_the_between_seed_sd_from_an_observed_spread():
    """The observed sample std of seeds' accuracies holds the questions' share too: what is left is the seeds'."""
    binomial = math.sqrt(0.25 / 150)
    assert power.between_seed_sd(binomial, 0.5, 150) == pytest.approx(0.0, abs=1e-6)
    assert power.between_seed_sd(0.5 * binomial, 0.5, 150) == 0.0  # less spread than the questions explain
    assert power.between_seed_sd(0.05, 0.5, 150) == pytest.approx(math.sqrt(0.0025 - 0.25 / 150))
    # round trip: the MDE from an observed spread uses the whole observed variance
    tau = power.between_seed_sd(0.05, 0.5, 150)
    assert power.mde(150, 3, 0.5, tau) == pytest.approx(power.noncentrality(3) * math.sqrt(2 * 0.0025 / 3))


@pytest.mark.parametrize(
    "call",
    [
        lambda: power.mde(150, 1),  # a t test needs two runs per cell
        lambda: power.mde(0, 3),
        lambda: power.mde(150, 3, p=1.2),
        lambda: power.mde(150, 3, seed_sd=-0.1),
        lambda: power.mde(150, 3, alpha=0.0),
        lambda: power.mde(150, 3, power=1.0),
        lambda: power.between_seed_sd(-0.1, 0.5, 150),
    ],
)
def test_bad_inputs_say_what_is_wrong(call):
    with pytest.raises(ValueError, match="must|needs"):
        call()


def test_one_run_per_cell_has_only_the_normal_approximation():
    assert power.mde(150, 1, seed_sd=0.0, normal=True) == pytest.approx(2.801585 * math.sqrt(0.5 / 150))
