"""The result row of a run and the shared results table: one schema, written by runs, read by the report.

`ResultRow` is the row every run writes, to its `results.json` and as one line of the shared results CSV:
identity and status, the five axes plus seed (`axes`), the config values tables state, provenance, timings,
and the metrics (`eval/*`, `eval_before/*`, `train/*`, `perf/*`) in one dict. `ResultRow.to_record` flattens
it to the column names results tables have always had; `ResultRow.from_record` parses a CSV row (strings) or
a `results.json` dict back, so readers use fields rather than string keys.

Several runs of a sweep append to one CSV at the same time: `append_result_row` serialises them with a
`filelock.FileLock` on a sidecar `<csv>.lock` (waiting at most `LOCK_TIMEOUT_S`) and rewrites the table
atomically (`rft.files`), so a reader never sees a half-written file and a new column never shifts old rows; a
symlinked table is written through to its target. A table that cannot be read or written raises
`ResultsTableError`. `record_result` writes `results.json` and the row so that a row is never lost: results.json
says `row_written: false` until the row is in the table, and `append_missing_row` adds it later (`resume=auto`).
`package_versions` and `git_commit` record what produced a row.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import subprocess
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from filelock import FileLock, Timeout

from rft.files import atomic_write_json, atomic_write_text, dumps
from rft.redaction import redact

if TYPE_CHECKING:  # only for annotations: the report must not pay for importing the config (and torch)
    from rft.config import RunConfig

STATUSES = ("running", "finished", "failed", "interrupted")
LOCK_TIMEOUT_S = 120.0  # how long a run waits for another process's lock on the results table
RESULTS_JSON = "results.json"


class ResultsTableError(RuntimeError):
    """The shared results table cannot be read or written; the message names the file, the reason and the fix."""


PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "deepspeed",
    "wandb",
    "datasets",
    "hydra-core",
    "omegaconf",
    "accelerate",
    "pillow",
)


def axes(cfg: RunConfig) -> dict[str, object]:
    """The five axes plus seed, as flat keys named like `ResultRow`'s fields (W&B config, result rows)."""
    return {
        "task": cfg.task.name,
        "method": cfg.method.name,
        "model": cfg.model.id,
        "reward": cfg.reward.name,
        "budget": "full" if cfg.budget.kind == "full" else f"{cfg.budget.kind}:{cfg.budget.size}",
        "seed": cfg.seed,
    }


# ---------------------------------------------------------------------------------------------------------
# The row
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ResultRow:
    """One run's result: what `results.json` holds and what one line of the results CSV says.

    Every field but `run_id`, `status` and `metrics` is None when unknown: a run that failed before training
    knows only its axes and the error, a zero-shot or SFT run has no `loss_agg` or `group_size`.

    Attributes:
        run_id: The run folder's name.
        status: One of `STATUSES`.
        task, method, model, reward, budget, seed: The axes (`axes`); budget as `"shots:4"` or `"full"`.
        n_train: Training samples after the budget.
        min_pixels, max_pixels: The processor's image resolution bounds.
        think: Whether the prompt asks for `<think>`.
        loss_agg, group_size: GRPO's loss aggregation and G; None for other methods.
        max_new_tokens: The completion length limit.
        dist, world_size: The distributed strategy and the number of ranks.
        run_dir, resumed_from, last_checkpoint: Folders: the run's, the checkpoint it resumed from, and
            the newest checkpoint when it failed.
        git_commit: `git_commit` of the suite, `-dirty` with local changes.
        error: `"<ExceptionType>: <message>"` of a failed or interrupted run.
        train_source, crop_bottom, eval_multi_image: The data protocol (`task.*`): where the train pool came
            from, the pixels cut off each image's bottom, whether 2-image questions were evaluated.
        stage: Where a failed run stopped when it is known: `"setup"` for a failure before training started
            (config, data, budget, model, checkpoint; such a row has no metrics and never trained).
        schedule: How long it trained: "method" (the method's own steps or epochs) or "epochs:1,2,4" (the grid
            of `schedule.epochs` it was scored at; `grid_e<E>/*` metrics).
        train_s, eval_s, wall_s: Seconds spent training, evaluating, and in all (wall_s: every attempt of a
            resumed run).
        gpu_hours: Measured cost: wall_s x world_size / 3600.
        finished_at: ISO 8601 UTC time the row was completed.
        metrics: `section/name` -> value: `eval/*`, `eval_before/*` (with `eval.before`), `train/*`, `perf/*`,
            `grid_e<E>/*`. What the run got: `train/epochs` (passes over the budgeted set), `train/samples_seen`
            (examples or prompts drawn), `train/completions` (generated; 0 for SFT and zero-shot), `train/tokens`
            (tokens the loss saw: GRPO completions, SFT targets, over all ranks).
    """

    run_id: str
    status: str
    task: str | None = None
    method: str | None = None
    model: str | None = None
    reward: str | None = None
    budget: str | None = None
    seed: int | None = None
    n_train: int | None = None
    min_pixels: int | None = None
    max_pixels: int | None = None
    think: bool | None = None
    loss_agg: str | None = None
    group_size: int | None = None
    max_new_tokens: int | None = None
    dist: str | None = None
    world_size: int | None = None
    run_dir: str | None = None
    resumed_from: str | None = None
    git_commit: str | None = None
    error: str | None = None
    stage: str | None = None
    train_source: str | None = None
    crop_bottom: int | None = None
    eval_multi_image: bool | None = None
    schedule: str | None = None
    last_checkpoint: str | None = None
    train_s: float | None = None
    eval_s: float | None = None
    wall_s: float | None = None
    gpu_hours: float | None = None
    finished_at: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"result row status {self.status!r} is unknown; use one of {STATUSES}")
        unsectioned = [key for key in self.metrics if "/" not in key]
        if unsectioned:
            raise ValueError(f"metric names are `section/name`, got {unsectioned}; prefix them, e.g. eval/")

    def to_record(self) -> dict[str, object]:
        """The flat record: every fixed field (None when unknown) in schema order, then the metrics.

        This is the `results.json` content (without `versions`) and the CSV row, with the column names the
        results table has always used, so tables written before the typed row read the same.
        """
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {**record, **self.metrics}

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> Self:
        """Parse a CSV row (all strings) or a `results.json` dict back into a typed row.

        Empty cells and absent keys become None; `think` becomes a bool (`"True"`/`"False"` or JSON booleans);
        counts become int, seconds and metrics float (`"nan"`, `"inf"` included). Keys of the form
        `section/name` are metrics, where empty cells are left out; other keys that are not fields (the
        `versions` of results.json) are ignored.

        Raises:
            ValueError: If `run_id` or `status` is missing, or a cell does not parse as its field's type;
                the message names the column and the value.
        """
        values: dict[str, Any] = {}
        for name, kind in _FIELD_TYPES.items():
            value = record.get(name)
            if value is None or value == "":
                continue
            try:
                values[name] = _parse(kind, value)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"results column {name!r} holds {value!r}, which is not {kind.__name__}; fix or blank "
                    f"the cell (run {record.get('run_id', '?')})"
                ) from err
        for name in ("run_id", "status"):
            if name not in values:
                raise ValueError(f"a result row needs {name!r}; got the columns {sorted(record)}")
        metrics = {}
        for key, value in record.items():
            if "/" not in key or value is None or value == "":
                continue
            try:
                metrics[key] = _parse(float, value)
            except (TypeError, ValueError) as err:
                raise ValueError(
                    f"results column {key!r} holds {value!r}, which is not a number; fix or blank the cell "
                    f"(run {values['run_id']})"
                ) from err
        return cls(**values, metrics=metrics)


# The parser of each fixed field: its annotation without the `| None` (str, int, float or bool).
_FIELD_TYPES: dict[str, type] = {
    name: next(t for t in typing.get_args(hint) or (hint,) if t is not type(None))
    for name, hint in typing.get_type_hints(ResultRow).items()
    if name != "metrics"
}


def _parse(kind: type, value: object) -> object:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            raise ValueError(value)
        return text == "true"
    if kind is int:
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)  # type: ignore[arg-type]  # "4" and "4.0" alike
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)  # type: ignore[arg-type]  # "nan" and "inf" as written by rft.files
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# The shared results table
# ---------------------------------------------------------------------------------------------------------


def append_result_row(
    csv_path: Path, row: ResultRow | Mapping[str, object], *, timeout: float = LOCK_TIMEOUT_S
) -> None:
    """Append one row to a CSV table that several processes may append to at the same time.

    Under an exclusive `filelock.FileLock` on `<csv_path>.lock` the whole table is read, the columns become the
    union of the existing ones (in their order) and the new row's keys (appended at the end), and the table is
    rewritten with `atomic_write_text`. Old rows get empty cells for new columns, so schema growth never
    corrupts them. Cell values: `None` becomes empty, lists and dicts are JSON-encoded, anything else is
    `str`. The row is passed through `redact` first. Parent directories are created. A symlink is written
    through: its target is rewritten (and locked), the link stays.

    Args:
        csv_path: The shared table, e.g. `outputs/results.csv`.
        row: A `ResultRow` (written as `ResultRow.to_record`), or any column name to value.
        timeout: Seconds to wait for another process's lock before giving up.

    Raises:
        ResultsTableError: the lock stayed taken for `timeout` seconds, the path is a folder, the table is not
            UTF-8 CSV, or the write failed (a full disk...); the table is then unchanged.
    """
    csv_path = table_path(csv_path)
    record = row.to_record() if isinstance(row, ResultRow) else dict(row)
    new_row = {str(key): _csv_cell(value) for key, value in redact(record).items()}
    lock_path = csv_path.with_name(csv_path.name + ".lock")
    try:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(lock_path, timeout=timeout):
            columns, rows = _read_table(csv_path)
            columns += [key for key in new_row if key not in columns]
            rows.append(new_row)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(csv_path, buffer.getvalue())
    except Timeout as err:
        raise ResultsTableError(
            f"the results table {csv_path} stayed locked for {timeout:.0f} s: another process holds {lock_path}. "
            "Wait for it to finish (or stop it), then add the row"
        ) from err
    except OSError as err:
        raise ResultsTableError(
            f"could not write the results table {csv_path}: {err.strerror or err}. Free disk space or fix the "
            "file's permissions, or pass results_csv=<another file>"
        ) from err


def check_results_table(csv_path: Path) -> None:
    """Fail early if the results table cannot take a row: a folder in its place, or a file that is not UTF-8 CSV.

    Raises:
        ResultsTableError: naming the file and the fix.
    """
    _read_table(table_path(csv_path))


def table_path(csv_path: Path) -> Path:
    """The file a table path stands for: a symlink's target (so an atomic rewrite keeps the link), else itself."""
    csv_path = Path(csv_path).expanduser()
    return csv_path.resolve() if csv_path.is_symlink() else csv_path


def read_results(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a table written by `append_result_row`, as strings; `[]` if the file is missing.

    `ResultRow.from_record` turns one into a typed row.

    Raises:
        ResultsTableError: the path is a folder or the file is not UTF-8 CSV.
    """
    return _read_table(Path(csv_path))[1]


def _read_table(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if csv_path.is_dir():
        raise ResultsTableError(
            f"results_csv={csv_path} is a folder, not a table; pass results_csv={csv_path}/results.csv or "
            "another file name"
        )
    if not csv_path.exists():
        return [], []
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except UnicodeDecodeError as err:
        raise ResultsTableError(
            f"the results table {csv_path} is not UTF-8 text (byte {err.start} cannot be decoded); convert it "
            f"(e.g. iconv -f latin1 -t utf-8 {csv_path} > fixed.csv && mv fixed.csv {csv_path}) or pass "
            "results_csv=<another file>"
        ) from err
    except csv.Error as err:
        raise ResultsTableError(
            f"the results table {csv_path} is not a readable CSV file ({err}); repair it or pass "
            "results_csv=<another file>"
        ) from err


# ---------------------------------------------------------------------------------------------------------
# results.json and the row, kept consistent
# ---------------------------------------------------------------------------------------------------------


def record_result(run_dir: Path, csv_path: Path, row: ResultRow, extra: Mapping[str, object] = {}) -> None:
    """Write `run_dir/results.json` and append the row to the table, so that neither can lie about the other.

    results.json is written first with `row_written: false`, then the row is appended, then results.json is
    rewritten with `row_written: true`. If the append fails (`ResultsTableError`), results.json still holds
    the whole row and says it is missing from the table; `append_missing_row` (run by `resume=auto`) adds it.

    Args:
        extra: More keys for results.json only (e.g. `versions`).

    Raises:
        ResultsTableError: the row could not be appended; results.json says `row_written: false`.
    """
    path = Path(run_dir) / RESULTS_JSON
    record = {**row.to_record(), **extra}
    atomic_write_json(path, {**record, "row_written": False})
    append_result_row(csv_path, row)
    atomic_write_json(path, {**record, "row_written": True})


def mark_row_missing(run_dir: Path) -> bool:
    """Set `row_written: false` in `run_dir/results.json` after its row failed to reach the table.

    Returns:
        True if results.json exists and now says so.
    """
    path = Path(run_dir) / RESULTS_JSON
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if record.get("row_written") is not False:
        atomic_write_json(path, {**record, "row_written": False})
    return True


def append_missing_row(run_dir: Path, csv_path: Path, *, timeout: float = LOCK_TIMEOUT_S) -> ResultRow | None:
    """Append the row of `run_dir/results.json` when it says `row_written: false`; a no-op otherwise.

    A row already in the table (same `run_id`, `run_dir` and `finished_at`: the process died between the
    append and the rewrite of results.json) is not appended twice.

    Returns:
        The row that is now in the table, or None if results.json is absent or had its row already.

    Raises:
        ResultsTableError: the table still cannot take the row.
    """
    path = Path(run_dir) / RESULTS_JSON
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("row_written") is not False:
        return None
    row = ResultRow.from_record(record)
    key = (row.run_id, row.run_dir or "", row.finished_at or "")
    present = any(
        (r.get("run_id"), r.get("run_dir") or "", r.get("finished_at") or "") == key
        for r in read_results(table_path(csv_path))
    )
    if not present:
        append_result_row(csv_path, row, timeout=timeout)
    atomic_write_json(path, {**record, "row_written": True})
    return row


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return dumps(value)
    return str(value)


# ---------------------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (`"absent"` when not installed)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def git_commit(repo_dir: Path) -> str:
    """`HEAD` of the git repository holding `repo_dir`, with `-dirty` if it has uncommitted changes.

    Untracked files count as changes (`git status --porcelain` is non-empty). Returns `"unknown"` when
    `repo_dir` is not in a repository, git is missing or fails; never raises.
    """

    def git(*args: str) -> str:
        # GIT_OPTIONAL_LOCKS=0: `git status` must not take the index lock while a user runs git in the repo.
        result = subprocess.run(
            ["git", "-C", str(repo_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        return result.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
