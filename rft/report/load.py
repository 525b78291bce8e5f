"""The report's inputs: typed result rows, each run's metrics.jsonl, and the run folders that hold them.

`load_rows` reads a results.csv, or a sweep folder (every results.csv below it, else every results.json), into
`rft.results.ResultRow`s, so the tables read fields (`row.think`, `row.seed`) rather than strings. Runs may
have moved since they wrote their rows: `find_run_dirs` falls back to a folder named after the run id.

`read_metrics` tolerates a run killed mid-write (the cut-off last line is skipped) and the `"nan"`/`"inf"`
strings `rft.files` writes for non-finite floats; `to_float` is the one rule for "is this a number".
`run_logger_config` reads the `logger` section of a run's resolved config, for the W&B report run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from rft.results import ResultRow, read_results


def load_rows(path: Path) -> tuple[list[ResultRow], Path]:
    """Result rows from a results.csv, or a folder holding one or results.json files.

    A folder is searched in this order: `<path>/results.csv`; every `results.csv` below it (concatenated);
    else the table is rebuilt from every `results.json` below it (a sweep folder: runs append to the shared
    CSV elsewhere, but each job folder has its results.json; a row without `run_dir` gets that folder).

    Returns:
        The rows, in file order, and the file or folder they came from.

    Raises:
        FileNotFoundError: If the path does not exist or holds no results.
        ValueError: If a row does not parse (`ResultRow.from_record` names the column).
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
        row = ResultRow.from_record(json.loads(p.read_text(encoding="utf-8")))
        row.run_dir = row.run_dir or str(p.parent)
        rows.append(row)
    return rows, path


def _read_csv(path: Path) -> list[ResultRow]:
    return [ResultRow.from_record(record) for record in read_results(path)]


def to_float(value: object) -> float | None:
    """The finite float in a CSV cell or JSON value, else None ("", "nan", "inf", words, None)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The lines of a metrics.jsonl as `{key: float}`; non-numeric and non-finite values and unreadable
    lines (a run killed mid-write) are skipped. `[]` if the file is missing."""
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


def find_run_dirs(rows: list[ResultRow], root: Path | None) -> dict[str, Path | None]:
    """The run folder of each row, by run id: its `run_dir` if it exists, else a folder named `run_id`
    holding results.json, metrics.jsonl or config.yaml under `root` (a sweep copied or moved), else None."""
    found: dict[str, Path | None] = {}
    index: dict[str, Path] | None = None
    for row in rows:
        run_dir = Path(row.run_dir) if row.run_dir else None
        if run_dir is not None and run_dir.is_dir():
            found[row.run_id] = run_dir
            continue
        if index is None:  # built once, only when some recorded run_dir is gone
            names = ("results.json", "metrics.jsonl", "config.yaml")
            files = [f for name in names for f in Path(root).rglob(name)] if root else []
            index = {f.parent.name: f.parent for f in files}
        found[row.run_id] = index.get(row.run_id)
    return found


def run_logger_config(run_dir: Path | None) -> dict[str, Any]:
    """The `logger` section of a run's resolved config (config.yaml, else .hydra/config.yaml), or {}."""
    if run_dir is None:
        return {}
    for name in ("config.yaml", ".hydra/config.yaml"):
        if (run_dir / name).is_file():
            cfg = yaml.safe_load((run_dir / name).read_text(encoding="utf-8")) or {}
            return dict(cfg.get("logger") or {})
    return {}
