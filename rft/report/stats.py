"""Statistics of a table cell: mean, sample std and the 95% Student t interval over seeds.

One rule everywhere in the report: a cell holds one value per seed; it shows the mean ± the sample standard
deviation (ddof=1, none for a single value), n, and the two-sided 95% t interval
`mean ± t_{0.975, n-1} · std / sqrt(n)` where n ≥ 3 (below that the interval is too wide to say anything).

The t quantile comes from `scipy.stats.t.ppf`, exact for every n; the rest is plain Python on short lists.

    stats = mean_std_ci([50.0, 60.0, 70.0])   # Stats(n=3, mean=60.0, std=10.0, ci95=24.84...)
    format_stats(stats)                       # "60.0 ± 10.0 (n=3) [35.2, 84.8]"
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as scipy_stats

CI_MIN_N = 3  # fewest values with a 95% interval


def t95(df: int) -> float:
    """The two-sided 95% Student t critical value `t_{0.975, df}` (4.303 for df=2, 1.960 as df grows)."""
    if df < 1:
        raise ValueError(f"t95 needs df >= 1, got {df}")
    return float(scipy_stats.t.ppf(0.975, df))


@dataclass(frozen=True)
class Stats:
    """Mean, sample std (ddof=1; None for n=1) and 95% t half-width (None for n < 3) of n values."""

    n: int
    mean: float
    std: float | None
    ci95: float | None


def mean_std_ci(values: list[float]) -> Stats:
    """`Stats` of a non-empty list of values: mean, sample std and the 95% t half-width."""
    if not values:
        raise ValueError("mean_std_ci needs at least one value")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    ci95 = t95(n - 1) * std / math.sqrt(n) if n >= CI_MIN_N and std is not None else None
    return Stats(n, mean, std, ci95)


def format_stats(stats: Stats, ci: bool = True) -> str:
    """`"60.0 ± 10.0 (n=3) [35.2, 84.8]"`: 1 decimal, "–" for the std of one value, the CI where n ≥ 3."""
    std = "–" if stats.std is None else f"{stats.std:.1f}"
    text = f"{stats.mean:.1f} ± {std} (n={stats.n})"
    if ci and stats.ci95 is not None:
        text += f" [{stats.mean - stats.ci95:.1f}, {stats.mean + stats.ci95:.1f}]"
    return text
