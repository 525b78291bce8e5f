"""The SFT loop (`method=sft`): same tasks, budgets, prompts and pixel limits as GRPO.

The target is `<answer>{label}</answer>` followed by the end-of-turn token (docs/protocol.md: no reasoning traces exist
to imitate). The loss is the token-mean negative log-likelihood over target tokens only; prompt and image tokens
never enter it. Each step:
    1. Encode a batch of prompts (with images) and their targets.
    2. Forward/backward per micro-batch (gradients accumulate; the token normaliser is the whole batch's).
    3. Clip, optimizer step, LR schedule (linear warm-up, cosine decay).
    4. Log.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from rft import distributed, schedule
from rft.checkpoint import Checkpointer
from rft.config import RunConfig
from rft.data.base import Sample, Task
from rft.data.budget import PromptStream
from rft.distributed import mean_over_ranks
from rft.engine import make_engine, warmup_constant, warmup_cosine
from rft.logprobs import completion_logprobs
from rft.losses import sft_loss
from rft.models import unwrap
from rft.prompts import chat_text, encode_prompts
from rft.tracking import PhaseTimer, Tracker, device_sync, peak_memory

log = logging.getLogger(__name__)


def sft_target(sample: Sample) -> str:
    """`<answer>{answer}</answer>`, preceded by `<think> {rationale} </think> ` when the sample has a trace."""
    if sample.rationale:
        return f"<think> {sample.rationale} </think> <answer>{sample.answer}</answer>"
    return f"<answer>{sample.answer}</answer>"


def encode_targets(
    tokenizer, samples: list[Sample], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded target ids [M, T] and mask [M, T] on `device`; each target ends with the end-of-turn token."""
    rows = [
        tokenizer(sft_target(s), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        for s in samples
    ]
    T = max(len(r) for r in rows)
    padded = [r + [tokenizer.pad_token_id] * (T - len(r)) for r in rows]
    ids = torch.tensor(padded, dtype=torch.long, device=device)  # [M, T]
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows], dtype=torch.long, device=device)
    return ids, mask  # [M, T], [M, T]


def train(
    cfg: RunConfig,
    task: Task,
    train_set: list[Sample],
    model,
    processor,
    tracker: Tracker,
    checkpointer: Checkpointer | None = None,
    *,
    device: torch.device | None = None,
    after_step: Callable[[int, object, dict[str, float]], None] | None = None,
) -> tuple[dict[str, float], object]:
    """Fine-tune `model` in place on `train_set`; `checkpointer` resumes and saves (None: neither).

    The run is `rft.schedule.total_steps` long: `method.steps`, `method.epochs` passes, or the last point of a
    `schedule.epochs` grid.

    Args:
        device: The run's device (`rft.distributed.resolve_device`); None resolves `cfg.device` here.
        after_step: Called as `after_step(step, engine, totals)` after every optimizer step, before the
            checkpoint, with the run's totals so far (`train/tokens`); the pipeline scores grid points here.

    Returns:
        (final training stats: steps, passes, examples, target tokens, final loss; the engine).
    """
    m = cfg.method
    tok = processor.tokenizer
    total_steps = schedule.total_steps(cfg, len(train_set))
    world, rank = distributed.world_size(), distributed.rank()
    device = distributed.resolve_device(cfg.device) if device is None else device
    per_rank = m.batch_size // world  # this rank's share of each global batch
    warmup = schedule.warmup_steps(cfg, len(train_set))
    lr_factor = warmup_cosine(warmup, total_steps) if m.lr_schedule == "cosine" else warmup_constant(warmup)
    engine = make_engine(cfg, model, device=device, lr_factor=lr_factor)
    timer = PhaseTimer(sync=device_sync(engine.device))  # GPU work is charged to the phase that launched it
    log.info(
        "SFT: %.3g passes over %d examples = %d steps, batch %d, micro-batch %d, %s LR",
        schedule.budget_record(cfg, len(train_set), total_steps)["train/epochs"],
        len(train_set),
        total_steps,
        m.batch_size,
        m.micro_batch_size,
        m.lr_schedule,
    )
    stream = PromptStream(train_set, seed=cfg.seed)
    ckpt = checkpointer or Checkpointer.off()
    start, summary = ckpt.restore(engine, stream)  # weights, optimizer, data, RNGs; (0, {}) when fresh
    loss_value = summary.get("train/final_loss", float("nan"))
    loss_tokens = summary.get("train/tokens", 0.0)  # target tokens the loss saw, all ranks, since step 1
    bar = dict(desc="sft", initial=start, total=total_steps, disable=not engine.is_main, mininterval=2)
    for step in tqdm(range(start + 1, total_steps + 1), **bar):
        t_step = time.perf_counter()
        # Every step is a full global batch (the stream wraps into the next epoch's permutation), split by rank.
        batch = stream.take(m.batch_size)[rank * per_rank : (rank + 1) * per_rank]

        # 1. Encode prompts and targets.
        with timer.phase("encode"):
            texts = [chat_text(processor, task.prompt(s, cfg.reward.think), len(s.images)) for s in batch]
            prompts = encode_prompts(processor, texts, [s.images for s in batch], engine.device)
            ids, mask = encode_targets(tok, batch, engine.device)  # [M, T], [M, T]
            # Token-mean over the GLOBAL batch: DeepSpeed averages gradients over ranks, so each rank divides
            # by (global tokens / world size) and the average equals the single-process gradient exactly.
            num_tokens = mean_over_ranks(float(mask.sum()))
            loss_tokens += num_tokens * world

        # 2. Forward/backward per micro-batch.
        with timer.phase("update"):
            loss_value = 0.0
            for i in range(0, len(batch), m.micro_batch_size):
                s = slice(i, i + m.micro_batch_size)
                index = torch.arange(len(batch), device=engine.device)[s]
                logp = completion_logprobs(unwrap(engine.module), prompts, index, ids[s], mask[s])  # [m, T]
                loss = sft_loss(logp, mask[s], num_tokens)
                if not math.isfinite(loss.item()):
                    raise FloatingPointError(f"non-finite SFT loss at step {step}; lower method.lr")
                engine.backward(loss)
                loss_value += loss.item()
            # 3. Optimizer step.
            grad_norm = engine.step()
            if not math.isfinite(grad_norm):
                raise FloatingPointError(
                    f"non-finite gradient norm at step {step} although the SFT loss was finite ({loss_value:.4g}); "
                    "lower method.lr or method.max_grad_norm"
                )

        # 4. Log.
        metrics = {
            "train/loss": mean_over_ranks(loss_value),
            "train/grad_norm": grad_norm,
            "train/lr": engine.lr,
            "train/epoch": stream.epoch,
            "train/target_tokens": num_tokens,
            **timer.pop(),
            "perf/step_s": time.perf_counter() - t_step,
            **peak_memory(engine.device),
        }
        tracker.log(step, metrics)
        summary = {
            "train/final_loss": loss_value,
            "train/tokens": loss_tokens,
        }  # restored with the checkpoint
        if after_step is not None:
            after_step(step, engine, summary)
        ckpt.end_of_step(step, total_steps, engine, stream, summary)
    stats = {
        "train/steps": float(total_steps),
        **schedule.budget_record(cfg, len(train_set), total_steps),
        "train/tokens": loss_tokens,
        "train/final_loss": loss_value,
    }
    return stats, engine
