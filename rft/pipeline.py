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

from rft import checkpoint, distributed, evaluate, grpo, models, sft
from rft.config import ConfigError, RFTConfig, RunConfig, SFTConfig, validate
from rft.datasets import verify_images
from rft.tasks import apply_budget, build_task
from rft.tracking import (
    Tracker,
    append_result_row,
    atomic_write_json,
    atomic_write_text,
    git_commit,
    package_versions,
    redact,
)

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_spec(cfg: RunConfig) -> models.ModelSpec:
    return models.ModelSpec(**dataclasses.asdict(cfg.model))


def axes(cfg: RunConfig) -> dict[str, object]:
    """The five axes plus seed, as flat keys (W&B config, result rows)."""
    return {
        "task": cfg.task.name,
        "method": cfg.method.name,
        "model": cfg.model.id,
        "reward": cfg.reward.name,
        "budget": "full" if cfg.budget.kind == "full" else f"{cfg.budget.kind}:{cfg.budget.size}",
        "seed": cfg.seed,
    }


def finished_record(run_dir: Path) -> dict[str, object] | None:
    """The record of a finished run in `run_dir` (its results.json with status finished), else None."""
    path = run_dir / "results.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("status") == "finished" else None


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


def run(cfg: RunConfig, run_dir: Path, config_yaml: str = "") -> dict[str, object]:
    """Run one experiment and return its result record (also written to results.json and the CSV).

    Args:
        cfg: The validated, typed config.
        run_dir: This run's output directory (created if missing).
        config_yaml: The resolved config as YAML, saved beside the results.
    """
    t0 = time.time()
    world, is_main = distributed.world_size(), distributed.rank() == 0
    validate(cfg, world)
    if cfg.resume != "none" and (done := finished_record(run_dir)) is not None:
        log.info("resume=%s: %s already finished; returning its results.json", cfg.resume, run_dir)
        return done
    resume_from = checkpoint.resolve_resume(cfg.resume, run_dir)
    if world > 1:
        distributed.install_rank_logging()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)

    # Data and budget: reject bad input before anything heavy.
    task = build_task(cfg.task, seed=cfg.seed, splits=("train", cfg.eval.split))
    train_set = (
        []
        if cfg.method.name == "zeroshot"
        else apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed)
    )
    eval_set = task.split(cfg.eval.split)
    eval_set = eval_set[: cfg.eval.limit] if cfg.eval.limit else eval_set
    verify_images(train_set + eval_set)  # a truncated image fails here, not hours into training
    if is_main:
        check_writable(run_dir, Path(cfg.results_csv).parent)
    distributed.init(cfg.dist.backend)
    run_dir = Path(distributed.from_rank0(str(run_dir)))  # one run, one directory, whatever the rank count
    resume_from = distributed.from_rank0(resume_from)
    spec = model_spec(cfg)
    if spec.builtin:  # a cold cache is built once, by rank 0 (hub downloads have their own file locks)
        with distributed.rank0_first():
            models.resolve_model_dir(spec)
    model, processor = models.load_model(spec)
    log.info(
        "task %s: %d train samples after budget, %d eval samples", task.name, len(train_set), len(eval_set)
    )

    if is_main:  # one run, one output directory: rank 0 alone writes
        run_dir.mkdir(parents=True, exist_ok=True)
        if config_yaml:
            atomic_write_text(run_dir / "config.yaml", config_yaml)
    record: dict[str, object] = {
        "run_id": run_dir.name,
        "status": "running",
        **axes(cfg),
        "n_train": len(train_set),
        "min_pixels": cfg.model.min_pixels,
        "max_pixels": cfg.model.max_pixels,
        "think": cfg.reward.think,
        "loss_agg": cfg.method.loss_agg if isinstance(cfg.method, RFTConfig) else "",
        "group_size": cfg.method.group_size if isinstance(cfg.method, RFTConfig) else "",
        "max_new_tokens": cfg.method.max_new_tokens,
        "dist": cfg.dist.name,
        "world_size": world,
        "run_dir": str(run_dir),
        "resumed_from": str(resume_from or ""),
        "git_commit": git_commit(REPO_ROOT),
    }
    if resume_from is not None and is_main:  # steps after the checkpoint are logged again by the resumed run
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
    )

    def evaluate_all(model) -> list[dict]:
        """Greedy eval of the eval set, sharded over ranks; every rank gets every prediction row."""
        _, shard = evaluate.evaluate(
            model,
            processor,
            task,
            eval_set[distributed.rank() :: world],
            think=cfg.reward.think,
            max_new_tokens=cfg.method.max_new_tokens,
            batch_size=cfg.eval.batch_size,
        )
        return distributed.gather_rows(shard)

    try:
        stop.install()
        train_stats: dict[str, float] = {}
        generation = contextlib.nullcontext  # zero-shot: the untouched model
        if cfg.eval.before and cfg.method.name != "zeroshot":  # the base model's score, on the same eval set
            rows = evaluate_all(models.unwrap(model))
            before = evaluate.summarize(rows)
            record.update({k.replace("eval/", "eval_before/", 1): v for k, v in before.items()})
            if is_main:
                write_predictions(run_dir / "eval_before_predictions.jsonl", rows)
            log.info("before training: accuracy %.3f", before["eval/accuracy"])
        t_train = time.time()
        if isinstance(cfg.method, RFTConfig | SFTConfig):
            loop = grpo if isinstance(cfg.method, RFTConfig) else sft
            with stop.deferred():
                train_stats, engine = loop.train(cfg, task, train_set, model, processor, tracker, ckpt)
            generation = engine.generation  # ZeRO-3: weights gathered once for the whole evaluation
        train_s = time.time() - t_train
        t_eval = time.time()
        with generation():
            predictions = evaluate_all(models.unwrap(model))
        metrics = evaluate.summarize(predictions)
        eval_s = time.time() - t_eval
        if is_main:
            write_predictions(run_dir / "eval_predictions.jsonl", predictions)
        record.update(status="finished", **metrics, **train_stats, train_s=train_s, eval_s=eval_s)
    except checkpoint.Interrupted as err:
        record.update(status="interrupted", error=str(err))
        raise
    except Exception as err:
        last = checkpoint.latest(run_dir / "checkpoints")
        record.update(status="failed", error=f"{type(err).__name__}: {err}", last_checkpoint=str(last or ""))
        if last is not None and isinstance(err, FloatingPointError):
            raise FloatingPointError(
                f"{err}. The last good checkpoint is {last}; after the fix, continue from it with "
                f"hydra.run.dir={run_dir} resume=auto"
            ) from err
        raise
    finally:
        stop.uninstall()
        record.update(
            wall_s=round(time.time() - t0, 2),
            finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if is_main:
            atomic_write_json(run_dir / "results.json", {**record, "versions": package_versions()})
            append_result_row(Path(cfg.results_csv), record)
        tracker.summary({k: v for k, v in record.items() if isinstance(v, int | float | str)})
        tracker.finish()
    return record
