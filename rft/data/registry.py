"""The one task registry: every `task=` option, its kind, and the function that builds it.

A kind is known before any data is read: "classification" tasks (open answers, k-shot budgets) or
"multiple_choice" tasks (options, N-sample budgets). Synthetic tasks render train and test in memory; real ones
read only the splits asked for. Sizes of synthetic classification tasks are per class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rft.config import TaskConfig
from rft.data import banner, fgvc, sat
from rft.data.base import Task


class TaskEntry(NamedTuple):
    """A registered task: its kind and `build(cfg, seed, splits) -> Task`."""

    kind: str
    build: Callable[[TaskConfig, int, tuple[str, ...]], Task]


def _synthetic(make) -> Callable[[TaskConfig, int, tuple[str, ...]], Task]:
    """A synthetic task's builder: always renders train and test, from the data seed, and a `val` split of the
    test split's size when asked for one (a schedule grid selects its length there)."""

    def build(cfg: TaskConfig, seed: int, splits: tuple[str, ...]) -> Task:
        val = cfg.test_size if "val" in splits else 0
        return make(cfg.train_size, cfg.test_size, cfg.data_seed, cfg.image_size, val)

    return build


TASKS: dict[str, TaskEntry] = {
    "fgvc_synth": TaskEntry("classification", _synthetic(fgvc.make_fgvc_synth)),
    "sat_synth": TaskEntry("multiple_choice", _synthetic(sat.make_sat_synth)),
    "banner_synth": TaskEntry("multiple_choice", _synthetic(banner.make_banner_synth)),
    "fgvc": TaskEntry("classification", lambda cfg, seed, splits: fgvc.make_fgvc(cfg, splits)),
    "sat": TaskEntry("multiple_choice", sat.make_sat),
    "banner": TaskEntry("multiple_choice", banner.make_banner),
}


def build_task(
    cfg: TaskConfig | str, *, seed: int = 0, splits: tuple[str, ...] = ("train", "test"), **fields: object
) -> Task:
    """Build the task `cfg.name`.

    Args:
        cfg: The task config, or a task name plus TaskConfig `fields` (`build_task("fgvc_synth", train_size=6)`).
        seed: The run seed; real multiple-choice tasks shuffle their options with it (per question uid).
        splits: The splits a real dataset loads ("train" is the pool of `cfg.train_split`); synthetic tasks
            always render train and test, and val when it is asked for.

    Raises:
        ValueError: unknown task name (lists the known ones).
        DataError: missing or malformed data, with the file or field and the fix.
    """
    if isinstance(cfg, str):
        cfg = TaskConfig(name=cfg, **fields)
    if cfg.name not in TASKS:
        raise ValueError(f"unknown task {cfg.name!r}; known tasks: {sorted(TASKS)}")
    return TASKS[cfg.name].build(cfg, seed, tuple(dict.fromkeys(splits)))
