"""How long a run trains, in one rule for every method: optimizer steps from passes over the budgeted data.

A method's step takes a fixed number of examples over all ranks (`examples_per_step`: GRPO's prompts per step,
SFT's batch size), so E passes over n budgeted examples take ceil(E x n / examples_per_step) steps. With
`schedule.epochs` the run follows a grid of such lengths (`grid`), trains to its last point and is scored at each;
without it the method's own `steps` (or SFT's `epochs`) decide, as one point. `budget_record` says what a run got:
passes, examples drawn, completions generated; the loops add the tokens the loss saw. Pure: no torch, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rft.config import RFTConfig, RunConfig, SFTConfig


@dataclass(frozen=True)
class Point:
    """One length of the schedule: `epochs` passes over the budgeted data, reached after `steps` steps."""

    epochs: float
    steps: int

    @property
    def key(self) -> str:
        """The metric section of this point in a result row: `grid_e2`, `grid_e0.5`."""
        return f"grid_e{self.epochs:g}"


def examples_per_step(cfg: RunConfig) -> int:
    """Training examples one optimizer step draws over all ranks: GRPO's prompts, SFT's batch; 0 for zero-shot."""
    m = cfg.method
    if isinstance(m, RFTConfig):
        return m.prompts_per_step
    if isinstance(m, SFTConfig):
        return m.batch_size
    return 0


def steps_for(cfg: RunConfig, n_train: int, epochs: float) -> int:
    """Optimizer steps of `epochs` passes over `n_train` examples: ceil(epochs x n_train / examples_per_step),
    at least 1."""
    return max(1, math.ceil(epochs * n_train / examples_per_step(cfg) - 1e-9))


def grid(cfg: RunConfig, n_train: int) -> list[Point]:
    """The lengths this run is scored at, shortest first; the last is where it stops.

    With `schedule.epochs`: one point per listed length (lengths that round to the same step count keep the
    shortest), without those past `schedule.max_steps`, except that the first is always kept. Without it: one
    point, the method's own length (`method.steps`, or SFT's `method.epochs`). Zero-shot: no point.
    """
    m = cfg.method
    if not isinstance(m, RFTConfig | SFTConfig) or n_train == 0:
        return []
    per_step = examples_per_step(cfg)
    if not cfg.schedule.epochs:
        steps = m.steps if isinstance(m, RFTConfig) else m.total_steps(n_train)
        return [Point(steps * per_step / n_train, steps)]
    points: list[Point] = []
    for epochs in sorted(cfg.schedule.epochs):
        steps = steps_for(cfg, n_train, epochs)
        if points and (steps == points[-1].steps or 0 < cfg.schedule.max_steps < steps):
            continue
        points.append(Point(epochs, steps))
    return points


def total_steps(cfg: RunConfig, n_train: int) -> int:
    """Optimizer steps the run trains: its grid's last point (0 for zero-shot)."""
    points = grid(cfg, n_train)
    return points[-1].steps if points else 0


def warmup_steps(cfg: RunConfig, n_train: int) -> int:
    """SFT's warm-up in steps: `warmup_ratio` of the run, or under a grid of its first point, so that every
    point's learning-rate path is the same as a run that stops there."""
    m = cfg.method
    assert isinstance(m, SFTConfig)
    points = grid(cfg, n_train)
    base = points[0].steps if cfg.schedule.epochs else points[-1].steps
    return int(m.warmup_ratio * base)


def budget_record(cfg: RunConfig, n_train: int, steps: int) -> dict[str, float]:
    """What `steps` optimizer steps gave the run: `train/epochs` (passes over the budgeted set),
    `train/samples_seen` (examples or prompts drawn) and `train/completions` (generated; 0 for SFT)."""
    m = cfg.method
    seen = steps * examples_per_step(cfg)
    return {
        "train/epochs": seen / n_train if n_train else 0.0,
        "train/samples_seen": float(seen),
        "train/completions": float(seen * m.group_size) if isinstance(m, RFTConfig) else 0.0,
    }
