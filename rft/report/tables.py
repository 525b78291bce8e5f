"""The paper's two tables from typed result rows, rendered as Markdown and CSV.

- **Table 1, RFT vs SFT** (the layout of Visual-RFT's Table 2): a "zero-shot base" row, then per budget the
  sft row, the rft row and Δ(RFT−SFT); one column per task. Only rows of the *main reward* count
  (`main_reward`: the most common reward among rft rows whose prompt asks to think, normally acc_format).
- **Table 2, thinking ablation** (paper claim 2): accuracy and eval think tokens of rft rows for each reward
  level × task, at the budgets where a reward other than the main one was run.
- **Table 1b, equal passes** (a control of table 1): Δ(RFT−SFT) at every length of a schedule grid that both
  methods were scored at, so a gap cannot come from one method training longer.

Rows trained on a schedule grid (`schedule=grid`: `grid_e<E>/*` metrics) enter tables 1 and 2 at the length
their validation accuracy chose (`select_length`: per cell, the grid length with the best mean validation
accuracy over seeds; ties go to the shorter), and the cell says which (`· E=4`); other rows at their end.

A cell (`Cell`) holds one value per seed, from the last finished row of that seed, so reruns replace earlier
rows; its text is the `rft.report.stats` summary, "missing" without rows or "failed (k/n)" when every seed
failed, and notes a mixed config when its rows disagree on model, pixels, loss_agg or G.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rft.report import power
from rft.report.load import to_float
from rft.report.stats import Stats, format_stats, mean_std_ci
from rft.results import ResultRow

METHOD_ORDER = ("zeroshot", "sft", "rft")
# The thinking ablation's levels, in the paper's order of "more thinking", with their row labels.
REWARD_LEVELS = {
    "nothink": "no think",
    "acc_format": "think",
    "length_norm": "think + length (target)",
    "length_norm_group": "think + length (group)",
}
# The paper's plain length reward (every think token counted, `reward=length_norm_plain` / `_group_plain`), run
# only to reproduce the paper: table 2 lists these after the ablation's levels, and only when a run used them.
PLAIN_LEVELS = {
    "length_norm_plain": "think + length (target, plain)",
    "length_norm_group_plain": "think + length (group, plain)",
}
# Columns whose values describe the config behind a cell; listed when the rows of a cell disagree.
CONFIG_KEYS = ("model", "pixels", "loss_agg", "G")
BUDGET_KINDS = ("shots", "samples", "full")
ACCURACY = "eval/accuracy"
THINK_TOKENS = "eval/think_tokens"


def row_config(row: ResultRow) -> dict[str, str]:
    """The config values of a row that tables state: model, pixels ("min–max"), loss_agg and G."""
    pixels = f"{_text(row.min_pixels)}–{row.max_pixels}" if row.max_pixels else ""
    return {
        "model": _text(row.model),
        "pixels": pixels,
        "loss_agg": _text(row.loss_agg),
        "G": _text(row.group_size),
    }


def _text(value: object) -> str:
    return "" if value is None else str(value)


def config_values(rows: Iterable[ResultRow]) -> dict[str, list[str]]:
    """Distinct non-empty values of each `CONFIG_KEYS` entry over rows, in first-seen order."""
    values: dict[str, list[str]] = {key: [] for key in CONFIG_KEYS}
    for row in rows:
        for key, value in row_config(row).items():
            if value and value not in values[key]:
                values[key].append(value)
    return values


def describe_config(rows: Iterable[ResultRow]) -> str:
    """E.g. `"model tiny; pixels 784–12544; loss_agg seq-mean-token-mean; G 4"` (all values that occur)."""
    parts = [f"{key} {', '.join(vals)}" for key, vals in config_values(rows).items() if vals]
    return "; ".join(parts) or "no config recorded"


@dataclass
class Cell:
    """The rows behind one table cell and the per-seed values of one metric.

    Attributes:
        rows: Every row that falls in the cell, finished or not.
        values: One value per seed (the last finished row of the seed with a finite metric), times `scale`.
        n_seeds: Distinct seeds among `rows`.
    """

    rows: list[ResultRow]
    values: list[float]
    n_seeds: int
    note: str = ""

    @property
    def n_failed(self) -> int:
        return self.n_seeds - len(self.values)

    @property
    def stats(self) -> Stats | None:
        return mean_std_ci(self.values) if self.values else None

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
        return text + (f" · {self.note}" if self.note else "")


def make_cell(rows: list[ResultRow], metric: str, scale: float = 1.0) -> Cell:
    """A `Cell` from the rows of one cell: per seed, the last row with status finished and a finite
    `metric` gives the value (rows are in append order, so reruns win)."""
    per_seed: dict[int | None, float | None] = {}
    for row in rows:
        seed = row.seed
        value = to_float(row.metrics.get(metric)) if row.status == "finished" else None
        if value is not None:
            per_seed[seed] = value * scale
        else:
            per_seed.setdefault(seed, None)
    return Cell(rows, [v for v in per_seed.values() if v is not None], len(per_seed))


def grid_lengths(rows: list[ResultRow], split: str = "test") -> list[str]:
    """The schedule-grid lengths (`E` of `grid_e<E>/<split>_accuracy`) that every seed's row was scored at,
    shortest first; [] when any seed's row has no grid."""
    chosen = seed_rows(rows)
    if not chosen:
        return []
    common = None
    for row in chosen:
        have = {
            k[len("grid_e") : -len(f"/{split}_accuracy")]
            for k in row.metrics
            if k.startswith("grid_e") and k.endswith(f"/{split}_accuracy")
        }
        common = have if common is None else common & have
    return sorted(common or (), key=float)


def select_length(rows: list[ResultRow]) -> str | None:
    """The grid length a cell reports: the one with the best mean validation accuracy over its seeds (ties:
    the shorter, the cheaper), among the lengths every seed was scored at on both splits; None without a grid."""
    lengths = [e for e in grid_lengths(rows, "val") if e in grid_lengths(rows, "test")]
    if not lengths:
        return None
    chosen = seed_rows(rows)

    def val(e: str) -> float:
        return sum(float(r.metrics[f"grid_e{e}/val_accuracy"]) for r in chosen) / len(chosen)

    return max(lengths, key=lambda e: (val(e), -float(e)))


def scheduled_cell(rows: list[ResultRow], metric: str, scale: float = 1.0) -> Cell:
    """A cell at the length the schedule chose (`select_length`; `metric` is an `eval/<name>` key and the grid
    keeps it as `grid_e<E>/test_<name>`), noted `E=<E> (<steps> steps)`; without a grid, at the run's end."""
    length = select_length(rows)
    if length is None:
        return make_cell(rows, metric, scale)
    name = metric.split("/", 1)[1]
    cell = make_cell(rows, f"grid_e{length}/test_{name}", scale)
    steps = sorted({int(float(r.metrics.get(f"grid_e{length}/steps", 0))) for r in seed_rows(rows)})
    cell.note = f"E={length} ({'/'.join(map(str, steps))} steps)"
    return cell


def seed_rows(rows: list[ResultRow]) -> list[ResultRow]:
    """The row each seed's value comes from: its last finished row (as in `make_cell`)."""
    chosen: dict[int | None, ResultRow] = {}
    for row in rows:
        if row.status == "finished":
            chosen[row.seed] = row
    return list(chosen.values())


def budget_key(budget: str) -> tuple[int, float, str]:
    """Sort key: shots, then samples, then full; by size within a kind; unknown strings last."""
    kind, _, size = budget.partition(":")
    order = BUDGET_KINDS.index(kind) if kind in BUDGET_KINDS else len(BUDGET_KINDS)
    return order, to_float(size) or 0.0, budget


def select(rows: Iterable[ResultRow], **axes: str) -> list[ResultRow]:
    """Rows whose fields equal every given axis value, e.g. `select(rows, method="rft", budget="shots:4")`."""
    return [row for row in rows if all(getattr(row, key) == value for key, value in axes.items())]


def main_reward(rows: list[ResultRow]) -> str | None:
    """The reward of table 1: the most common one among rft rows with think=True (ties: the name first
    alphabetically), else among rft rows, else among all rows; None without rows."""
    for pool in (
        [r for r in rows if r.method == "rft" and r.think is True],
        select(rows, method="rft"),
        rows,
    ):
        counts = Counter(r.reward or "" for r in pool)
        if counts:
            return min(counts, key=lambda name: (-counts[name], name))
    return None


@dataclass
class Table:
    """A rendered table: header notes, a grid of text cells, and one tidy record per numeric cell.

    Attributes:
        name: File stem, e.g. `table1_rft_vs_sft`.
        records: Long-format rows (table, row, task, metric, n, mean, std, ci95...) for the cells CSV.
    """

    name: str
    title: str
    notes: list[str]
    columns: list[str]
    body: list[list[str]]
    records: list[dict[str, object]] = field(default_factory=list)
    rows_used: list[ResultRow] = field(default_factory=list)


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


def table1(rows: list[ResultRow]) -> Table:
    """RFT vs SFT: a zero-shot row, then sft, rft and Δ(RFT−SFT) per budget; tasks as columns; main reward
    only. Methods other than zeroshot/sft/rft get their own rows after rft."""
    name = "table1_rft_vs_sft"
    reward = main_reward(rows)
    used = select(rows, reward=reward) if reward is not None else []
    excluded = len(rows) - len(used)
    tasks = sorted({r.task for r in used})
    trained = [r for r in used if r.method != "zeroshot"]
    budgets = sorted({r.budget for r in trained}, key=budget_key)
    others = sorted({r.method for r in trained} - set(METHOD_ORDER))
    body: list[list[str]] = []
    records: list[dict[str, object]] = []

    def add(label: str, method: str, budget: str, cells: dict[str, Cell]) -> None:
        body.append([label, *(cells[t].text() for t in tasks)])
        axes = {"method": method, "reward": reward or "", "budget": budget}
        records.extend(_record(name, label, task, ACCURACY, cells[task], **axes) for task in tasks)

    zero = {t: make_cell(select(used, method="zeroshot", task=t), ACCURACY, 100.0) for t in tasks}
    add("zero-shot base", "zeroshot", "", zero)
    compared: dict[str, list[Cell]] = {t: [] for t in tasks}  # the trained cells, for the power note
    for budget in budgets:
        per_method = {}
        for method in ("sft", "rft", *others):
            per_method[method] = {
                t: scheduled_cell(select(used, method=method, task=t, budget=budget), ACCURACY, 100.0)
                for t in tasks
            }
            add(f"{method} @ {budget}", method, budget, per_method[method])
            for t in tasks:
                compared[t].append(per_method[method][t])
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
        "Schedule: a cell trained on a schedule grid reports the length its validation accuracy chose "
        "(`E=<passes> (<steps> steps)`, the same grid for both methods; table 1b compares them at equal "
        "passes); a cell without `E=` reports its method's own length, which may differ between methods.",
        power_note(compared),
        f"Config: {describe_config(used)}.",
    ]
    return Table(
        name, "Table 1: RFT vs SFT (accuracy %)", notes, ["method @ budget", *tasks], body, records, used
    )


def table1b(rows: list[ResultRow]) -> Table:
    """The equal-passes control of table 1: per budget and every grid length both methods were scored at,
    Δ(RFT−SFT) of test accuracy with both means (main reward only)."""
    name = "table1b_equal_passes"
    reward = main_reward(rows)
    used = [
        r for r in (select(rows, reward=reward) if reward is not None else []) if r.method in ("sft", "rft")
    ]
    tasks = sorted({r.task for r in used})
    budgets = sorted({r.budget for r in used}, key=budget_key)
    body: list[list[str]] = []
    records: list[dict[str, object]] = []
    compared: dict[str, list[Cell]] = {t: [] for t in tasks}  # for the power note
    for budget in budgets:
        groups = {
            (m, t): select(used, method=m, task=t, budget=budget) for m in ("sft", "rft") for t in tasks
        }
        lengths = sorted({e for group in groups.values() for e in grid_lengths(group)}, key=float)
        for length in lengths:
            line = [f"Δ(RFT−SFT) @ {budget}, E={length}"]
            for task in tasks:
                metric = f"grid_e{length}/test_accuracy"
                cells = {m: make_cell(groups[(m, task)], metric, 100.0) for m in ("sft", "rft")}
                compared[task].extend(cells.values())
                rft_stats, sft_stats = cells["rft"].stats, cells["sft"].stats
                if rft_stats is None or sft_stats is None:
                    line.append("–")
                    continue
                delta = rft_stats.mean - sft_stats.mean
                line.append(
                    f"{delta:+.1f} (rft {format_stats(rft_stats, ci=False)}, sft {format_stats(sft_stats, ci=False)})"
                )
                records.append(
                    {
                        "table": name,
                        "row": line[0],
                        "task": task,
                        "metric": "accuracy_delta",
                        "method": "rft-sft",
                        "reward": reward or "",
                        "budget": budget,
                        "epochs": length,
                        "mean": delta,
                        "n_rft": rft_stats.n,
                        "n_sft": sft_stats.n,
                        "text": line[-1],
                    }
                )
            body.append(line)
    notes = [
        "Both methods at the same number of passes over the budgeted data (E), read from one run per seed at "
        "every length of the schedule grid; with equal examples per step (GRPO prompts, SFT batch) equal passes "
        "are equal optimizer steps.",
        "Cell: Δ = mean(rft) − mean(sft) of test accuracy in %, then each mean ± std (n seeds).",
        power_note(compared),
    ]
    if not body:
        notes = ["No schedule-grid rows: run the study with schedule=grid (make study, make study-tiny)."]
    return Table(
        name,
        "Table 1b: RFT vs SFT at equal passes (accuracy %)",
        notes,
        ["budget, passes", *tasks],
        body,
        records,
        used,
    )


def resolvable(cells: list[Cell]) -> tuple[float, int, int] | None:
    """The smallest difference between two of these cells that the study resolves (`power.mde`: 80% power,
    two-sided 5% t test over seeds), in points, with the test questions n and seeds k it assumes: n the median
    `eval/n` of the cells' rows, k the most seeds of a cell, p their mean accuracy, and the between-seed spread
    that their pooled sample std implies (`power.between_seed_sd`; `power.SEED_SD` when no cell has 2 seeds).
    None when no cell has a value."""
    stats = [c.stats for c in cells if c.stats is not None]
    ns = sorted(int(n) for c in cells for r in seed_rows(c.rows) if (n := to_float(r.metrics.get("eval/n"))))
    if not stats or not ns:
        return None
    n, k = ns[len(ns) // 2], max(st.n for st in stats)
    p = min(max(sum(st.mean for st in stats) / len(stats) / 100, 0.0), 1.0)
    spreads = [st.std / 100 for st in stats if st.std is not None]
    seed_sd = (
        power.between_seed_sd(math.sqrt(sum(x * x for x in spreads) / len(spreads)), p, n)
        if spreads
        else power.SEED_SD
    )
    return 100 * power.mde(n, max(k, 2), p, seed_sd), n, k


def power_note(cells_by_task: dict[str, list[Cell]]) -> str:
    """One note: per task, the smallest difference the table's comparisons can resolve (`resolvable`)."""
    parts = []
    for task, cells in cells_by_task.items():
        got = resolvable(cells)
        if got is not None:
            parts.append(f"{task} ≥ {got[0]:.1f} points ({got[2]} seeds × {got[1]} test questions)")
    return (
        "Resolvable difference (80% power, two-sided 5% t test over seeds, the observed seed spread; "
        "rft/report/power.py): "
        + ("; ".join(parts) if parts else "no cell has a value yet")
        + ". A smaller Δ "
        "is not evidence of a difference."
    )


def ablation_budgets(rows: list[ResultRow]) -> list[str]:
    """Budgets at which some rft row used a reward other than the main one (where the ablation was run)."""
    reward = main_reward(rows)
    return sorted({r.budget for r in select(rows, method="rft") if r.reward != reward}, key=budget_key)


def table2(rows: list[ResultRow]) -> Table:
    """Thinking ablation: rft rows only; per (budget, reward level) accuracy % and eval think tokens per task.

    Levels: nothink, acc_format, length_norm, length_norm_group, then the plain forms (`PLAIN_LEVELS`) and any
    other reward seen at those budgets.
    """
    name = "table2_thinking"
    budgets = ablation_budgets(rows)
    rft = [r for r in select(rows, method="rft") if r.budget in budgets]
    tasks = sorted({r.task for r in rft})
    seen = {r.reward for r in rft}
    labels = {**REWARD_LEVELS, **PLAIN_LEVELS}
    levels = [*REWARD_LEVELS, *(p for p in PLAIN_LEVELS if p in seen), *sorted(seen - set(labels))]
    body: list[list[str]] = []
    records: list[dict[str, object]] = []
    compared: dict[str, list[Cell]] = {t: [] for t in tasks}  # the accuracy cells, for the power note
    for budget in budgets:
        for level in levels:
            label = labels.get(level, level)
            line = [label, level, budget]
            for task in tasks:
                group = select(rft, reward=level, task=task, budget=budget)
                for metric, scale in ((ACCURACY, 100.0), (THINK_TOKENS, 1.0)):
                    cell = scheduled_cell(group, metric, scale)
                    line.append(cell.text(ci=metric == ACCURACY))
                    if metric == ACCURACY:
                        compared[task].append(cell)
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
        "(mean ± std over seeds); each level at the length its validation accuracy chose (`E=`), as in table 1.",
        power_note(compared),
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
