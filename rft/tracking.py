"""Experiment tracking: metrics.jsonl, sample dumps, optional W&B, phase timers and the shared results table.

Every run writes the same local files whether or not W&B is used (the output contract):

* ``metrics.jsonl``: one JSON object per :meth:`Tracker.log` call, ``{"step": 3, "train/loss": 0.41, ...}``.
  JSON has no NaN or infinity, so non-finite floats are written as the strings ``"nan"``, ``"inf"`` and
  ``"-inf"``; every line stays valid JSON for any reader.
* ``samples/step_000003.jsonl``: one JSON object per completion (prompt, completion, reward terms,
  advantage...).

W&B rides on top of these files and is never required. The backend ``"none"`` and the mode ``"disabled"`` do
not import wandb at all. In offline mode wandb 0.31 writes ``<run_dir>/wandb/offline-run-<time>-<id>/`` with
``run-<id>.wandb`` (the log ``wandb sync`` uploads) and ``files/``. A ``wandb.Table`` is additionally
logged as a ``run_table`` artifact; its full JSON and the PNGs of its ``wandb.Image`` cells are staged under
``$WANDB_DATA_DIR/artifacts/staging`` (default ``~/.local/share/wandb``), not in the run folder, and the
copy in ``files/media/table/`` holds only the placeholder ``"Image"`` in image cells.

Secrets never reach W&B or the run folder: :func:`redact` masks values of secret-looking keys and any string
equal to a known token from the environment before config, samples, summaries or result rows are written.

Several runs of a sweep append to one results CSV at the same time; :func:`append_result_row` serialises them
with an exclusive ``flock`` on a sidecar lock file and replaces the table atomically, so a reader never sees a
half-written file and a new column never shifts the values of old rows.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import math
import netrc
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

log = logging.getLogger(__name__)

REDACTED = "***"
# Key names whose values are secrets. "token" must stand alone between separators so that config keys such
# as max_new_tokens or tokenizer_name stay readable on the dashboard, while hf_token or auth-token are masked.
_SECRET_KEY = re.compile(r"api[_-]?key|secret|password|passwd|(?:^|[^a-z])token(?:$|[^a-z])", re.IGNORECASE)
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
# A secret this long is also masked where it is embedded in a longer string (a URL, a command line); shorter
# values are masked only on an exact match so a short variable cannot mangle ordinary text.
_MIN_EMBEDDED_SECRET_LEN = 8

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
TRACKER_BACKENDS = ("wandb", "none")
TRACKER_MODES = ("auto", "online", "offline", "disabled")


# ---------------------------------------------------------------------------------------------------------
# Atomic files and the shared results table
# ---------------------------------------------------------------------------------------------------------


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see either the old file or the complete new one.

    The text goes to a temporary file in the same directory (same filesystem, so the rename is atomic), is
    fsynced, and then replaces ``path`` with ``os.replace``. On any error the temporary file is removed and
    ``path`` is left untouched. Parent directories are created.

    Args:
        path: Destination file.
        text: Full new content, written as UTF-8.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; results are meant to be read by others, so keep the old mode or 0644.
        os.fchmod(fd, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_path(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with :func:`atomic_write_text`.

    Non-finite floats become the strings ``"nan"``, ``"inf"``, ``"-inf"``; objects JSON cannot encode
    (paths, numpy or torch scalars) are converted with ``.item()`` where they have it, else ``str``.

    Args:
        path: Destination file.
        obj: JSON-like data.
    """
    atomic_write_text(path, _dumps(obj, indent=2) + "\n")


def append_result_row(csv_path: Path, row: Mapping[str, object]) -> None:
    """Append one row to a CSV table that several processes may append to at the same time.

    Under an exclusive ``fcntl.flock`` on ``<csv_path>.lock`` the whole table is read, the columns become the
    union of the existing ones (in their order) and the new row's keys (appended at the end), and the table is
    rewritten with :func:`atomic_write_text`. Old rows get empty cells for new columns, so schema growth never
    corrupts them. Cell values: ``None`` becomes empty, lists and dicts are JSON-encoded, anything else is
    ``str``. The row is passed through :func:`redact` first. Parent directories are created.

    Args:
        csv_path: The shared table, e.g. ``outputs/results.csv``.
        row: Column name to value.
    """
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    new_row = {str(key): _csv_cell(value) for key, value in redact(dict(row)).items()}
    lock_path = csv_path.with_name(csv_path.name + ".lock")
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            columns, rows = _read_table(csv_path)
            columns += [key for key in new_row if key not in columns]
            rows.append(new_row)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_write_text(csv_path, buffer.getvalue())
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def read_results(csv_path: Path) -> list[dict[str, str]]:
    """Rows of a table written by :func:`append_result_row`, as strings; ``[]`` if the file is missing."""
    return _read_table(Path(csv_path))[1]


def _read_table(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not csv_path.exists():
        return [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return _dumps(value)
    return str(value)


def fsync_path(path: Path) -> None:
    """fsync a file, or a directory to make a rename in it durable; best effort, since some filesystems refuse
    to open directories."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# JSON encoding and secret redaction
# ---------------------------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings and 0-d tensors / numpy scalars as Python numbers."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "item"):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            return _jsonable(value.item())
    return str(value)


def _dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_jsonable(obj), ensure_ascii=False, indent=indent, allow_nan=False)


def redact(obj: Any) -> Any:
    """A copy of ``obj`` with secrets replaced by ``"***"``, at any nesting depth.

    Masked are:

    * the value of every key whose name matches ``api_key`` / ``api-key`` / ``apikey``, ``secret``,
      ``password``, ``passwd`` or a standalone ``token`` word (``hf_token``, ``auth-token``, but not
      ``max_new_tokens`` or ``tokenizer``), case-insensitively; ``None`` and ``""`` stay as they are, so an
      unset secret still reads as unset;
    * every string equal to the value of ``WANDB_API_KEY``, ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN`` or
      ``OPENAI_API_KEY`` (when set and non-empty); such a value of 8 or more characters is also masked where
      it is embedded in a longer string.

    Dicts, lists and tuples are copied; other values are returned as they are. The environment is read on
    every call, so a token set after import is still caught.

    Args:
        obj: Config, row, metrics or any nesting of them.

    Returns:
        The redacted copy.
    """
    secrets = sorted({v for name in SECRET_ENV_VARS if (v := os.environ.get(name))}, key=len, reverse=True)
    return _redact(obj, secrets)


def _redact(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        for secret in secrets:
            if obj == secret:
                return REDACTED
            if len(secret) >= _MIN_EMBEDDED_SECRET_LEN and secret in obj:
                obj = obj.replace(secret, REDACTED)
        return obj
    if isinstance(obj, Mapping):
        return {
            key: REDACTED
            if _SECRET_KEY.search(str(key)) and not _is_unset(value)
            else _redact(value, secrets)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(item, secrets) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(item, secrets) for item in obj)
    return obj


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with ``/``-joined keys: ``{"eval": {"acc": 1}}`` -> ``{"eval/acc": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}/"))
        else:
            flat[name] = value
    return flat


# ---------------------------------------------------------------------------------------------------------
# W&B mode resolution
# ---------------------------------------------------------------------------------------------------------


def resolve_wandb_mode(mode: str) -> str:
    """The W&B mode a :class:`Tracker` will use: ``"online"``, ``"offline"`` or ``"disabled"``.

    ``"auto"`` follows ``WANDB_MODE`` when it is set (``dryrun`` counts as offline, ``run`` as online);
    otherwise it is online when W&B credentials are configured and offline when they are not. Credentials
    are looked for without any network access or prompt: ``WANDB_API_KEY`` or ``WANDB_IDENTITY_TOKEN_FILE``
    in the environment, or an entry for the W&B host (``WANDB_BASE_URL``, default ``api.wandb.ai``) in the
    netrc file (``NETRC``, else ``~/.netrc``), which is where ``wandb login`` stores the key.

    Args:
        mode: One of ``"auto"``, ``"online"``, ``"offline"``, ``"disabled"``.

    Raises:
        ValueError: For an unknown mode or an unknown ``WANDB_MODE`` value.
    """
    if mode not in TRACKER_MODES:
        raise ValueError(f"W&B mode {mode!r} is unknown; use one of {TRACKER_MODES}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        aliases = {"dryrun": "offline", "run": "online"}
        resolved = aliases.get(env_mode, env_mode)
        if resolved not in ("online", "offline", "disabled"):
            raise ValueError(f"WANDB_MODE={env_mode!r} is unknown; set it to online, offline or disabled")
        return resolved
    return "online" if _wandb_credentials_configured() else "offline"


def _wandb_credentials_configured() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname or "api.wandb.ai"
    netrc_path = Path(os.environ.get("NETRC") or Path.home() / ".netrc").expanduser()
    try:
        entry = netrc.netrc(netrc_path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


# ---------------------------------------------------------------------------------------------------------
# Tracker
# ---------------------------------------------------------------------------------------------------------


class Tracker:
    """The one object the training and evaluation loops log through.

    Always writes ``run_dir/metrics.jsonl`` and ``run_dir/samples/``; mirrors them to W&B when the backend is
    ``"wandb"`` and the resolved mode (see :func:`resolve_wandb_mode`) is not ``"disabled"``. With
    ``enabled=False`` (every rank but 0) each method is a no-op and nothing is written or imported.

    The W&B run config is ``{**axes, "cfg": config}`` (both redacted), so the axes (task, method, model,
    reward, budget, seed) are top-level keys that dashboards filter and group by, and the full config sits
    under ``cfg``. Usable as a context manager, which finishes the run (marked failed on an exception).

    Args:
        run_dir: The run's output folder; created if missing.
        enabled: False on non-zero ranks.
        backend: ``"wandb"`` or ``"none"``.
        project: W&B project.
        name: W&B run name.
        mode: ``"auto"``, ``"online"``, ``"offline"`` or ``"disabled"``.
        config: The full resolved run config (plain dicts).
        axes: The experiment axes, e.g. ``{"task": "sat", "method": "grpo", ..., "seed": 0}``.
        entity: W&B entity (team or user); None for the default.
        group: W&B group; runs of one sweep share it.
        tags: W&B tags.

    Raises:
        ValueError: For an unknown backend or mode, or an axis named ``cfg``.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        backend: str,
        project: str,
        name: str,
        mode: str,
        config: Mapping[str, Any],
        axes: Mapping[str, object],
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
    ) -> None:
        if backend not in TRACKER_BACKENDS:
            raise ValueError(f"tracker backend {backend!r} is unknown; use one of {TRACKER_BACKENDS}")
        if "cfg" in axes:
            raise ValueError(
                "an axis is named 'cfg', which collides with the full config key; rename the axis"
            )
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._run: Any = None
        self._wandb: Any = None
        self._wandb_dir: Path | None = None
        if not enabled:
            return
        wandb_mode = resolve_wandb_mode(mode) if backend == "wandb" else "disabled"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path.touch()
        if wandb_mode == "disabled":
            return

        import wandb  # imported only here: backend "none" and mode "disabled" must work without it

        self._wandb = wandb
        self._run = wandb.init(
            dir=str(self.run_dir),
            project=project,
            entity=entity,
            group=group,
            name=name,
            tags=list(tags),
            config=redact({**axes, "cfg": dict(config)}),
            mode=wandb_mode,
            reinit="finish_previous",
        )
        self._wandb_dir = Path(self._run.settings.sync_dir)
        if wandb_mode == "offline":
            log.info("W&B is offline; upload later with: wandb sync %s", self.wandb_dir)

    @property
    def metrics_path(self) -> Path:
        """``run_dir/metrics.jsonl``."""
        return self.run_dir / "metrics.jsonl"

    @property
    def wandb_dir(self) -> Path | None:
        """The W&B run folder (``run_dir/wandb/offline-run-*`` or ``run-*``), kept after :meth:`finish`.

        None when W&B is not used (backend ``"none"``, mode ``"disabled"`` or ``enabled=False``).
        """
        return self._wandb_dir

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append ``{"step": step, **metrics}`` to metrics.jsonl (flushed) and log ``metrics`` to W&B.

        Keys are ``section/name`` (``train/loss``, ``timing/rollout_s``). Non-finite values are written to
        the file as ``"nan"``, ``"inf"``, ``"-inf"``; W&B gets the floats. 0-d tensors are converted with
        ``.item()``. W&B drops steps lower than one already logged, so log in step order.

        Raises:
            ValueError: If ``metrics`` has a key ``"step"``.
        """
        if not self.enabled:
            return
        if "step" in metrics:
            raise ValueError("metrics must not contain the key 'step'; pass the step as the first argument")
        values = {key: _scalar(value) for key, value in metrics.items()}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(_dumps({"step": step, **values}) + "\n")
            f.flush()
        if self._run is not None:
            self._run.log(values, step=step)

    def log_samples(self, step: int, rows: list[dict[str, Any]], images: list[Any] | None = None) -> None:
        """Write one JSON line per completion to ``samples/step_{step:06d}.jsonl`` and a W&B table.

        Rows are redacted and written with whatever keys they have (prompt, completion, reward terms,
        advantage...). Images never go into the jsonl. With W&B active the rows are also logged as the
        table ``"completions"`` whose columns are the union of the row keys (first-seen order) plus
        ``"image"`` when images are given; list and dict cells are JSON strings.

        Args:
            step: Training step.
            rows: One dict per completion.
            images: PIL images, one per row (the same image may repeat across a prompt's group; None for a
                row without one).

        Raises:
            ValueError: If ``images`` is given with a length other than ``len(rows)``.
        """
        if not self.enabled:
            return
        if images is not None and len(images) != len(rows):
            raise ValueError(f"log_samples got {len(images)} images for {len(rows)} rows; pass one per row")
        rows = redact(rows)
        text = "".join(_dumps(row) + "\n" for row in rows)
        atomic_write_text(self.run_dir / "samples" / f"step_{step:06d}.jsonl", text)
        if self._run is None or not rows:
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        data = [[_table_cell(row.get(key)) for key in columns] for row in rows]
        if images is not None:
            wandb_images: dict[int, Any] = {}  # one wandb.Image per distinct image: a group shares one PNG
            for cells, image in zip(data, images, strict=True):
                if id(image) not in wandb_images:
                    wandb_images[id(image)] = None if image is None else self._wandb.Image(image)
                cells.append(wandb_images[id(image)])
            columns.append("image")
        table = self._wandb.Table(columns=columns, data=data, allow_mixed_types=True)
        self._run.log({"completions": table}, step=step)

    def summary(self, results: Mapping[str, Any]) -> None:
        """Set W&B run summary keys from ``results``, flattened with ``/`` and redacted; no-op without W&B."""
        if not self.enabled or self._run is None:
            return
        for key, value in flatten(redact(dict(results))).items():
            self._run.summary[key] = _scalar(value)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the W&B run if one is active and wait until W&B has written it out; later calls do nothing.

        In wandb 0.31 ``run.finish()`` can return before the offline log ``run-<id>.wandb`` is flushed (it
        sometimes holds only its 7-byte header for a few milliseconds after), so ``wandb sync`` or a copy
        made right away could miss data. ``wandb.teardown()`` waits for the W&B service to drain and stop;
        the next run starts a fresh one (about 0.5 s). It also finishes any other W&B run in this process.

        Args:
            exit_code: Non-zero marks the W&B run as failed.
        """
        if self._run is not None:
            run, self._run = self._run, None
            run.finish(exit_code=exit_code)
            self._wandb.teardown(exit_code=exit_code)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


def _scalar(value: Any) -> Any:
    """A Python number from a 0-d tensor or numpy scalar; other values unchanged."""
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        with contextlib.suppress(TypeError, ValueError, RuntimeError):
            return value.item()
    return value


def _table_cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return _dumps(value)
    return _scalar(value)


# ---------------------------------------------------------------------------------------------------------
# Timing and provenance
# ---------------------------------------------------------------------------------------------------------


class PhaseTimer:
    """Wall-clock seconds per named phase, accumulated until :meth:`pop`.

    ``with timer.phase("rollout"): ...`` adds the elapsed ``time.perf_counter`` seconds to ``"rollout"``;
    entering the same phase again adds to it. Nested phases both count, so an outer phase includes its inner
    ones.

    Args:
        sync: Called before reading the clock at both ends of a phase, e.g. ``torch.cuda.synchronize``, so
            that asynchronous GPU work is charged to the phase that launched it. None on CPU.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body of the ``with`` block under ``name``."""
        if self._sync is not None:
            self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._sync is not None:
                self._sync()
            self._seconds[name] = self._seconds.get(name, 0.0) + time.perf_counter() - start

    def pop(self) -> dict[str, float]:
        """``{"timing/<phase>_s": seconds}`` for every phase since the last pop, then reset."""
        timings = {f"timing/{name}_s": seconds for name, seconds in self._seconds.items()}
        self._seconds = {}
        return timings


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results (``"absent"`` when not installed)."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def git_commit(repo_dir: Path) -> str:
    """``HEAD`` of the git repository holding ``repo_dir``, with ``-dirty`` if it has uncommitted changes.

    Untracked files count as changes (``git status --porcelain`` is non-empty). Returns ``"unknown"`` when
    ``repo_dir`` is not in a repository, git is missing or fails; never raises.
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
