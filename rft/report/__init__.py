"""The sweep report: result rows and metrics.jsonl in, the paper's two tables and its plots out.

    rows, source = load_rows(Path("outputs/multirun/2026-11-27/03-30-56"))
    report = build_report(rows, source=str(source), root=Path("outputs/multirun/2026-11-27/03-30-56"))
    files = write_report(report, Path("outputs/multirun/2026-11-27/03-30-56/report"))
    log_to_wandb(report, files["report"].parent)   # optional

One module per concern: `stats` (mean, std, 95% t interval), `load` (rows, metrics.jsonl, run folders),
`tables` (table 1 RFT vs SFT, table 1b at equal passes, table 2 thinking ablation, Markdown/CSV), `plots`, `build` (the `Report` and
its files) and `wandb_log`. A cell shows mean ± sample std over seeds, n, and the 95% t interval where n ≥ 3;
accuracy is in percent; a cell with no rows reads "missing", one whose seeds all failed "failed (k/n)".
Plain library code: no Hydra; matplotlib and wandb are imported only by the functions that draw or log.
"""

from rft.report.build import Report, build_report, write_report
from rft.report.load import find_run_dirs, load_rows, read_metrics, run_logger_config, to_float
from rft.report.plots import (
    CURVES,
    curve_runs,
    mean_curve,
    panel_budgets,
    plot_accuracy_vs_budget,
    plot_curves,
)
from rft.report.stats import Stats, format_stats, mean_std_ci, t95
from rft.report.tables import (
    ACCURACY,
    REWARD_LEVELS,
    THINK_TOKENS,
    Cell,
    Table,
    ablation_budgets,
    budget_key,
    describe_config,
    main_reward,
    make_cell,
    scheduled_cell,
    seed_rows,
    select,
    select_length,
    table1,
    table1b,
    table2,
    to_csv_text,
    to_markdown,
)
from rft.report.wandb_log import log_to_wandb, shared_logger_value

__all__ = [
    "ACCURACY",
    "CURVES",
    "REWARD_LEVELS",
    "THINK_TOKENS",
    "Cell",
    "Report",
    "Stats",
    "Table",
    "ablation_budgets",
    "budget_key",
    "build_report",
    "curve_runs",
    "describe_config",
    "find_run_dirs",
    "format_stats",
    "load_rows",
    "log_to_wandb",
    "main_reward",
    "make_cell",
    "mean_curve",
    "mean_std_ci",
    "panel_budgets",
    "plot_accuracy_vs_budget",
    "plot_curves",
    "read_metrics",
    "run_logger_config",
    "scheduled_cell",
    "seed_rows",
    "select",
    "select_length",
    "shared_logger_value",
    "t95",
    "table1",
    "table1b",
    "table2",
    "to_csv_text",
    "to_float",
    "to_markdown",
    "write_report",
]
