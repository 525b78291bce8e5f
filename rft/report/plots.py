"""The report's plots: accuracy vs budget (from table 1) and training curves (from each run's metrics.jsonl).

- `plot_accuracy_vs_budget`: one panel per task, one line per method with std error bars over seeds, and the
  zero-shot base as a dashed line; each panel lists only the budgets its task was run at.
- `plot_curves`: one row of panels per metrics.jsonl key (`CURVES`: rollout completion and think tokens,
  mean reward), one column per task, one line per reward level: the per-step mean over seeds.

`curve_runs` gathers the metrics.jsonl lines behind each line (the seed rows of `rft.report.tables.seed_rows`)
and names the runs whose file is gone. matplotlib is imported (with the Agg backend) only when a plot is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rft.report.load import read_metrics
from rft.report.tables import ACCURACY, REWARD_LEVELS, Table, budget_key, seed_rows
from rft.results import ResultRow

CURVES = {
    "completion_tokens": "rollout/completion_tokens",
    "think_tokens": "rollout/think_tokens",
    "reward_mean": "rollout/reward_mean",
}


def mean_curve(runs: list[list[dict[str, float]]], key: str) -> tuple[list[float], list[float]]:
    """Steps and the mean of `key` over the runs that logged it at each step (seeds averaged per step)."""
    by_step: dict[float, list[float]] = {}
    for lines in runs:
        for line in lines:
            if key in line and "step" in line:
                by_step.setdefault(line["step"], []).append(line[key])
    steps = sorted(by_step)
    return steps, [sum(by_step[s]) / len(by_step[s]) for s in steps]


def curve_runs(
    rows: list[ResultRow], run_dirs: dict[str, Path | None]
) -> tuple[dict[tuple[str, str], list], list[str]]:
    """metrics.jsonl lines of the seed rows of each (task, reward level[ @ budget]) among rft `rows`, and
    the run ids whose metrics.jsonl could not be found."""
    budgets = {r.budget for r in rows}
    groups: dict[tuple[str, str], list[ResultRow]] = {}
    for row in rows:
        label = str(row.reward) if len(budgets) == 1 else f"{row.reward} @ {row.budget}"
        groups.setdefault((str(row.task), label), []).append(row)
    runs: dict[tuple[str, str], list] = {}
    missing = []
    for key, group in groups.items():
        for row in seed_rows(group):
            run_dir = run_dirs.get(row.run_id)
            lines = read_metrics(run_dir / "metrics.jsonl") if run_dir is not None else []
            if lines:
                runs.setdefault(key, []).append(lines)
            else:
                missing.append(row.run_id)
    return runs, missing


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _level_order(label: str) -> tuple[int, str]:
    reward = label.split(" @ ")[0]
    levels = list(REWARD_LEVELS)
    return (levels.index(reward) if reward in levels else len(levels)), label


def panel_budgets(table: Table, task: str) -> list[str]:
    """The budgets on `task`'s panel, smallest first: those where it has a run, finished or failed (table 1 also
    lists the other tasks' budgets, as missing cells)."""
    ran = {
        str(r["budget"])
        for r in table.records
        if r["metric"] == ACCURACY and r["task"] == task and r["budget"] and (r["n"] or r["n_failed"])
    }
    return sorted(ran, key=budget_key)


def plot_accuracy_vs_budget(table: Table, path: Path) -> None:
    """Accuracy vs budget, one panel per task, one line per method with std error bars; zero-shot as a
    dashed horizontal line. Reads table 1's records."""
    plt = _pyplot()
    records = [r for r in table.records if r["metric"] == ACCURACY and r["mean"] != ""]
    tasks = sorted({str(r["task"]) for r in table.records}) or ["(no rows)"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        mine = [r for r in records if r["task"] == task]
        budgets = panel_budgets(table, task)
        for r in mine:
            if r["method"] == "zeroshot":
                ax.axhline(float(r["mean"]), ls="--", color="grey", label="zero-shot base")  # type: ignore[arg-type]
        methods = list(dict.fromkeys(str(r["method"]) for r in mine if r["method"] != "zeroshot"))
        for i, method in enumerate(methods):
            points = [(budgets.index(str(r["budget"])), r) for r in mine if r["method"] == method]
            points.sort(key=lambda point: point[0])
            shift = 0.06 * (i - (len(methods) - 1) / 2)  # keep the error bars of methods apart
            ax.errorbar(
                [x + shift for x, _ in points],
                [float(r["mean"]) for _, r in points],  # type: ignore[arg-type]
                yerr=[float(r["std"]) if r["std"] != "" else 0.0 for _, r in points],  # type: ignore[arg-type]
                marker="o",
                capsize=3,
                label=method,
            )
        ax.set_xticks(range(len(budgets)), budgets, rotation=30)
        ax.set(title=task, xlabel="budget", ylabel="accuracy (%)")
        if mine:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no finished runs", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curves(
    runs: dict[tuple[str, str], list], keys: dict[str, str], tasks: list[str], path: Path
) -> None:
    """One row of panels per metric key (label -> metrics.jsonl key), one column per task, one line per
    reward level: the per-step mean over seeds."""
    plt = _pyplot()
    tasks = tasks or sorted({task for task, _ in runs}) or ["(no rft runs)"]
    fig, axes = plt.subplots(
        len(keys), len(tasks), figsize=(4.5 * len(tasks), 3.2 * len(keys)), squeeze=False
    )
    for i, (label, key) in enumerate(keys.items()):
        for ax, task in zip(axes[i], tasks, strict=True):
            for level in sorted((lv for t, lv in runs if t == task), key=_level_order):
                steps, means = mean_curve(runs[(task, level)], key)
                if steps:
                    ax.plot(steps, means, marker=".", label=f"{level} (n={len(runs[(task, level)])})")
            ax.set(title=task, xlabel="step", ylabel=label)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            else:
                ax.text(0.5, 0.5, "no data", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
