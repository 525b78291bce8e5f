"""The GRPO loop (`method=rft`), one function read top to bottom.

Each step: (1) rollout, B prompts x G completions in one batched call; (2) rewards; (3) group-normalised
advantages; (4) reference log-probs only when beta > 0, old log-probs only when mu > 1; (5) clipped surrogate
plus beta * k3 KL; (6) backward over micro-batches, clip, step; (7) metrics, per-phase timings and samples.
`rft.rollout.Rollout` carries the batch through phases 1-3. Deliberate departures from DeepSeekMath's GRPO
(arXiv 2402.03300) as Visual-RFT uses it: with mu = 1 the ratio is 1 and old log-probs are never computed; the
k3 log-ratio is clamped before `exp`; vision special tokens are never sampled; loss normalisers are those of
the whole step, so micro-batching changes memory, not the gradient (docs/grpo.md).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from tqdm import tqdm

from rft import distributed, schedule
from rft.checkpoint import Checkpointer
from rft.config import RunConfig
from rft.data.base import Sample, Task
from rft.data.budget import PromptStream
from rft.distributed import mean_over_ranks
from rft.engine import make_engine, warmup_constant
from rft.logprobs import completion_logprobs, shared_prompt_logprobs
from rft.losses import group_advantages, grpo_loss
from rft.models import is_lora, unwrap
from rft.rewards import reward_stats
from rft.rollout import sample_rollout, score_rollout
from rft.tracking import PhaseTimer, Tracker, device_sync, peak_memory

log = logging.getLogger(__name__)

# Stats that are sums over micro-batches (their normalisers are global); the rest are token-weighted means.
SUMMED_STATS = ("train/loss", "policy/pg_loss", "policy/kl_loss")
# Consecutive steps in which every group had equal rewards (zero advantages: no learning signal) before warning.
ZERO_STD_PATIENCE = 10


def zero_std_warning(metrics: dict[str, float], terms: list[str], max_new_tokens: int) -> str:
    """The warning for a streak of zero-variance steps, naming the likeliest cause from this step's stats."""
    head = (
        f"every group had identical rewards for {ZERO_STD_PATIENCE} consecutive steps, so every advantage is 0 "
        "and GRPO is not learning. Likely cause: "
    )
    clipped = metrics["rollout/clipped_ratio"]
    if clipped >= 0.5:
        return head + (
            f"completions are truncated at method.max_new_tokens={max_new_tokens} ({clipped:.0%} hit the limit, "
            "so no answer is ever closed); raise method.max_new_tokens"
        )
    if "format" in terms and metrics.get("reward/format") == 0:
        return head + (
            "the format never matched (reward/format = 0, completions are not <think>...</think><answer>...</answer>); "
            "check reward.think matches the prompt, or start from an instruction-tuned model or an SFT warm-up"
        )
    if "accuracy" in terms and metrics.get("reward/accuracy") == 0:
        return head + "no completion was ever correct (reward/accuracy = 0); the task is too hard"
    if "accuracy" in terms and metrics.get("reward/accuracy") == 1:
        return head + "every completion is already correct (reward/accuracy = 1); the task is too easy"
    return head + f"the reward terms {terms} give every completion the same score; check their definitions"


def progress_text(step: int, steps: int, window: list[dict[str, float]]) -> str:
    """One log line over the steps since the last: `step 20/100: reward 1.31 (accuracy 0.36, format 1.00),
    24.1 completion tokens, 0.42 s/step`, means over `window` (one metrics dict per step)."""

    def mean(key: str) -> float:
        return sum(m[key] for m in window) / len(window)

    terms = [k for k in ("reward/accuracy", "reward/format") if k in window[-1]]
    parts = ", ".join(f"{k.split('/')[1]} {mean(k):.2f}" for k in terms)
    return (
        f"step {step}/{steps}: reward {mean('rollout/reward_mean'):.2f}"
        + (f" ({parts})" if parts else "")
        + f", {mean('rollout/completion_tokens'):.1f} completion tokens, {mean('perf/step_s'):.2f} s/step"
    )


@contextlib.contextmanager
def reference_policy(policy, ref):
    """The reference model for the KL term: the frozen copy, or the LoRA policy with its adapter disabled."""
    if ref is not None:
        yield ref
    else:
        with policy.disable_adapter():
            yield unwrap(policy)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """The reference policy: a copy of the initial weights, in eval mode, without gradients."""
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


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
    reference: torch.nn.Module | None = None,
    after_step: Callable[[int, object, dict[str, float]], None] | None = None,
) -> tuple[dict[str, float], object]:
    """Train `model` in place with GRPO on `train_set`; `checkpointer` resumes and saves (None: neither).

    The run is `rft.schedule.total_steps` long: `method.steps`, or the last point of a `schedule.epochs` grid.

    Args:
        device: The run's device (`rft.distributed.resolve_device`); None resolves `cfg.device` here.
        reference: The reference policy for beta > 0, already loaded (the pipeline loads it partitioned under
            ZeRO-3); None copies the policy before the engine wraps it. Unused with LoRA (adapter off) or beta = 0.
        after_step: Called as `after_step(step, engine, totals)` after every optimizer step, before the
            checkpoint, with the run's totals so far (`train/tokens`); the pipeline scores grid points here.

    Returns:
        (final training stats: last reward mean, steps, passes, prompts, completions, loss tokens, mean step
        seconds; the engine, for evaluation).
    """
    m = cfg.method
    steps = schedule.total_steps(cfg, len(train_set))
    world, rank = distributed.world_size(), distributed.rank()
    device = distributed.resolve_device(cfg.device) if device is None else device
    # This rank's share of the step: whole groups only (a group lives on one rank).
    G, B, N = m.group_size, m.prompts_per_step // world, m.rollout_batch_size // world
    # The reference policy exists only when beta > 0: a frozen copy, or with LoRA the adapter switched off.
    # A copy is taken before the engine wraps the policy (under ZeRO-3 the policy's parameters become shards).
    ref = None
    if m.beta > 0 and not is_lora(model):
        ref = reference if reference is not None else frozen_copy(model)
    engine = make_engine(cfg, model, device=device, lr_factor=warmup_constant(m.warmup_steps))
    if ref is not None:
        ref = engine.place_reference(ref)
        log.info("reference policy: %s", distributed.held_parameters(ref))
    logprobs = shared_prompt_logprobs if m.share_prompt else completion_logprobs
    stream = PromptStream(train_set, seed=cfg.seed)
    terms = [(t.fn, t.weight) for t in cfg.reward.terms]
    length_target = cfg.reward.length_target or m.max_new_tokens
    micro = [slice(i, i + m.micro_batch_size) for i in range(0, N, m.micro_batch_size)]
    timer = PhaseTimer(sync=device_sync(engine.device))  # GPU work is charged to the phase that launched it
    log.info(
        "GRPO: %d steps (%.3g passes over %d prompts), B=%d prompts x G=%d, micro-batch %d, beta=%g, mu=%d, "
        "loss_agg=%s, scale_adv_by_std=%s",
        steps,
        schedule.budget_record(cfg, len(train_set), steps)["train/epochs"],
        len(train_set),
        B,
        G,
        m.micro_batch_size,
        m.beta,
        m.mu,
        m.loss_agg,
        m.scale_adv_by_std,
    )
    ckpt = checkpointer or Checkpointer.off()
    start, last = ckpt.restore(engine, stream)  # weights, optimizer, data position, RNGs; (0, {}) when fresh
    loss_tokens = last.get("train/tokens", 0.0)  # completion tokens the loss saw, all ranks, since step 1
    zero_std_steps = 0
    step_times = []
    report_every, window = max(1, steps // 10), []  # a progress line at every tenth of the run
    bar = dict(desc="grpo", initial=start, total=steps, disable=not engine.is_main, mininterval=2)
    for step in tqdm(range(start + 1, steps + 1), **bar):
        t_step = time.perf_counter()
        samples = stream.take(B * world)[rank * B : (rank + 1) * B]  # every rank draws the same global batch

        # 1. Rollout: B prompts x G completions, one generate call.
        with timer.phase("rollout"), engine.generation() as policy:
            batch = sample_rollout(
                unwrap(policy),
                processor,
                task,
                samples,
                think=cfg.reward.think,
                group_size=G,
                sampler=m.sampler,
                max_new_tokens=m.max_new_tokens,
                temperature=m.temperature,
                min_new_tokens=m.min_new_tokens,
                device=engine.device,
                **({"compile": True} if m.compile_sampler else {}),
            )
        prompts, prompt_index, ids, mask = batch.prompts, batch.prompt_index, batch.ids, batch.mask  # [N, T]

        # 2. Rewards.
        with timer.phase("reward"):
            score_rollout(
                batch,
                terms,
                think=cfg.reward.think,
                length_target=length_target,
                prompts=[task.prompt(s, cfg.reward.think) for s in batch.samples],
                length_requires_correct=cfg.reward.length_requires_correct,
            )
        rewards = torch.tensor(batch.rewards, device=engine.device)  # [N]

        # 3. Group-normalised advantages.
        batch.advantages = group_advantages(rewards, G, scale_by_std=m.scale_adv_by_std, eps=m.adv_eps)  # [N]
        advantages = batch.advantages

        # 4. Reference and old log-probs, only when they are used.
        ref_logp = old_logp = None
        if m.beta > 0:
            with (
                timer.phase("ref_logprobs"),
                torch.no_grad(),
                reference_policy(engine.module, ref) as ref_model,
            ):
                ref_logp = torch.cat(
                    [
                        logprobs(ref_model, prompts, prompt_index[s], ids[s], mask[s], m.temperature)
                        for s in micro
                    ]
                )  # [N, T]
        if m.mu > 1:
            with timer.phase("old_logprobs"), torch.no_grad():
                old_logp = torch.cat(
                    [
                        logprobs(
                            unwrap(engine.module), prompts, prompt_index[s], ids[s], mask[s], m.temperature
                        )
                        for s in micro
                    ]
                )  # [N, T]

        # 5-6. Loss, backward per micro-batch, one optimizer step per update pass.
        # Global-batch normalisers (see rft.sft): rows are equal per rank; tokens are averaged over ranks.
        num_tokens = mean_over_ranks(float(mask.sum()))
        loss_tokens += num_tokens * world
        with timer.phase("update"):
            for _ in range(m.mu):
                stats: dict[str, float] = defaultdict(float)
                for s in micro:
                    logp = logprobs(
                        unwrap(engine.module), prompts, prompt_index[s], ids[s], mask[s], m.temperature
                    )  # [M, T]
                    loss, mb_stats = grpo_loss(
                        logp,
                        None if old_logp is None else old_logp[s],
                        None if ref_logp is None else ref_logp[s],
                        advantages[s],
                        mask[s],
                        clip_eps=m.clip_eps,
                        beta=m.beta,
                        agg=m.loss_agg,
                        num_rows=N,
                        num_tokens=num_tokens,
                        max_len=m.max_new_tokens,
                        log_ratio_clamp=m.log_ratio_clamp,
                    )
                    if not math.isfinite(loss.item()):
                        raise FloatingPointError(
                            f"non-finite GRPO loss at step {step}: pg_loss={mb_stats['policy/pg_loss']}, "
                            f"kl_loss={mb_stats['policy/kl_loss']}. Lower method.lr or raise method.beta/clamp."
                        )
                    engine.backward(loss)
                    weight = float(mask[s].sum()) / max(num_tokens, 1)
                    for k, v in mb_stats.items():
                        stats[k] += v if k in SUMMED_STATS else v * weight
                grad_norm = engine.step()
                if not math.isfinite(grad_norm):
                    raise FloatingPointError(
                        f"non-finite gradient norm at step {step} although the loss terms were finite "
                        f"(pg_loss={stats['policy/pg_loss']:.4g}, kl_loss={stats['policy/kl_loss']:.4g}); "
                        "lower method.lr or method.max_grad_norm"
                    )

        # 7. Log.
        step_s = time.perf_counter() - t_step
        step_times.append(step_s)
        timings = timer.pop()
        metrics = {
            **stats,
            **reward_stats([t for t, _ in terms], batch.term_rewards),
            "train/loss": mean_over_ranks(stats["train/loss"]),  # the global batch's loss
            "rollout/reward_mean": mean_over_ranks(rewards.mean().item()),
            "rollout/reward_std": rewards.std().item(),
            "rollout/frac_zero_std_groups": (rewards.view(B, G).std(1) == 0).float().mean().item(),
            "rollout/completion_tokens": mask.sum(1).float().mean().item(),
            "rollout/think_tokens": sum(batch.think_tokens) / N,
            "rollout/clipped_ratio": 1.0 - batch.finished.float().mean().item(),
            "train/grad_norm": grad_norm,
            "train/lr": engine.lr,
            "train/epoch": stream.epoch,
            **timings,
            "perf/step_s": step_s,
            **peak_memory(engine.device),
            "perf/tokens_per_s": num_tokens / max(timings.get("timing/rollout_s", 0.0), 1e-9),
        }
        tracker.log(step, metrics)
        window.append(metrics)
        if step % report_every == 0 or step == steps:
            if engine.is_main:
                log.info(progress_text(step, steps, window))
            window = []
        zero_std_steps = zero_std_steps + 1 if metrics["rollout/frac_zero_std_groups"] == 1 else 0
        if zero_std_steps == ZERO_STD_PATIENCE:  # once per streak, not every step
            log.warning(zero_std_warning(metrics, [t for t, _ in terms], m.max_new_tokens))
        if step % m.samples_every == 0 or step == steps:
            names = [t for t, _ in terms]
            adv = advantages.tolist()
            rows = [
                {
                    "prompt": task.prompt(samples[i // G], cfg.reward.think),
                    "answer": samples[i // G].answer,
                    "completion": batch.completions[i],
                    **{f"reward/{n}": batch.term_rewards[j][i] for j, n in enumerate(names)},
                    "reward": batch.rewards[i],
                    "advantage": adv[i],
                }
                for i in range(N)
            ]
            tracker.log_samples(step, rows, images=[samples[i // G].images[0] for i in range(N)])
        last = metrics
        # what the return value needs, restored with the checkpoint
        summary = {"rollout/reward_mean": metrics["rollout/reward_mean"], "train/tokens": loss_tokens}
        if after_step is not None:
            after_step(step, engine, summary)
        ckpt.end_of_step(step, steps, engine, stream, summary)
    stats = {
        "train/steps": float(steps),
        **schedule.budget_record(cfg, len(train_set), steps),
        "train/tokens": loss_tokens,
        "train/final_reward_mean": last.get("rollout/reward_mean", float("nan")),
        "perf/mean_step_s": sum(step_times) / max(len(step_times), 1),
    }
    return stats, engine
