"""The report as one object: `build_report` computes both tables and the curve data, `write_report` renders.

    rows, source = load_rows(Path("outputs/multirun/2026-11-27/03-30-56"))
    report = build_report(rows, source=str(source), root=Path("outputs/multirun/2026-11-27/03-30-56"))
    files = write_report(report, Path("outputs/multirun/2026-11-27/03-30-56/report"))

`write_report` writes, all atomically (`rft.files`): report.md (both tables with their notes, the plots),
one CSV per table (the text grid), cells.csv (every numeric cell in long format: n, mean, std, ci95) and the
PNG plots. Curves come from table 2's runs, or from every rft run when there is no thinking ablation.
`rft.report.wandb_log.log_to_wandb` logs the written report as a W&B run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rft.files import atomic_write_text
from rft.report.load import find_run_dirs
from rft.report.plots import CURVES, curve_runs, plot_accuracy_vs_budget, plot_curves
from rft.report.tables import Table, select, table1, table1b, table2, to_csv_text, to_markdown
from rft.results import ResultRow


@dataclass
class Report:
    """Both tables, the curve data and where the rows came from; `write_report` renders it."""

    source: str
    rows: list[ResultRow]
    tables: list[Table]
    run_dirs: dict[str, Path | None]
    curve_tasks: list[str]
    curve_runs: dict[tuple[str, str], list]
    missing_metrics: list[str]
    files: dict[str, Path] = field(default_factory=dict)


def build_report(rows: list[ResultRow], source: str = "", root: Path | None = None) -> Report:
    """Tables 1 and 2 plus the training curves of table 2's runs (of all rft runs when there is no ablation).

    Args:
        rows: Result rows (`rft.report.load.load_rows`).
        source: Where the rows came from, for the header.
        root: Folder searched for run folders whose recorded `run_dir` no longer exists.
    """
    t1, t1b, t2 = table1(rows), table1b(rows), table2(rows)
    curve_rows = t2.rows_used or select(rows, method="rft")
    run_dirs = find_run_dirs(rows, root)
    runs, missing = curve_runs(curve_rows, run_dirs)
    tasks = sorted({str(r.task) for r in curve_rows})
    return Report(source, rows, [t1, t2, t1b], run_dirs, tasks, runs, missing)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write report.md, one CSV per table (the grid), cells.csv (every numeric cell, long format) and the
    PNG plots into `out_dir`; returns `{name: path}` (also kept in `report.files`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    plots = {
        "accuracy_vs_budget": "Accuracy vs budget (table 1 rows; error bars: std over seeds)",
        "tokens_vs_step": "Rollout completion and think tokens vs training step (mean over seeds)",
        "reward_vs_step": "Mean rollout reward vs training step (mean over seeds)",
    }
    files["accuracy_vs_budget"] = out_dir / "accuracy_vs_budget.png"
    plot_accuracy_vs_budget(report.tables[0], files["accuracy_vs_budget"])
    files["tokens_vs_step"] = out_dir / "tokens_vs_step.png"
    plot_curves(
        report.curve_runs,
        {"completion tokens": CURVES["completion_tokens"], "think tokens": CURVES["think_tokens"]},
        report.curve_tasks,
        files["tokens_vs_step"],
    )
    files["reward_vs_step"] = out_dir / "reward_vs_step.png"
    reward = {"reward mean": CURVES["reward_mean"]}
    plot_curves(report.curve_runs, reward, report.curve_tasks, files["reward_vs_step"])
    for table in report.tables:
        files[table.name] = out_dir / f"{table.name}.csv"
        atomic_write_text(files[table.name], to_csv_text(table.columns, table.body))
    files["cells"] = out_dir / "cells.csv"
    records = [r for table in report.tables for r in table.records]
    atomic_write_text(files["cells"], to_csv_text([], records))
    status = Counter(r.status for r in report.rows)
    status_text = ", ".join(f"{name} {count}" for name, count in sorted(status.items()))
    lines = [
        "# Report",
        "",
        f"Source: `{report.source}`; {len(report.rows)} result rows ({status_text}).",
        "",
    ]
    for table in report.tables:
        lines.append(to_markdown(table))
    lines += ["## Plots", ""]
    if report.missing_metrics:
        lines += [
            f"- metrics.jsonl not found for {len(report.missing_metrics)} run(s): "
            f"{', '.join(report.missing_metrics)}.",
            "",
        ]
    for key, caption in plots.items():
        lines += [f"### {caption}", "", f"![{key}]({files[key].name})", ""]
    files["report"] = out_dir / "report.md"
    atomic_write_text(files["report"], "\n".join(lines))
    report.files = files
    return files
