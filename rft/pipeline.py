"""One run, end to end: validate -> data and budget -> model -> train (GRPO or SFT) -> evaluate -> results.

Everything that can reject bad input (config rules, the task's data, the budget, the model's location and
architecture) runs before any training compute starts and writes no result row. Once training starts, a failure
is recorded as a row with status `failed` and the error, then re-raised.

Output contract of a run directory (Hydra adds `.hydra/` and `run.log`):
    metrics.jsonl, samples/step_*.jsonl, checkpoints/step_*/, eval_predictions.jsonl, results.json,
    config.yaml (resolved)
plus one row appended to the shared results CSV.

Resume (rft.checkpoint): `resume=auto` continues from the newest complete checkpoint of `run_dir` and skips a run
whose results.json says finished; SIGTERM/SIGINT during training save a checkpoint at the end of the step and
leave a row with status `interrupted`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock, Timeout
from tqdm.contrib.logging import logging_redirect_tqdm

from rft import checkpoint, distributed, evaluate, grpo, models, schedule, sft, testbed
from rft.config import ConfigError, RFTConfig, RunConfig, SFTConfig, validate
from rft.data.budget import apply_budget
from rft.data.images import verify_images
from rft.data.registry import build_task
from rft.engine import zero3_loading
from rft.files import atomic_write_text
from rft.memory import estimate, format_estimate
from rft.redaction import redact
from rft.results import ResultRow, axes, git_commit, package_versions, record_result
from rft.rollout import check_prompt_lengths
from rft.tracking import Tracker

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_dir(cfg: RunConfig) -> str:
    """The folder (or, online, hub id) the policy loads from; a cold built-in model is built here, by rank 0.

    `tiny_base` is built by its pretraining (`rft.testbed`); the other built-in presets by `rft.tiny`; hub
    downloads have their own file locks. A build seeds and draws from the global RNGs; they are put back after
    it, so a run draws the same numbers whether its model was cached or built (tests/test_faults.py).
    """
    rng = checkpoint.rng_state()
    try:
        with distributed.rank0_first():
            if cfg.model.builtin and cfg.model.path is None and cfg.model.id == "tiny_base":
                return str(testbed.build_tiny_base(Path(cfg.model.cache_dir).expanduser(), cfg.model.seed))
            return models.resolve_model_dir(cfg.model)
    finally:
        checkpoint.set_rng_state(rng)


def claim_run_dir(run_dir: Path) -> FileLock:
    """Hold `run_dir/.run.lock` for the run: a run folder belongs to one run at a time.

    Raises:
        ConfigError: another process holds it.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / ".run.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"{run_dir} is in use by another run (its lock {run_dir / '.run.lock'} is held); give this run its own "
            "folder (hydra.run.dir=...), or wait for the other one to finish"
        ) from None
    return lock


def is_zero3_training(cfg: RunConfig) -> bool:
    return cfg.dist.backend == "deepspeed" and cfg.dist.zero_stage == 3 and cfg.method.name != "zeroshot"


def sharded_reference(cfg: RunConfig, folder: str) -> torch.nn.Module | None:
    """Under ZeRO-3 with beta > 0 (and no LoRA), the reference policy loaded partitioned like the policy.

    Elsewhere None: the GRPO loop copies the policy (a full copy fits where the policy does), LoRA's reference
    is the policy with its adapter off, and beta = 0 needs none.
    """
    m = cfg.method
    if not (
        is_zero3_training(cfg) and isinstance(m, RFTConfig) and m.beta > 0 and not cfg.model.lora.enabled
    ):
        return None
    plain = dataclasses.replace(cfg.model, gradient_checkpointing=False, freeze_vision=False)
    ref, _ = models.load_model(plain, folder)
    return ref.eval().requires_grad_(False)


@contextlib.contextmanager
def whole_weights(cfg: RunConfig, model):
    """The model's whole weights on every rank for a forward outside the engine (ZeRO-3: gathered)."""
    if not is_zero3_training(cfg):
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        yield


def memory_estimate(cfg: RunConfig, model, world: int) -> str:
    """The one log line of `rft.memory.estimate` for this run: weights, gradients, optimizer, reference, logits."""
    base = models.unwrap(model)
    params = list(model.parameters())
    numel = [distributed.full_numel(p) for p in params]  # ZeRO-3 shards count at their full size
    return format_estimate(
        estimate(
            sum(numel),
            sum(n for n, p in zip(numel, params, strict=True) if p.requires_grad),
            cfg,
            text_config=base.config.get_text_config(),
            world_size=world,
            param_bytes=next(base.parameters()).element_size(),
        )
    )


def warn_if_large_on_cpu(model, device: torch.device) -> None:
    """A model of 1B+ parameters on the CPU is almost always a missing GPU, not a choice: say so loudly."""
    params = sum(distributed.full_numel(p) for p in model.parameters())
    if device.type == "cpu" and params >= 1e9:
        log.warning(
            "!!! %.1fB-parameter model on the CPU: training will take days. CUDA is %s. Pass device=cuda to fail "
            "at start when no GPU is usable. !!!",
            params / 1e9,
            "available but not chosen"
            if torch.cuda.is_available()
            else f"not available ({distributed.cuda_unavailable_reason()})",
        )


def finished_row(run_dir: Path) -> ResultRow | None:
    """The row of a finished run in `run_dir` (its results.json with status finished), else None."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    row = ResultRow.from_record(record)
    # a finished run whose row never reached the table is not done: the entrypoint appends the missing row
    return row if row.status == "finished" and record.get("row_written") is not False else None


def check_writable(*folders: Path) -> None:
    """Fail before the model loads if an output folder cannot be created or written (read-only, full, a file).

    Raises:
        ConfigError: naming the folder, the OS reason and the setting that moves it.
    """
    for folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                pass
        except OSError as err:
            raise ConfigError(
                f"cannot write to {folder}: {err.strerror or err}. Choose a writable location: "
                "hydra.run.dir=... / hydra.sweep.dir=... for the run folder, results_csv=... for the results table"
            ) from err


def write_predictions(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def selection_set(samples: list, limit: int) -> list:
    """The questions a schedule grid is scored on for choosing a length: the split in a fixed seeded order
    (the same for every run, whatever its seed), its first `limit` (0 = all)."""
    order = sorted(samples, key=lambda s: s.uid)
    random.Random("schedule-select").shuffle(order)
    return order[:limit] if limit else order


GRID_FILE = "grid.jsonl"  # one line per scored grid point; a resumed run keeps the points already scored


def read_grid(run_dir: Path) -> dict[str, float]:
    """The `grid_e<E>/*` metrics already scored in `run_dir` (a resumed run); {} when none."""
    path = run_dir / GRID_FILE
    metrics: dict[str, float] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                metrics.update(json.loads(line))
    return metrics


def point_metrics(point: schedule.Point, prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    """The few numbers a grid point keeps of an evaluation: accuracy, think tokens, format rate."""
    keys = ("accuracy", "think_tokens", "format_rate")
    return {f"{point.key}/{prefix}_{k}": metrics[f"eval/{k}"] for k in keys}


def prior_wall_s(run_dir: Path) -> float:
    """Seconds earlier attempts of this run already spent (an interrupted or failed results.json), so a resumed
    run's GPU-hours count the whole run."""
    with contextlib.suppress(OSError, ValueError, TypeError):
        record = json.loads((run_dir / "results.json").read_text())
        if record.get("status") in ("interrupted", "failed") and record.get("stage") != "setup":
            return float(record.get("wall_s") or 0.0)
    return 0.0


def run(cfg: RunConfig, run_dir: Path, config_yaml: str = "") -> ResultRow:
    """Run one experiment; return its result row, also written to results.json and the CSV.

    Args:
        cfg: The validated, typed config.
        run_dir: This run's output directory (created if missing).
        config_yaml: The resolved config as YAML, saved beside the results.
    """
    t0 = time.time()
    world, is_main = distributed.world_size(), distributed.rank() == 0
    validate(cfg, world)
    device = distributed.resolve_device(cfg.device)  # the run's one device decision
    if cfg.resume != "none" and (done := finished_row(run_dir)) is not None:
        ours = axes(cfg)
        theirs = {key: getattr(done, key) for key in ours}
        if theirs != ours:  # a run folder belongs to one run
            raise ConfigError(
                f"{run_dir} holds a finished run of {theirs}, not {ours}; resume=auto continues or returns that "
                "same run only. Give this run its own folder (hydra.run.dir=...) or resume=none"
            )
        log.info("resume=%s: %s already finished; returning its results.json", cfg.resume, run_dir)
        return done
    resume_from = checkpoint.resolve_resume(cfg.resume, run_dir)
    if resume_from is not None:  # before anything loads: a resume continues the same run
        checkpoint.check_same_run(resume_from, cfg)
    if world > 1:
        distributed.install_rank_logging()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

    # Data and budget: reject bad input before anything heavy.
    trains = isinstance(cfg.method, RFTConfig | SFTConfig)
    selects = trains and bool(cfg.schedule.epochs) and bool(cfg.schedule.select_split)
    splits = ("train", cfg.eval.split) + ((cfg.schedule.select_split,) if selects else ())
    task = build_task(cfg.task, seed=cfg.seed, splits=splits)
    train_set = (
        apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed) if trains else []
    )
    eval_set = task.split(cfg.eval.split)
    eval_set = eval_set[: cfg.eval.limit] if cfg.eval.limit else eval_set
    select_set = (
        selection_set(task.split(cfg.schedule.select_split), cfg.schedule.select_limit) if selects else []
    )
    points = schedule.grid(cfg, len(train_set))  # the lengths the run is scored at; the last is its end
    verify_images(train_set + eval_set + select_set)  # a truncated image fails here, not hours into training
    if is_main:
        check_writable(run_dir, Path(cfg.results_csv).parent)
    distributed.init(cfg.dist.backend, device)
    run_dir = Path(distributed.from_rank0(str(run_dir)))  # one run, one directory, whatever the rank count
    resume_from = distributed.from_rank0(resume_from)
    folder = model_dir(cfg)
    with zero3_loading(cfg, world):  # ZeRO-3: every rank loads only its shard of each weight
        model, processor = models.load_model(cfg.model, folder)
        reference = sharded_reference(cfg, folder)
    if not is_zero3_training(cfg):  # DeepSpeed and zero.Init place ZeRO-3 shards themselves
        model.to(device)
    warn_if_large_on_cpu(model, device)
    log.info("policy on %s: %s", device, distributed.held_parameters(model))
    if isinstance(cfg.method, RFTConfig | SFTConfig):  # before any compute: a too-long prompt fails here
        check_prompt_lengths(processor, task, train_set, cfg.reward.think, cfg.method.max_prompt_tokens)
    pixels = models.pixel_budget(processor)  # what the processor enforces, recorded in the row
    log.info(memory_estimate(cfg, model, world))
    log.info(
        "task %s: %d train samples after budget, %d eval samples", task.name, len(train_set), len(eval_set)
    )
    if cfg.schedule.epochs and points:
        log.info(
            "schedule: scored at %s (epochs:steps) on %d %s and %d %s questions",
            ", ".join(f"{p.epochs:g}:{p.steps}" for p in points),
            len(select_set),
            cfg.schedule.select_split or "no selection",
            len(eval_set),
            cfg.eval.split,
        )

    lock = claim_run_dir(run_dir) if is_main else None  # before anything is written into the folder
    try:
        if is_main:  # one run, one output directory: rank 0 alone writes
            run_dir.mkdir(parents=True, exist_ok=True)
            if config_yaml:
                atomic_write_text(run_dir / "config.yaml", config_yaml)
        row = ResultRow(
            run_id=run_dir.name,
            status="running",
            **axes(cfg),
            n_train=len(train_set),
            min_pixels=pixels[0],
            max_pixels=pixels[1],
            train_source=cfg.task.train_source or cfg.task.source,
            crop_bottom=cfg.task.crop_bottom,
            eval_multi_image=cfg.task.eval_multi_image,
            schedule="epochs:" + ",".join(f"{p.epochs:g}" for p in points)
            if cfg.schedule.epochs
            else "method",
            think=cfg.reward.think,
            loss_agg=cfg.method.loss_agg if isinstance(cfg.method, RFTConfig) else None,
            group_size=cfg.method.group_size if isinstance(cfg.method, RFTConfig) else None,
            max_new_tokens=cfg.method.max_new_tokens,
            dist=cfg.dist.name,
            world_size=world,
            run_dir=str(run_dir),
            resumed_from=str(resume_from) if resume_from else None,
            git_commit=git_commit(REPO_ROOT),
        )
        if (
            resume_from is not None and is_main
        ):  # steps after the checkpoint are logged again by the resumed run
            checkpoint.truncate_metrics(run_dir / "metrics.jsonl", checkpoint.read_meta(resume_from)["step"])
        tracker = Tracker(
            run_dir,
            enabled=is_main,
            backend=cfg.logger.backend,
            project=cfg.logger.project,
            entity=cfg.logger.entity,
            group=redact(cfg.logger.group),
            name=redact(cfg.name),
            tags=redact(list(cfg.logger.tags)),  # W&B stores these outside the (redacted) config
            mode=cfg.logger.mode,
            config=dataclasses.asdict(cfg),
            axes=axes(cfg),
        )
        # SIGTERM/SIGINT during training: finish the step, save a checkpoint, exit; elsewhere: stop at once.
        stop = checkpoint.StopRequest()
        ckpt = checkpoint.Checkpointer(
            run_dir / "checkpoints",
            cfg.checkpoint,
            config_hash=checkpoint.config_hash(cfg),
            resume_from=resume_from,
            stop=stop,
            processor=processor,
        )

        def evaluate_all(model, samples=eval_set) -> list[dict]:
            """Greedy eval of `samples` (the eval set), sharded over ranks; every rank gets every prediction row."""
            _, shard = evaluate.evaluate(
                model,
                processor,
                task,
                samples[distributed.rank() :: world],
                think=cfg.reward.think,
                max_new_tokens=cfg.method.max_new_tokens,
                batch_size=cfg.eval.batch_size,
                device=device,
            )
            return distributed.gather_rows(shard)

        prior_s = prior_wall_s(run_dir) if resume_from is not None else 0.0
        scored = read_grid(run_dir) if resume_from is not None else {}
        row.metrics.update(scored)
        at_step = {p.steps: p for p in points} if cfg.schedule.epochs else {}

        def score_point(step: int, engine, totals: dict[str, float]) -> None:
            """At a grid point: score the model on the selection split and (before the last point, whose score
            is the final evaluation's) the test split, and keep what the run had got by then."""
            point = at_step.get(step)
            if point is None or f"{point.key}/steps" in row.metrics:
                return
            rng = (
                checkpoint.rng_state()
            )  # scoring must not change the run: it draws nothing, and we make sure
            got = {
                f"{point.key}/steps": float(step),
                f"{point.key}/tokens": totals["train/tokens"],
                f"{point.key}/gpu_hours": (prior_s + time.time() - t0) * world / 3600,
            }
            with engine.generation():
                if select_set:
                    got.update(
                        point_metrics(
                            point,
                            "val",
                            evaluate.eval_metrics(evaluate_all(models.unwrap(model), select_set)),
                        )
                    )
                if point is not points[-1]:
                    got.update(
                        point_metrics(
                            point, "test", evaluate.eval_metrics(evaluate_all(models.unwrap(model)))
                        )
                    )
            checkpoint.set_rng_state(rng)
            row.metrics.update(got)
            tracker.log(step, got)
            if is_main:
                with (run_dir / GRID_FILE).open("a", encoding="utf-8") as f:
                    f.write(json.dumps(got) + "\n")
            log.info(
                "grid point %g passes (step %d): %s",
                point.epochs,
                step,
                ", ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in got.items() if "accuracy" in k),
            )

    except BaseException:  # setup failed before the run's own try/finally: give the folder back
        if lock is not None:
            lock.release()
        raise
    try:
        stop.install()
        train_stats: dict[str, float] = {}
        generation = contextlib.nullcontext  # zero-shot: the untouched model
        if cfg.eval.before and cfg.method.name != "zeroshot":  # the base model's score, on the same eval set
            with whole_weights(cfg, model):
                rows = evaluate_all(models.unwrap(model))
            before = evaluate.eval_metrics(rows)
            row.metrics.update({k.replace("eval/", "eval_before/", 1): v for k, v in before.items()})
            if is_main:
                write_predictions(run_dir / "eval_before_predictions.jsonl", rows)
            log.info("before training: accuracy %.3f", before["eval/accuracy"])
        t_train = time.time()
        if isinstance(cfg.method, RFTConfig | SFTConfig):
            loop = grpo if isinstance(cfg.method, RFTConfig) else sft
            extra = {"reference": reference} if loop is grpo else {}
            extra["after_step"] = score_point
            with stop.deferred(), logging_redirect_tqdm():  # log lines print above the progress bar
                train_stats, engine = loop.train(
                    cfg, task, train_set, model, processor, tracker, ckpt, device=device, **extra
                )
            generation = engine.generation  # ZeRO-3: weights gathered once for the whole evaluation
        train_s = time.time() - t_train
        t_eval = time.time()
        with generation():
            predictions = evaluate_all(models.unwrap(model))
        metrics = evaluate.eval_metrics(predictions)
        eval_s = time.time() - t_eval
        if is_main:
            write_predictions(run_dir / "eval_predictions.jsonl", predictions)
        if not trains:  # what the run got: nothing (zero-shot), in the loops' own record
            train_stats = {**schedule.budget_record(cfg, 0, 0), "train/tokens": 0.0}
        if at_step:  # the last grid point is the trained model: its test score is the final evaluation's
            row.metrics.update(point_metrics(points[-1], "test", metrics))
        row.metrics.update({**metrics, **train_stats})
        row.status, row.train_s, row.eval_s = "finished", train_s, eval_s
    except checkpoint.Interrupted as err:
        row.status, row.error = "interrupted", str(err)
        raise
    except Exception as err:
        last = checkpoint.latest(run_dir / "checkpoints")
        row.status, row.error = "failed", f"{type(err).__name__}: {err}"
        row.last_checkpoint = str(last) if last is not None else None
        if last is not None and isinstance(err, FloatingPointError):
            raise FloatingPointError(
                f"{err}. The last good checkpoint is {last}; after the fix, continue from it with "
                f"hydra.run.dir={run_dir} resume=auto"
            ) from err
        raise
    finally:
        stop.uninstall()
        if lock is not None:
            lock.release()
        row.wall_s = round(prior_s + time.time() - t0, 2)
        row.gpu_hours = row.wall_s * world / 3600
        row.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        record = row.to_record()
        try:
            if is_main:  # results.json says row_written: false until the row is in the table
                record_result(run_dir, Path(cfg.results_csv), row, extra={"versions": package_versions()})
        finally:
            tracker.summary({k: v for k, v in record.items() if isinstance(v, int | float | str)})
            tracker.finish()
    return row
