"""The smallest difference the study can resolve: the minimum detectable effect (MDE) of a difference between
two cell means, at 80% power and a two-sided 5% test, before anything runs (`make study DRY_RUN=1`) or from the
observed seed spread afterwards (the report).

Model: a cell is `k` runs (seeds) and run i scores accuracy p + e_i on `n` test questions, with
`var(e_i) = p (1 - p) / n + seed_sd**2`: the questions (binomial) plus what changes with the seed (the budget
draw, the sampled completions, the data order). Two cells with equal k, n and p differ in mean with standard error
`se = sqrt(2 var / k)`, and the MDE is `lambda x se`, where lambda is the noncentrality at which a two-sample t
test on 2k - 2 degrees of freedom rejects with the given power (exact, from scipy's noncentral t), or
`z_{1-alpha/2} + z_power` (2.80) with `normal=True`, the textbook normal approximation. Each run's questions are
taken as an independent draw; the study scores every run on one fixed test split, so a paired test would resolve
somewhat less than these figures. Accuracies, spreads and MDEs are fractions (0.093 = 9.3 points). Pure.

    mde(n=150, k=3, p=0.5, seed_sd=0.0, normal=True)   # 0.0934: 9.3 points (z)
    mde(n=150, k=3, p=0.5, seed_sd=0.0)                # 0.1254: 12.5 points (t, 4 degrees of freedom)
"""

from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as scipy_stats

ALPHA = 0.05  # two-sided
POWER = 0.8
# The between-seed standard deviation assumed before any run (2 points). Each seed redraws the budget's subset
# (docs/protocol.md, "Budgets") as well as the completions and the data order, and reruns of few-shot fine-tuning
# typically move accuracy by 1 to 3 points; 2 is the middle. The tiny study's spreads (1 to 16 points,
# docs/tiny_study.md) come from a 4M-parameter model and are no guide. Once seeds have run, pass the estimate
# `between_seed_sd(observed_sd, p, n)` instead.
SEED_SD = 0.02


def run_variance(p: float, n: int, seed_sd: float = SEED_SD) -> float:
    """Variance of one run's accuracy: `p (1 - p) / n` over n test questions plus `seed_sd**2` between seeds.

    Args:
        p: Accuracy in [0, 1] (0.5 is the worst case).
        n: Test questions each run is scored on (>= 1).
        seed_sd: Between-seed standard deviation of the accuracy (>= 0).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be an accuracy in [0, 1], got {p}")
    if n < 1:
        raise ValueError(f"n must be at least 1 test question, got {n}")
    if seed_sd < 0:
        raise ValueError(f"seed_sd must be >= 0, got {seed_sd}")
    return p * (1.0 - p) / n + seed_sd**2


def between_seed_sd(observed_sd: float, p: float, n: int) -> float:
    """The between-seed standard deviation that seeds' observed spread implies: the part of their sample
    standard deviation (`observed_sd`, ddof=1) that the n test questions do not explain,
    `sqrt(max(0, observed_sd**2 - p (1 - p) / n))`. `p` is the cells' mean accuracy."""
    if observed_sd < 0:
        raise ValueError(f"observed_sd must be >= 0, got {observed_sd}")
    return math.sqrt(max(0.0, observed_sd**2 - run_variance(p, n, 0.0)))


def noncentrality(k: int, alpha: float = ALPHA, power: float = POWER, normal: bool = False) -> float:
    """lambda: the MDE in standard errors of the difference of two means of k runs each.

    t (default): the noncentrality at which the two-sided two-sample t test on 2k - 2 degrees of freedom
    rejects with probability `power` (3.761 for k=3, 2.962 for k=10); needs k >= 2. Normal:
    `z_{1-alpha/2} + z_power` (2.802 at the defaults), the far tail neglected.
    """
    if not (0.0 < alpha < 1.0 and 0.0 < power < 1.0):
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    if normal:
        if k < 1:
            raise ValueError(f"k must be at least 1 run per cell, got {k}")
        return float(scipy_stats.norm.ppf(1 - alpha / 2) + scipy_stats.norm.ppf(power))
    if k < 2:
        raise ValueError(f"a t test needs k >= 2 runs per cell, got {k}; pass normal=True for one run")
    df = 2 * k - 2
    crit = float(scipy_stats.t.ppf(1 - alpha / 2, df))

    def shortfall(lam: float) -> float:  # power at noncentrality lam, minus the power asked for
        return float(scipy_stats.nct.sf(crit, df, lam) + scipy_stats.nct.sf(crit, df, -lam)) - power

    return float(optimize.brentq(shortfall, 0.0, crit + 10.0 * scipy_stats.norm.ppf(power) + 10.0))


def mde(
    n: int,
    k: int,
    p: float = 0.5,
    seed_sd: float = SEED_SD,
    alpha: float = ALPHA,
    power: float = POWER,
    normal: bool = False,
) -> float:
    """The smallest true difference between two cell means that the study detects with probability `power`
    in a two-sided test at level `alpha`: `noncentrality(k) x sqrt(2 run_variance(p, n, seed_sd) / k)`.

    Args:
        n: Test questions each run is scored on (FGVC 3,333, SAT 150).
        k: Runs (seeds) per cell, the same in both cells.
        p: Accuracy in [0, 1] (0.5, the default, is the widest binomial variance).
        seed_sd: Between-seed standard deviation (`SEED_SD` assumed; `between_seed_sd` from observed spread).
        alpha, power: Two-sided level and power.
        normal: The normal approximation instead of the t test.

    Returns:
        The MDE as a fraction of accuracy (x 100 for points).
    """
    se = math.sqrt(2.0 * run_variance(p, n, seed_sd) / k)
    return noncentrality(k, alpha, power, normal) * se
