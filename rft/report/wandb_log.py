"""Logging a written report to W&B: one run of job_type "report" with the tables and the plots.

`log_to_wandb` logs each table twice, as its text grid and as its numeric cells (long format), both as
`wandb.Table`s, and each PNG plot as a `wandb.Image`. The run joins the sweep's W&B project, entity and group
when every run whose config was found agrees on them (`shared_logger_value`), so it sits beside the runs it
summarises on the dashboard. The mode follows `rft.tracking.resolve_wandb_mode`: `WANDB_MODE`, else online
when logged in, else offline; the run folder goes under the report folder.

wandb is imported only when `log_to_wandb` is called: writing a report never needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rft.report.build import Report
from rft.report.load import run_logger_config
from rft.report.tables import main_reward
from rft.tracking import resolve_wandb_mode


def shared_logger_value(report: Report, key: str) -> str | None:
    """A logger setting (group, project, entity) shared by every run whose config was found; None when they
    differ or no run's config was found."""
    configs = [run_logger_config(d) for d in report.run_dirs.values() if d is not None]
    values = {cfg.get(key) for cfg in configs if cfg}
    return values.pop() if len(values) == 1 else None


def log_to_wandb(report: Report, out_dir: Path, mode: str = "auto") -> Path | None:
    """Log the written report as one W&B run: job_type "report", the sweep's group when all rows share one,
    each table (grid and cells) as a `wandb.Table` and each plot as a `wandb.Image`.

    Call after `write_report`. The run folder goes under `out_dir`; `mode` follows
    `resolve_wandb_mode` (WANDB_MODE, else online when logged in). Returns the W&B run
    folder (None when disabled).
    """
    import wandb  # only here: the report is written without it

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


def _cell_text(value: object) -> str:
    """A cells-table value as the CSV shows it (None empty, lists and dicts as JSON)."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)
