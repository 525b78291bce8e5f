"""The sweep report: result rows and metrics.jsonl in, the paper's two tables and its plots out.

    rows, source = load_rows(Path("outputs/multirun/2026-11-27/03-30-56"))
    report = build_report(rows, source=str(source), root=Path("outputs/multirun/2026-11-27/03-30-56"))
    files = write_report(report, Path("outputs/multirun/2026-11-27/03-30-56/report"))

* **Table 1, RFT vs SFT** (the layout of Visual-RFT's Table 2): a "zero-shot base" row, then per budget the
  sft row, the rft row and Δ(RFT−SFT); one column per task. Only rows of the *main reward* count: the most
  common reward among rft rows whose prompt asks to think (normally acc_format). Rows of other rewards are
  counted in the table's notes; the rft ones are table 2.
* **Table 2, thinking ablation** (paper claim 2): accuracy and eval think tokens of rft rows for each reward
  level × task, at the budgets where a reward other than the main one was run.
* **Plots**: accuracy vs budget per task; rollout completion / think tokens and mean reward vs training step
  per reward level (each step averaged over seeds).

Statistics (one rule everywhere): a cell holds one value per seed, the last finished row of that seed, so a
rerun replaces an earlier row and duplicate zero-shot runs (zero-shot ignores the budget) count once. A seed
with no finished row is a failed seed. A cell shows mean ± sample std (ddof=1) over seeds, n, and the 95%
two-sided t interval where n ≥ 3. Accuracy is in percent. A cell with no rows reads "missing", one whose seeds
all failed "failed (k/n)"; nothing is dropped silently.

Plain library code: no Hydra; matplotlib and wandb are imported only by the functions that draw or log.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rft.tracking import atomic_write_text

METHOD_ORDER = ("zeroshot", "sft", "rft")
# The thinking ablation's levels, in the paper's order of "more thinking", with their row labels.
REWARD_LEVELS = {
    "nothink": "no think",
    "acc_format": "think",
    "length_norm": "think + length (budget)",
    "length_norm_group": "think + length (group)",
}
# Columns whose values describe the config behind a cell; listed when the rows of a cell disagree.
CONFIG_KEYS = ("model", "pixels", "loss_agg", "G")
BUDGET_KINDS = ("shots", "samples", "full")
ACCURACY = "eval/accuracy"
THINK_TOKENS = "eval/think_tokens"
CURVES = {
    "completion_tokens": "rollout/completion_tokens",
    "think_tokens": "rollout/think_tokens",
    "reward_mean": "rollout/reward_mean",
}
# Two-sided 95% Student t critical values t_{0.975, df} for df = 1..30.
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z975 = 1.959964

Row = dict[str, str]


# ---------------------------------------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------------------------------------


def t95(df: int) -> float:
    """Two-sided 95% t critical value: the table above for df ≤ 30, the Cornish-Fisher series beyond.

    The series t ≈ z + (z³+z)/4df + (5z⁵+16z³+3z)/96df² is within 0.001 of the exact value for df > 30.
    """
    if df < 1:
        raise ValueError(f"t95 needs df >= 1, got {df}")
    if df <= len(T95):
        return T95[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Stats:
    """Mean, sample std (ddof=1; None for n=1) and 95% t half-width (None for n < 3) of n values."""

    n: int
    mean: float
    std: float | None
    ci95: float | None


def summarize(values: list[float]) -> Stats:
    """:class:`Stats` of a non-empty list of values."""
    if not values:
        raise ValueError("summarize needs at least one value")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    ci95 = t95(n - 1) * std / math.sqrt(n) if n >= 3 and std is not None else None
    return Stats(n, mean, std, ci95)


def format_stats(stats: Stats, ci: bool = True) -> str:
    """``"60.0 ± 10.0 (n=3) [35.2, 84.8]"``: 1 decimal, "–" for the std of one value, the CI where n ≥ 3."""
    std = "–" if stats.std is None else f"{stats.std:.1f}"
    text = f"{stats.mean:.1f} ± {std} (n={stats.n})"
    if ci and stats.ci95 is not None:
        text += f" [{stats.mean - stats.ci95:.1f}, {stats.mean + stats.ci95:.1f}]"
    return text


# ---------------------------------------------------------------------------------------------------------
# Loading rows and metrics
# ---------------------------------------------------------------------------------------------------------


def load_rows(path: Path) -> tuple[list[Row], Path]:
    """Result rows (all values as strings) from a results.csv, or a folder holding one or results.json files.

    A folder is searched in this order: ``<path>/results.csv``; every ``results.csv`` below it (concatenated);
    else the table is rebuilt from every ``results.json`` below it (a sweep folder: runs append to the shared
    CSV elsewhere, but each job folder has its results.json). Returns the rows and the file or folder they
    came from.

    Raises:
        FileNotFoundError: If the path does not exist or holds no results.
    """
    path = Path(path)
    if path.is_file():
        return _read_csv(path), path
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} does not exist; pass an outputs folder, a sweep folder or a results.csv"
        )
    if (path / "results.csv").is_file():
        return _read_csv(path / "results.csv"), path / "results.csv"
    csvs = sorted(path.rglob("results.csv"))
    if csvs:
        return [row for p in csvs for row in _read_csv(p)], path
    jsons = sorted(path.rglob("results.json"))
    if not jsons:
        raise FileNotFoundError(f"no results.csv or results.json under {path}; did the runs finish writing?")
    rows = []
    for p in jsons:
        record = json.loads(p.read_text(encoding="utf-8"))
        record.pop("versions", None)
        record.setdefault("run_dir", str(p.parent))
        rows.append({key: _cell_text(value) for key, value in record.items()})
    return rows, path


def _read_csv(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _cell_text(value: object) -> str:
    """A JSON value as the results CSV writes it (None empty, lists and dicts as JSON)."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def to_float(text: object) -> float | None:
    """The finite float in a CSV cell or JSON value, else None ("", "nan", "inf", words)."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The lines of a metrics.jsonl as ``{key: float}``; non-numeric and non-finite values and unreadable
    lines (a run killed mid-write) are skipped. ``[]`` if the file is missing."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        values = {key: to_float(value) for key, value in record.items() if not isinstance(value, bool)}
        out.append({key: value for key, value in values.items() if value is not None})
    return out


def find_run_dirs(rows: list[Row], root: Path | None) -> dict[str, Path | None]:
    """The run folder of each row, by run_id: its ``run_dir`` if it exists, else a folder named ``run_id``
    holding results.json, metrics.jsonl or config.yaml under ``root`` (a sweep copied or moved), else None."""
    found: dict[str, Path | None] = {}
    index: dict[str, Path] | None = None
    for row in rows:
        run_id = row.get("run_id", "")
        run_dir = Path(row["run_dir"]) if row.get("run_dir") else None
        if run_dir is not None and run_dir.is_dir():
            found[run_id] = run_dir
            continue
        if index is None:  # built once, only when some recorded run_dir is gone
            names = ("results.json", "metrics.jsonl", "config.yaml")
            files = [f for name in names for f in Path(root).rglob(name)] if root else []
            index = {f.parent.name: f.parent for f in files}
        found[run_id] = index.get(run_id)
    return found


def run_logger_config(run_dir: Path | None) -> dict[str, Any]:
    """The ``logger`` section of a run's resolved config (config.yaml, else .hydra/config.yaml), or {}."""
    if run_dir is None:
        return {}
    for name in ("config.yaml", ".hydra/config.yaml"):
        if (run_dir / name).is_file():
            cfg = yaml.safe_load((run_dir / name).read_text(encoding="utf-8")) or {}
            return dict(cfg.get("logger") or {})
    return {}


# ---------------------------------------------------------------------------------------------------------
# Cells and tables
# ---------------------------------------------------------------------------------------------------------


def row_config(row: Row) -> dict[str, str]:
    """The config values of a row that tables state: model, pixels ("min–max"), loss_agg and G."""
    pixels = f"{row.get('min_pixels', '')}–{row.get('max_pixels', '')}" if row.get("max_pixels") else ""
    return {
        "model": row.get("model", ""),
        "pixels": pixels,
        "loss_agg": row.get("loss_agg", ""),
        "G": row.get("group_size", ""),
    }


def config_values(rows: Iterable[Row]) -> dict[str, list[str]]:
    """Distinct non-empty values of each :data:`CONFIG_KEYS` entry over rows, in first-seen order."""
    values: dict[str, list[str]] = {key: [] for key in CONFIG_KEYS}
    for row in rows:
        for key, value in row_config(row).items():
            if value and value not in values[key]:
                values[key].append(value)
    return values


def describe_config(rows: Iterable[Row]) -> str:
    """E.g. ``"model tiny; pixels 784–12544; loss_agg seq-mean-token-mean; G 4"`` (all values that occur)."""
    parts = [f"{key} {', '.join(vals)}" for key, vals in config_values(rows).items() if vals]
    return "; ".join(parts) or "no config recorded"


@dataclass
class Cell:
    """The rows behind one table cell and the per-seed values of one metric.

    Attributes:
        rows: Every row that falls in the cell, finished or not.
        values: One value per seed (the last finished row of the seed with a finite metric), times ``scale``.
        n_seeds: Distinct seeds among ``rows``.
    """

    rows: list[Row]
    values: list[float]
    n_seeds: int

    @property
    def n_failed(self) -> int:
        return self.n_seeds - len(self.values)

    @property
    def stats(self) -> Stats | None:
        return summarize(self.values) if self.values else None

    def text(self, ci: bool = True) -> str:
        """The cell's text: "missing"; "failed (k/n)"; or the stats, plus "· failed (k/n)" when only some
        seeds failed and a "mixed config" note when the rows disagree on model, pixels, loss_agg or G."""
        if not self.rows:
            return "missing"
        stats = self.stats
        if stats is None:
            return f"failed ({self.n_failed}/{self.n_seeds})"
        text = format_stats(stats, ci=ci)
        if self.n_failed:
            text += f" · failed ({self.n_failed}/{self.n_seeds})"
        mixed = {key: vals for key, vals in config_values(self.rows).items() if len(vals) > 1}
        if mixed:
            text += " · mixed config: " + "; ".join(f"{k} {', '.join(v)}" for k, v in mixed.items())
        return text


def make_cell(rows: list[Row], metric: str, scale: float = 1.0) -> Cell:
    """A :class:`Cell` from the rows of one cell: per seed, the last row with status finished and a finite
    ``metric`` gives the value (rows are in append order, so reruns win)."""
    per_seed: dict[str, float | None] = {}
    for row in rows:
        seed = row.get("seed", "")
        value = to_float(row.get(metric)) if row.get("status") == "finished" else None
        if value is not None:
            per_seed[seed] = value * scale
        else:
            per_seed.setdefault(seed, None)
    return Cell(rows, [v for v in per_seed.values() if v is not None], len(per_seed))


def budget_key(budget: str) -> tuple[int, float, str]:
    """Sort key: shots, then samples, then full; by size within a kind; unknown strings last."""
    kind, _, size = budget.partition(":")
    order = BUDGET_KINDS.index(kind) if kind in BUDGET_KINDS else len(BUDGET_KINDS)
    return order, to_float(size) or 0.0, budget


def select(rows: Iterable[Row], **axes: str) -> list[Row]:
    """Rows whose columns equal every given axis value."""
    return [row for row in rows if all(row.get(key) == value for key, value in axes.items())]


def main_reward(rows: list[Row]) -> str | None:
    """The reward of table 1: the most common one among rft rows with think=True (ties: the name first
    alphabetically), else among rft rows, else among all rows; None without rows."""
    for pool in (
        [r for r in rows if r.get("method") == "rft" and r.get("think") == "True"],
        select(rows, method="rft"),
        rows,
    ):
        counts = Counter(r.get("reward", "") for r in pool)
        if counts:
            return min(counts, key=lambda name: (-counts[name], name))
    return None


@dataclass
class Table:
    """A rendered table: header notes, a grid of text cells, and one tidy record per numeric cell.

    Attributes:
        name: File stem, e.g. ``table1_rft_vs_sft``.
        records: Long-format rows (table, row, task, metric, n, mean, std, ci95...) for the cells CSV.
    """

    name: str
    title: str
    notes: list[str]
    columns: list[str]
    body: list[list[str]]
    records: list[dict[str, object]] = field(default_factory=list)
    rows_used: list[Row] = field(default_factory=list)


def _record(table: str, label: str, task: str, metric: str, cell: Cell, **axes: str) -> dict[str, object]:
    stats = cell.stats
    return {
        "table": table,
        "row": label,
        "task": task,
        "metric": metric,
        **axes,
        "n_seeds": cell.n_seeds,
        "n_failed": cell.n_failed,
        "n": stats.n if stats else 0,
        "mean": stats.mean if stats else "",
        "std": stats.std if stats and stats.std is not None else "",
        "ci95_half": stats.ci95 if stats and stats.ci95 is not None else "",
        "text": cell.text(),
    }


def table1(rows: list[Row]) -> Table:
    """RFT vs SFT: a zero-shot row, then sft, rft and Δ(RFT−SFT) per budget; tasks as columns; main reward
    only. Methods other than zeroshot/sft/rft get their own rows after rft."""
    name = "table1_rft_vs_sft"
    reward = main_reward(rows)
    used = select(rows, reward=reward) if reward is not None else []
    excluded = len(rows) - len(used)
    tasks = sorted({r["task"] for r in used})
    trained = [r for r in used if r.get("method") != "zeroshot"]
    budgets = sorted({r["budget"] for r in trained}, key=budget_key)
    others = sorted({r["method"] for r in trained} - set(METHOD_ORDER))
    body: list[list[str]] = []
    records: list[dict[str, object]] = []

    def add(label: str, method: str, budget: str, cells: dict[str, Cell]) -> None:
        body.append([label, *(cells[t].text() for t in tasks)])
        axes = {"method": method, "reward": reward or "", "budget": budget}
        records.extend(_record(name, label, task, ACCURACY, cells[task], **axes) for task in tasks)

    zero = {t: make_cell(select(used, method="zeroshot", task=t), ACCURACY, 100.0) for t in tasks}
    add("zero-shot base", "zeroshot", "", zero)
    for budget in budgets:
        per_method = {}
        for method in ("sft", "rft", *others):
            per_method[method] = {
                t: make_cell(select(used, method=method, task=t, budget=budget), ACCURACY, 100.0)
                for t in tasks
            }
            add(f"{method} @ {budget}", method, budget, per_method[method])
        label = f"Δ(RFT−SFT) @ {budget}"
        deltas = []
        for task in tasks:
            rft_stats, sft_stats = per_method["rft"][task].stats, per_method["sft"][task].stats
            if rft_stats is None or sft_stats is None:
                deltas.append("–")
                continue
            delta = rft_stats.mean - sft_stats.mean
            deltas.append(f"{delta:+.1f} (n={rft_stats.n} vs {sft_stats.n})")
            records.append(
                {
                    "table": name,
                    "row": label,
                    "task": task,
                    "metric": "accuracy_delta",
                    "method": "rft-sft",
                    "reward": reward or "",
                    "budget": budget,
                    "mean": delta,
                    "n_rft": rft_stats.n,
                    "n_sft": sft_stats.n,
                    "text": deltas[-1],
                }
            )
        body.append([label, *deltas])
    notes = [
        f"Rows: reward = {reward} (the most common reward among rft rows that think); "
        f"{excluded} row(s) with another reward are excluded here (their rft rows are in table 2).",
        "Cell: eval accuracy in %, mean ± sample std over seeds (n seeds) [95% t CI, n ≥ 3]; "
        "Δ = mean(rft) − mean(sft). Zero-shot pools its runs over budgets (it trains on nothing).",
        f"Config: {describe_config(used)}.",
    ]
    return Table(
        name, "Table 1: RFT vs SFT (accuracy %)", notes, ["method @ budget", *tasks], body, records, used
    )


def ablation_budgets(rows: list[Row]) -> list[str]:
    """Budgets at which some rft row used a reward other than the main one (where the ablation was run)."""
    reward = main_reward(rows)
    return sorted(
        {r["budget"] for r in select(rows, method="rft") if r.get("reward") != reward}, key=budget_key
    )


def table2(rows: list[Row]) -> Table:
    """Thinking ablation: rft rows only; per (budget, reward level) accuracy % and eval think tokens per task.

    Levels: nothink, acc_format, length_norm, length_norm_group, then any other reward seen at those budgets.
    """
    name = "table2_thinking"
    budgets = ablation_budgets(rows)
    rft = [r for r in select(rows, method="rft") if r["budget"] in budgets]
    tasks = sorted({r["task"] for r in rft})
    levels = [*REWARD_LEVELS, *sorted({r["reward"] for r in rft} - set(REWARD_LEVELS))]
    body: list[list[str]] = []
    records: list[dict[str, object]] = []
    for budget in budgets:
        for level in levels:
            label = REWARD_LEVELS.get(level, level)
            line = [label, level, budget]
            for task in tasks:
                group = select(rft, reward=level, task=task, budget=budget)
                for metric, scale in ((ACCURACY, 100.0), (THINK_TOKENS, 1.0)):
                    cell = make_cell(group, metric, scale)
                    line.append(cell.text(ci=metric == ACCURACY))
                    records.append(
                        _record(name, label, task, metric, cell, method="rft", reward=level, budget=budget)
                    )
            body.append(line)
    columns = ["level", "reward", "budget", *(f"{t} {m}" for t in tasks for m in ("acc %", "think tokens"))]
    notes = [
        f"Rows: rft runs at budget(s) {', '.join(budgets) or 'none'} (the budgets where a reward other than "
        f"table 1's was run); all reward levels at those budgets."
        if budgets
        else "No thinking-ablation rows: every rft row uses table 1's reward.",
        "Cell: accuracy % as in table 1; think tokens = mean eval tokens inside <think>…</think> "
        "(mean ± std over seeds).",
        f"Config: {describe_config(rft)}.",
    ]
    return Table(name, "Table 2: thinking ablation (rft)", notes, columns, body, records, rft)


def to_markdown(table: Table) -> str:
    """The table as a Markdown section: title, notes as a bullet list, then the grid."""
    lines = [f"## {table.title}", "", *(f"- {note}" for note in table.notes), ""]
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in table.body]
    return "\n".join(lines) + "\n"


def to_csv_text(columns: list[str], rows: list[list[object]] | list[dict[str, object]]) -> str:
    """CSV text of a grid (lists) or of records (dicts; the columns are the union of their keys)."""
    buffer = io.StringIO()
    if rows and isinstance(rows[0], dict):
        columns = list(dict.fromkeys(key for row in rows for key in row))  # type: ignore[union-attr]
        writer: Any = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
        writer.writeheader()
    else:
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------
# Curves and plots
# ---------------------------------------------------------------------------------------------------------


def seed_rows(rows: list[Row]) -> list[Row]:
    """The row each seed's value comes from: its last finished row (as in :func:`make_cell`)."""
    chosen: dict[str, Row] = {}
    for row in rows:
        if row.get("status") == "finished":
            chosen[row.get("seed", "")] = row
    return list(chosen.values())


def mean_curve(runs: list[list[dict[str, float]]], key: str) -> tuple[list[float], list[float]]:
    """Steps and the mean of ``key`` over the runs that logged it at each step (seeds averaged per step)."""
    by_step: dict[float, list[float]] = {}
    for lines in runs:
        for line in lines:
            if key in line and "step" in line:
                by_step.setdefault(line["step"], []).append(line[key])
    steps = sorted(by_step)
    return steps, [sum(by_step[s]) / len(by_step[s]) for s in steps]


def curve_runs(
    rows: list[Row], run_dirs: dict[str, Path | None]
) -> tuple[dict[tuple[str, str], list], list[str]]:
    """metrics.jsonl lines of the seed rows of each (task, reward level[ @ budget]) among rft ``rows``, and
    the run ids whose metrics.jsonl could not be found."""
    budgets = {r["budget"] for r in rows}
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        label = row["reward"] if len(budgets) == 1 else f"{row['reward']} @ {row['budget']}"
        groups.setdefault((row["task"], label), []).append(row)
    runs: dict[tuple[str, str], list] = {}
    missing = []
    for key, group in groups.items():
        for row in seed_rows(group):
            run_dir = run_dirs.get(row.get("run_id", ""))
            lines = read_metrics(run_dir / "metrics.jsonl") if run_dir is not None else []
            if lines:
                runs.setdefault(key, []).append(lines)
            else:
                missing.append(row.get("run_id", "?"))
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


# ---------------------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    """Both tables, the curve data and where the rows came from; :func:`write_report` renders it."""

    source: str
    rows: list[Row]
    tables: list[Table]
    run_dirs: dict[str, Path | None]
    curve_tasks: list[str]
    curve_runs: dict[tuple[str, str], list]
    missing_metrics: list[str]
    files: dict[str, Path] = field(default_factory=dict)


def build_report(rows: list[Row], source: str = "", root: Path | None = None) -> Report:
    """Tables 1 and 2 plus the training curves of table 2's runs (of all rft runs when there is no ablation).

    Args:
        rows: Result rows as strings (:func:`load_rows`).
        source: Where the rows came from, for the header.
        root: Folder searched for run folders whose recorded ``run_dir`` no longer exists.
    """
    t1, t2 = table1(rows), table2(rows)
    curve_rows = t2.rows_used or select(rows, method="rft")
    run_dirs = find_run_dirs(rows, root)
    runs, missing = curve_runs(curve_rows, run_dirs)
    tasks = sorted({r["task"] for r in curve_rows})
    return Report(source, rows, [t1, t2], run_dirs, tasks, runs, missing)


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write report.md, one CSV per table (the grid), cells.csv (every numeric cell, long format) and the
    PNG plots into ``out_dir``; returns ``{name: path}`` (also kept in ``report.files``)."""
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
    status = Counter(r.get("status") or "no status" for r in report.rows)
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


def shared_logger_value(report: Report, key: str) -> str | None:
    """A logger setting (group, project, entity) shared by every run whose config was found; None when they
    differ or no run's config was found."""
    configs = [run_logger_config(d) for d in report.run_dirs.values() if d is not None]
    values = {cfg.get(key) for cfg in configs if cfg}
    return values.pop() if len(values) == 1 else None


def log_to_wandb(report: Report, out_dir: Path, mode: str = "auto") -> Path | None:
    """Log the written report as one W&B run: job_type "report", the sweep's group when all rows share one,
    each table (grid and cells) as a ``wandb.Table`` and each plot as a ``wandb.Image``.

    Call after :func:`write_report`. The run folder goes under ``out_dir``; ``mode`` follows
    :func:`rft.tracking.resolve_wandb_mode` (WANDB_MODE, else online when logged in). Returns the W&B run
    folder (None when disabled).
    """
    import wandb

    from rft.tracking import resolve_wandb_mode

    wandb_mode = resolve_wandb_mode(mode)
    if wandb_mode == "disabled":
        return None
    group = shared_logger_value(report, "group")
    run = wandb.init(
        dir=str(out_dir),
        project=shared_logger_value(report, "project") or "rft-vs-sft",
        entity=shared_logger_value(report, "entity"),
        group=group,
        job_type="report",
        name=f"report-{group}" if group else "report",
        config={"source": report.source, "rows": len(report.rows), "main_reward": main_reward(report.rows)},
        mode=wandb_mode,
        reinit="finish_previous",
    )
    try:
        payload: dict[str, Any] = {}
        for table in report.tables:
            payload[table.name] = wandb.Table(columns=table.columns, data=table.body)
            records = table.records
            if records:
                columns = list(dict.fromkeys(key for r in records for key in r))
                data = [[_cell_text(r.get(c, "")) for c in columns] for r in records]
                payload[f"{table.name}_cells"] = wandb.Table(columns=columns, data=data)
        for name, path in report.files.items():
            if path.suffix == ".png":
                payload[f"plots/{name}"] = wandb.Image(str(path))
        run.log(payload)
        sync_dir = Path(run.settings.sync_dir)
    finally:
        run.finish()
    return sync_dir
