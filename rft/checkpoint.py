"""Checkpoints, exact resume, and the SIGTERM/SIGINT stop request.

One checkpoint is one folder, `run_dir/checkpoints/step_NNNNNN/`: the policy (`save_pretrained`; only the
adapter with LoRA), `engine/` (optimizer and LR schedule), `trainer_state.pt` (step, data position), `rng/`
(every RNG, per rank) and `meta.json` (step, time, config hash, the size of every file), written last as the
completion marker. Writes are atomic (a `.tmp-<pid>` folder renamed once complete), so a kill leaves the old
checkpoints or the new one, never half a folder; the next save removes the `.tmp-<pid>` folders of dead processes.
A checkpoint damaged later (a file deleted or truncated, meta.json emptied) fails `damage` and is skipped, so
`resume=auto` falls back to the newest intact one. A checkpoint holds everything the next step reads, so a resumed run is bit-identical to an
uninterrupted one on CPU (tests/test_resume.py). `StopRequest.deferred()` turns the first SIGTERM/SIGINT during
training into a checkpoint at the end of the step and `Interrupted`; a second signal stops at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import torch

from rft.config import CheckpointConfig, ConfigError, RunConfig
from rft.engine import TorchEngine
from rft.files import atomic_write_json, atomic_write_text, fsync_path

log = logging.getLogger(__name__)

STEP_DIR = re.compile(r"^step_(\d{6,})$")
MARKER = "meta.json"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read; the message names the folder and the fix."""


class Interrupted(Exception):
    """The run was stopped by a signal; its last checkpoint is complete. `exit_code` is 128 + the signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


# ---------------------------------------------------------------------------------------------------------------
# Finding checkpoints
# ---------------------------------------------------------------------------------------------------------------


# The config groups that shape what a run trains; logging, paths, threads and the launcher do not.
RUN_DEFINING = ("task", "method", "model", "reward", "budget", "seed")


def config_hash(cfg: RunConfig) -> str:
    """A short hash of what shapes training: the task, method, model, reward and budget settings and the seed."""
    tree = {key: value for key, value in dataclasses.asdict(cfg).items() if key in RUN_DEFINING}
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_run(path: Path, cfg: RunConfig) -> None:
    """Refuse to resume from a checkpoint written under other training settings, unless the config allows it.

    Raises:
        ConfigError: the hashes differ and `resume_allow_changes` is false; the message names both fixes.
    """
    saved = read_meta(path).get("config_hash")
    now = config_hash(cfg)
    if saved and saved != now and not cfg.resume_allow_changes:
        raise ConfigError(
            f"resume: {path} was written by a run with other task/method/model/reward/budget/seed settings "
            f"(config hash {saved}, this command {now}); a resume continues the same run. Pass "
            "resume_allow_changes=true to continue it under the new settings (e.g. more method.steps), or give "
            "this run its own folder (hydra.run.dir=...) with resume=none"
        )


# Checkpoints written before meta.json listed its files: these must be there and non-empty.
LEGACY_REQUIRED = ("trainer_state.pt",)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")


def is_complete(path: Path) -> bool:
    """A `step_NNNNNN` folder with its completion marker (it may still be damaged: see `damage`)."""
    return bool(STEP_DIR.match(path.name)) and (path / MARKER).is_file()


def damage(path: Path) -> str | None:
    """Why the complete-looking checkpoint `path` cannot be restored, or None when it is intact.

    Checks that meta.json is a JSON object with a step, and that every file it lists has its recorded size
    (checkpoints from before the list: that trainer_state.pt, a weights file and the RNG states are there and
    non-empty). It reads no tensors, so a file of the right size with corrupt bytes passes; `restore` then
    fails with a `CheckpointError`.
    """
    try:
        meta = read_meta(path)
    except FileNotFoundError:
        return f"it has no {MARKER} (unfinished)"
    except (OSError, ValueError) as err:
        return f"its {MARKER} is unreadable or not JSON ({err})"
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        return f"its {MARKER} has no step"
    files = meta.get("files")
    if isinstance(files, dict):
        expected = files.items()
    else:
        present = [name for name in WEIGHT_FILES if (path / name).is_file()]
        if not present:
            return f"it has no weights ({' or '.join(WEIGHT_FILES)})"
        rng = sorted(str(p.relative_to(path)) for p in (path / "rng").glob("rank_*.pt"))
        if not rng:
            return "it has no rng/rank_*.pt"
        expected = [(name, None) for name in (*LEGACY_REQUIRED, *present, *rng)]
    for name, size in expected:
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        actual = file.stat().st_size
        if (size is None and actual == 0) or (size is not None and actual != size):
            return f"{name} is truncated ({actual} bytes, {'non-empty' if size is None else size} expected)"
    return None


def complete_checkpoints(root: Path) -> list[Path]:
    """Intact checkpoint folders under `root`, oldest step first.

    Unfinished `.tmp-*` folders, folders without meta.json and damaged ones (`damage`) are left out.
    """
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and is_complete(p) and damage(p) is None]
    return sorted(found, key=lambda p: int(STEP_DIR.match(p.name).group(1)))


def damaged_checkpoints(root: Path) -> dict[Path, str]:
    """The folders under `root` that have meta.json but fail `damage`, each with the reason."""
    if not root.is_dir():
        return {}
    found = {p: damage(p) for p in root.iterdir() if p.is_dir() and is_complete(p)}
    return {p: why for p, why in sorted(found.items()) if why is not None}


def latest(root: Path) -> Path | None:
    """The newest intact checkpoint under `root`, or None."""
    found = complete_checkpoints(root)
    return found[-1] if found else None


def read_meta(path: Path) -> dict:
    return json.loads((path / MARKER).read_text())


def remove_unfinished(root: Path, keep_pid: int | None = None) -> list[Path]:
    """Delete the `step_N.tmp-<pid>` folders that processes killed mid-checkpoint left under `root`.

    A folder whose pid is `keep_pid` or belongs to a live process on this machine is kept. Returns the removed ones.
    """
    removed = []
    for tmp in root.glob("step_*.tmp-*") if root.is_dir() else []:
        pid = tmp.name.rsplit(".tmp-", 1)[1]
        if not pid.isdigit() or int(pid) == keep_pid or _alive(int(pid)):
            continue
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
        log.info("removed %s, left by a process killed while writing a checkpoint", tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def resolve_resume(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint to resume from, or None to start fresh.

    Args:
        resume: "none"; "auto" (the newest complete checkpoint of `run_dir`, None if it has none); or a path to
            a checkpoint folder, to a `checkpoints/` folder, or to a run directory (its newest checkpoint).

    Raises:
        ConfigError: a path that holds no complete checkpoint.
    """
    if resume == "none":
        return None
    if resume == "auto":
        root = run_dir / "checkpoints"
        found, broken = latest(root), damaged_checkpoints(root)
        newer = {p: why for p, why in broken.items() if found is None or _step(p) > _step(found)}
        for p, why in newer.items():
            log.warning("resume=auto: skipping the damaged checkpoint %s (%s)", p, why)
        if found is None and broken:
            raise ConfigError(
                f"resume=auto: every checkpoint in {root} is damaged ("
                + "; ".join(f"{p.name}: {why}" for p, why in broken.items())
                + "). Pass resume=none with a new run directory to start over"
            )
        if found is None:
            log.info("resume=auto: no complete checkpoint in %s; starting from step 0", root)
        elif newer:
            log.warning("resume=auto: continuing from %s, the newest intact checkpoint", found)
        return found
    path = Path(resume).expanduser()
    if is_complete(path):
        if (why := damage(path)) is not None:
            older = latest(path.parent)
            raise ConfigError(
                f"resume={resume!r} is damaged: {why}. "
                + (
                    f"Pass resume={older} (the newest intact checkpoint beside it)"
                    if older
                    else "Pass resume=none"
                )
            )
        return path
    for root in (path / "checkpoints", path):
        if (found := latest(root)) is not None:
            return found
    raise ConfigError(
        f"resume={resume!r} holds no complete checkpoint (a step_NNNNNN folder with {MARKER}); pass a "
        "run_dir/checkpoints/step_NNNNNN folder, a run directory, resume=auto (this run directory) or resume=none"
    )


def _step(path: Path) -> int:
    return int(STEP_DIR.match(path.name).group(1))


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines logged after `step`, so a resumed run does not log those steps twice.

    A line that is not a JSON object (torn by a kill mid-write) is dropped with a warning.
    """
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line) if line.strip() else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if line.strip():
                log.warning("%s:%d is not a JSON object (torn by a kill mid-write?); dropped", path, number)
            continue
        if record.get("step", 0) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    if kept != lines:
        atomic_write_text(path, "".join(kept))


# ---------------------------------------------------------------------------------------------------------------
# RNG and model state
# ---------------------------------------------------------------------------------------------------------------


def rng_state() -> dict:
    """Every RNG the loops draw from, as tensors and plain containers (loadable with weights_only=True)."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # this rank's current device
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_weights(module: torch.nn.Module, path: Path) -> None:
    """`save_pretrained` as safetensors: the full model, or only the adapter of a PeftModel."""
    module.save_pretrained(path, safe_serialization=True)


def load_weights(module: torch.nn.Module, path: Path) -> None:
    """Load weights written by `save_weights` into `module` in place (bit-exact).

    The full model goes through `from_pretrained` into a temporary copy, because transformers writes some
    architectures (Qwen2-VL) under legacy key names and maps them back only when loading.
    """
    adapter = path / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(module, load_file(adapter))
        return
    dtype = next(module.parameters()).dtype
    saved = type(module).from_pretrained(path, dtype=dtype, use_safetensors=True)
    module.load_state_dict(saved.state_dict())
    del saved


# ---------------------------------------------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------------------------------------------


class StopRequest:
    """SIGTERM (SLURM preemption, `kill`) and SIGINT (Ctrl-C) as a request to stop cleanly.

    Inside `deferred()` the first signal only records itself; the loop checks `signum` at the end of each step.
    Outside it, or on a second signal, the handler raises `Interrupted` at once.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._deferring = False
        self._previous: dict = {}

    def install(self) -> None:
        """Install the handlers (only possible in the main thread; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

    def uninstall(self) -> None:
        """Put back the handlers that were there before `install`."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    @contextlib.contextmanager
    def deferred(self):
        self._deferring = True
        try:
            yield self
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self._deferring and self.signum is None:
            self.signum = signum
            log.warning(
                "%s received: finishing this step, saving a checkpoint, then exiting (send it again to stop at once)",
                name,
            )
            return
        raise Interrupted(signum, f"stopped by {name} before the end of a training step")


# ---------------------------------------------------------------------------------------------------------------
# The checkpointer the loops call
# ---------------------------------------------------------------------------------------------------------------


def _dist():
    import torch.distributed as dist

    return dist if dist.is_initialized() and dist.get_world_size() > 1 else None


def _barrier() -> None:
    if (dist := _dist()) is not None:
        dist.barrier()


def _any_rank(flag: bool) -> bool:
    """True if `flag` is set on any rank (signals reach ranks at slightly different times)."""
    if (dist := _dist()) is None:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _shared_pid() -> int:
    """Rank 0's pid, on every rank: all ranks write into the same temporary folder."""
    if (dist := _dist()) is None:
        return os.getpid()
    box = [os.getpid()]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [root]:
        fsync_path(path)


@contextlib.contextmanager
def _whole_weights(engine):
    """ZeRO-3 keeps parameter shards; gather them so rank 0 can save the whole model."""
    if getattr(engine, "stage", 0) == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(engine.module.parameters()), modifier_rank=None):
            yield
    else:
        yield


class Checkpointer:
    """Saves the complete training state every `cfg.every` steps, after the last step and on a stop request.

    Args:
        root: `run_dir/checkpoints`; None turns checkpointing off (loop tests that drive a loop directly).
        cfg: every / keep_last.
        config_hash: Stored in meta.json; a resume under a different hash is logged as a warning.
        resume_from: A complete checkpoint folder to restore before the first step, or None.
        stop: The StopRequest whose signal the loop honours at step ends.
        processor: Saved into every checkpoint beside the weights (tokenizer and image-processor files, a few
            hundred KB), so `model.path=<checkpoint>` loads like any `save_pretrained` folder.
    """

    def __init__(
        self,
        root: Path | None,
        cfg: CheckpointConfig | None = None,
        *,
        config_hash: str = "",
        resume_from: Path | None = None,
        stop: StopRequest | None = None,
        processor=None,
    ):
        self.root = root
        self.processor = processor
        self.cfg = cfg or CheckpointConfig()
        self.config_hash = config_hash
        self.resume_from = resume_from
        self.stop = stop or StopRequest()

    @classmethod
    def off(cls) -> Checkpointer:
        return cls(None)

    def restore(self, engine, stream) -> tuple[int, dict[str, float]]:
        """Load `resume_from` into the engine (model, optimizer, scheduler), the stream and every RNG.

        Returns:
            (the step the checkpoint was taken after, 0 for a fresh start; the loop's saved summary).
        """
        path = self.resume_from
        if path is None:
            return 0, {}
        try:
            return self._restore(path, engine, stream)
        except CheckpointError:
            raise
        except Exception as err:  # torch, safetensors and json raise their own types for a damaged file
            older = [p for p in complete_checkpoints(path.parent) if _step(p) < _step(path)]
            fallback = (
                f"rerun with resume=auto to continue from {older[-1]}"
                if older
                else "rerun with resume=none in a new run directory to start over"
            )
            raise CheckpointError(
                f"could not restore the checkpoint {path}: {type(err).__name__}: {err}. It is damaged; move it "
                f"aside (mv {path} {path}.damaged) and {fallback}"
            ) from err

    def _restore(self, path: Path, engine, stream) -> tuple[int, dict[str, float]]:
        meta = read_meta(path)
        if self.config_hash and meta.get("config_hash") != self.config_hash:
            log.warning(
                "resuming from %s, written under a different config (hash %s, now %s): the run is not a clean "
                "continuation",
                path,
                meta.get("config_hash"),
                self.config_hash,
            )
        if isinstance(engine, TorchEngine):  # DeepSpeed's load_checkpoint restores the module itself
            load_weights(engine.module, path)
        engine.load_state(path / "engine")
        state = torch.load(path / "trainer_state.pt", weights_only=True)
        stream.load_state(state["stream"])
        rng = path / "rng" / f"rank_{engine.rank:05d}.pt"
        if not rng.is_file():
            raise CheckpointError(
                f"{path} has no RNG state for rank {engine.rank}; resume with the same world size"
            )
        set_rng_state(torch.load(rng, weights_only=True))
        log.info("resumed from %s (after step %d)", path, state["step"])
        return int(state["step"]), dict(state["summary"])

    def end_of_step(self, step: int, last_step: int, engine, stream, summary: dict[str, float]) -> None:
        """Save when due (every N steps, the last step, a stop request); after a stop request raise Interrupted.

        Args:
            summary: Plain floats the loop returns at the end (restored by `restore`, so a run resumed after its
                last step reports the same numbers).
        """
        stop = _any_rank(self.stop.signum is not None)
        if self.root is None:
            if stop:
                raise Interrupted(
                    self.stop.signum or signal.SIGTERM, f"stopped after step {step} (checkpoints off)"
                )
            return
        if stop or step == last_step or (self.cfg.every > 0 and step % self.cfg.every == 0):
            path = self.save(step, engine, stream, summary)
            if stop:
                signum = self.stop.signum or signal.SIGTERM
                raise Interrupted(
                    signum,
                    f"stopped by {signal.Signals(signum).name} after step {step} of {last_step}; checkpoint {path} "
                    f"is complete. Continue with: hydra.run.dir={path.parents[1]} resume=auto",
                )

    def save(self, step: int, engine, stream, summary: dict[str, float]) -> Path:
        """Write a complete checkpoint for `step` atomically and prune old ones. Returns its folder.

        Raises:
            CheckpointError: the write failed (a full disk...); the previous checkpoints are untouched.
        """
        assert self.root is not None
        final = self.root / f"step_{step:06d}"
        tmp = self.root / f"{final.name}.tmp-{_shared_pid()}"
        is_main = engine.is_main
        t0 = time.perf_counter()
        try:
            if is_main:
                remove_unfinished(self.root, keep_pid=int(tmp.name.rsplit(".tmp-", 1)[1]))
                shutil.rmtree(tmp, ignore_errors=True)
                (tmp / "rng").mkdir(parents=True)
            _barrier()
            engine.save_state(tmp / "engine")
            torch.save(rng_state(), tmp / "rng" / f"rank_{engine.rank:05d}.pt")
            with _whole_weights(engine):
                if is_main:
                    save_weights(engine.module, tmp)
            if is_main and self.processor is not None:
                self.processor.save_pretrained(tmp)
            if is_main:
                torch.save(
                    {"step": step, "stream": stream.state(), "summary": dict(summary)},
                    tmp / "trainer_state.pt",
                )
            _barrier()
            if is_main:
                _fsync_tree(tmp)
                files = {
                    str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()
                }
                meta = {"step": step, "time": time.time(), "config_hash": self.config_hash, "files": files}
                atomic_write_json(tmp / MARKER, meta)
                if final.exists():  # the same step saved again (a run resumed after its last step)
                    shutil.rmtree(final)
                os.rename(tmp, final)
                _fsync_tree(self.root)
        except OSError as err:
            if is_main:
                shutil.rmtree(tmp, ignore_errors=True)
            previous = latest(self.root)
            kept = (
                f"the previous checkpoint {previous} is intact"
                if previous
                else "no earlier checkpoint exists"
            )
            raise CheckpointError(
                f"could not write the checkpoint for step {step} to {final}: {err.strerror or err}. {kept}. "
                "Free disk space (or lower checkpoint.keep_last / raise checkpoint.every) and rerun with "
                "resume=auto in the same run directory"
            ) from err
        if is_main:
            for old in complete_checkpoints(self.root)[: -self.cfg.keep_last]:
                shutil.rmtree(old, ignore_errors=True)
            log.info("checkpoint %s saved in %.1fs", final, time.perf_counter() - t0)
        _barrier()
        return final
