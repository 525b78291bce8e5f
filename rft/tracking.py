"""Experiment tracking: the `Tracker` that training and evaluation log through, and the `PhaseTimer`.

Every run writes the same local files whether or not W&B is used (the output contract):

- `metrics.jsonl`: one JSON object per `Tracker.log` call, `{"step": 3, "train/loss": 0.41, ...}`; non-finite
  floats are written as `"nan"`, `"inf"`, `"-inf"` (`rft.files`), so every line stays valid JSON.
- `samples/step_000003.jsonl`: one JSON object per completion (prompt, completion, reward terms, advantage...).

W&B rides on top of these files and is never required: backend `"none"` and mode `"disabled"` never import
wandb; `resolve_wandb_mode` picks online or offline without network access. Offline, wandb 0.31 writes
`<run_dir>/wandb/offline-run-<time>-<id>/` (`run-<id>.wandb` for `wandb sync`, and `files/`); a `wandb.Table`
is also staged as a `run_table` artifact under `$WANDB_DATA_DIR/artifacts/staging`, outside the run folder.
Everything is passed through `rft.redaction.redact` first, so secrets never reach W&B or the run folder.
"""

from __future__ import annotations

import contextlib
import logging
import netrc
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

from rft.files import atomic_write_text, dumps
from rft.redaction import redact

log = logging.getLogger(__name__)

TRACKER_BACKENDS = ("wandb", "none")
TRACKER_MODES = ("auto", "online", "offline", "disabled")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with `/`-joined keys: `{"eval": {"acc": 1}}` -> `{"eval/acc": 1}`."""
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
    """The W&B mode a `Tracker` will use: `"online"`, `"offline"` or `"disabled"`.

    `"auto"` follows `WANDB_MODE` when it is set (`dryrun` counts as offline, `run` as online);
    otherwise it is online when W&B credentials are configured and offline when they are not. Credentials
    are looked for without any network access or prompt: `WANDB_API_KEY` or `WANDB_IDENTITY_TOKEN_FILE`
    in the environment, or an entry for the W&B host (`WANDB_BASE_URL`, default `api.wandb.ai`) in the
    netrc file (`NETRC`, else `~/.netrc`), which is where `wandb login` stores the key.

    Args:
        mode: One of `"auto"`, `"online"`, `"offline"`, `"disabled"`.

    Raises:
        ValueError: For an unknown mode or an unknown `WANDB_MODE` value.
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
    return "online" if wandb_credentials_configured() else "offline"


def wandb_credentials_configured() -> bool:
    """Whether W&B could log in without a prompt: an API key or identity token in the environment, or a netrc
    entry for the W&B host (where `wandb login` stores the key). Reads no network."""
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

    Always writes `run_dir/metrics.jsonl` and `run_dir/samples/`; mirrors them to W&B when the backend is
    `"wandb"` and the resolved mode (see `resolve_wandb_mode`) is not `"disabled"`. With
    `enabled=False` (every rank but 0) each method is a no-op and nothing is written or imported.

    The W&B run config is `{**axes, "cfg": config}` (both redacted), so the axes (task, method, model,
    reward, budget, seed) are top-level keys that dashboards filter and group by, and the full config sits
    under `cfg`. Usable as a context manager, which finishes the run (marked failed on an exception).

    Args:
        run_dir: The run's output folder; created if missing.
        enabled: False on non-zero ranks.
        backend: `"wandb"` or `"none"`.
        project: W&B project.
        name: W&B run name.
        mode: `"auto"`, `"online"`, `"offline"` or `"disabled"`.
        config: The full resolved run config (plain dicts).
        axes: The experiment axes, e.g. `{"task": "sat", "method": "grpo", ..., "seed": 0}`.
        entity: W&B entity (team or user); None for the default.
        group: W&B group; runs of one sweep share it.
        tags: W&B tags.

    Raises:
        ValueError: For an unknown backend or mode, or an axis named `cfg`.
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
        """`run_dir/metrics.jsonl`."""
        return self.run_dir / "metrics.jsonl"

    @property
    def wandb_dir(self) -> Path | None:
        """The W&B run folder (`run_dir/wandb/offline-run-*` or `run-*`), kept after `finish`.

        None when W&B is not used (backend `"none"`, mode `"disabled"` or `enabled=False`).
        """
        return self._wandb_dir

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append `{"step": step, **metrics}` to metrics.jsonl (flushed) and log `metrics` to W&B.

        Keys are `section/name` (`train/loss`, `timing/rollout_s`). Non-finite values are written to
        the file as `"nan"`, `"inf"`, `"-inf"`; W&B gets the floats. 0-d tensors are converted with
        `.item()`. W&B drops steps lower than one already logged, so log in step order.

        Raises:
            ValueError: If `metrics` has a key `"step"`.
        """
        if not self.enabled:
            return
        if "step" in metrics:
            raise ValueError("metrics must not contain the key 'step'; pass the step as the first argument")
        values = {key: _scalar(value) for key, value in metrics.items()}
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(dumps({"step": step, **values}) + "\n")
            f.flush()
        if self._run is not None:
            self._run.log(values, step=step)

    def log_samples(self, step: int, rows: list[dict[str, Any]], images: list[Any] | None = None) -> None:
        """Write one JSON line per completion to `samples/step_{step:06d}.jsonl` and a W&B table.

        Rows are redacted and written with whatever keys they have (prompt, completion, reward terms,
        advantage...). Images never go into the jsonl. With W&B active the rows are also logged as the
        table `"completions"` whose columns are the union of the row keys (first-seen order) plus
        `"image"` when images are given; list and dict cells are JSON strings.

        Args:
            step: Training step.
            rows: One dict per completion.
            images: PIL images, one per row (the same image may repeat across a prompt's group; None for a
                row without one).

        Raises:
            ValueError: If `images` is given with a length other than `len(rows)`.
        """
        if not self.enabled:
            return
        if images is not None and len(images) != len(rows):
            raise ValueError(f"log_samples got {len(images)} images for {len(rows)} rows; pass one per row")
        rows = redact(rows)
        text = "".join(dumps(row) + "\n" for row in rows)
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
        """Set W&B run summary keys from `results`, flattened with `/` and redacted; no-op without W&B."""
        if not self.enabled or self._run is None:
            return
        for key, value in flatten(redact(dict(results))).items():
            self._run.summary[key] = _scalar(value)

    def finish(self, exit_code: int = 0) -> None:
        """Finish the W&B run if one is active and wait until W&B has written it out; later calls do nothing.

        In wandb 0.31 `run.finish()` can return before the offline log `run-<id>.wandb` is flushed (it
        sometimes holds only its 7-byte header for a few milliseconds after), so `wandb sync` or a copy
        made right away could miss data. `wandb.teardown()` waits for the W&B service to drain and stop;
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
        return dumps(value)
    return _scalar(value)


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------


class PhaseTimer:
    """Wall-clock seconds per named phase, accumulated until `pop`.

    `with timer.phase("rollout"): ...` adds the elapsed `time.perf_counter` seconds to `"rollout"`;
    entering the same phase again adds to it. Nested phases both count, so an outer phase includes its inner
    ones.

    Args:
        sync: Called before reading the clock at both ends of a phase, e.g. `torch.cuda.synchronize`, so
            that asynchronous GPU work is charged to the phase that launched it. None on CPU.
    """

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        self._seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the body of the `with` block under `name`."""
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
        """`{"timing/<phase>_s": seconds}` for every phase since the last pop, then reset."""
        timings = {f"timing/{name}_s": seconds for name, seconds in self._seconds.items()}
        self._seconds = {}
        return timings


def peak_memory(device) -> dict[str, float]:
    """`perf/peak_mem_gb`: the most GPU memory allocated on `device` since the run started; {} on a CPU."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return {}
    return {"perf/peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30}


def device_sync(device) -> Callable[[], None] | None:
    """What a `PhaseTimer` calls at phase boundaries on `device`: `torch.cuda.synchronize` on a GPU, else None."""
    import torch

    device = torch.device(device)
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
