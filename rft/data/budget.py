"""Training-set budgets and the endless training stream.

`apply_budget` draws a seeded subset of the train pool: k shots per class, N samples, or the whole pool. Budgets
only subsample the train split, never the test split, and they are nested: with the same seed the 1-shot set is a
subset of the 2-shot set, so a budget ladder adds data rather than redrawing it. `PromptStream` walks the subset
epoch by epoch in seeded permutations; its position is plain state, so a resumed run continues where it stopped.
"""

from __future__ import annotations

import random
from collections import defaultdict

from rft.config import ConfigError
from rft.data.base import Sample


class BudgetError(ConfigError):
    """The requested budget cannot be drawn from the pool; a config error (the fix is a `budget.*` setting)."""


def apply_budget(samples: list[Sample], kind: str, size: int, seed: int) -> list[Sample]:
    """Draw a seeded, reproducible training subset.

    Args:
        samples: The train pool.
        kind: "shots" (size examples per class), "samples" (size examples in all) or "full" (the whole pool).
        size: Shots per class or number of samples; ignored for "full".
        seed: Budget seed; the same seed gives nested sets for growing sizes.

    Returns:
        The subset, in a seeded order.

    Raises:
        BudgetError: the budget is larger than the pool (or than a class), or a shot budget on unlabelled data.
    """
    if kind == "full":
        return list(samples)
    rng = random.Random(f"budget-{seed}")
    if kind == "samples":
        if size > len(samples):
            raise BudgetError(
                f"budget of {size} samples is larger than the train pool ({len(samples)}); "
                f"pass budget.size<={len(samples)} or budget=full"
            )
        order = list(samples)
        rng.shuffle(order)
        return order[:size]
    if kind != "shots":
        raise BudgetError(f"unknown budget kind {kind!r}; use shots, samples or full")
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if not s.label:
            raise BudgetError(
                "budget.kind=shots needs class labels, and this task's samples have none (it is not a "
                "classification task); use budget=samples (N samples) instead"
            )
        by_class[s.label].append(s)
    picked: list[Sample] = []
    for label in sorted(by_class):
        pool = sorted(by_class[label], key=lambda s: s.uid)
        if size > len(pool):
            raise BudgetError(
                f"budget of {size} shots is larger than class {label!r}, which has {len(pool)} train images; "
                f"pass budget.size<={min(len(v) for v in by_class.values())}"
            )
        rng_c = random.Random(f"budget-{seed}-{label}")
        rng_c.shuffle(pool)
        picked.extend(pool[:size])
    rng.shuffle(picked)
    return picked


class PromptStream:
    """An endless, seeded stream of training samples: each epoch is a fresh permutation of the train set.

    The position (epoch, index) is plain state, so a resumed run continues exactly where it stopped.
    """

    def __init__(self, samples: list[Sample], seed: int):
        if not samples:
            raise BudgetError(
                "the training set is empty; check task.* and budget.* (budget.size must be > 0)"
            )
        self.samples = samples
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.samples)))
        random.Random(f"stream-{self.seed}-{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[Sample]:
        """The next n samples, crossing into the next epoch's permutation when this one runs out."""
        out = []
        for _ in range(n):
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self.samples[self._order[self.index]])
            self.index += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._permutation(self.epoch)
