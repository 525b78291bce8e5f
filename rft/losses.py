"""GRPO and SFT losses as pure tensor functions: group advantages, the k3 KL estimate, loss aggregation.

Nothing here knows about models, configs or devices. Rows are in rollout order, `N = B*G` completions with rows
`b*G .. b*G+G-1` answering prompt `b`; per-token tensors are `[N, T]` with a completion mask. Advantages are
GRPO's group-normalised rewards (DeepSeekMath, arXiv 2402.03300), optionally unscaled (Dr. GRPO, arXiv
2503.20783); the policy term is PPO's clipped surrogate; the KL term is the k3 estimator. Departures: log-ratios
are clamped before `exp`, and every normaliser is a global count of the step's batch, so micro-batch losses sum
to the full-batch loss. The three aggregation modes and the reasons are in docs/grpo.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

LOSS_AGGREGATIONS = ("seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm")


def group_advantages(
    rewards: Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-4
) -> Tensor:
    """Group-relative advantages of GRPO: each reward minus its group's mean, optionally over the group's std.

    Args:
        rewards: `[N]` scalar reward per completion, `N = B*G`, grouped consecutively.
        group_size: G, the completions per prompt; at least 2 (one sample has no baseline).
        scale_by_std: Divide by `std_group + eps` (GRPO). False gives Dr. GRPO's un-scaled `r - mean`.
        eps: Added to the std so that near-identical rewards do not blow up.

    Returns:
        `[N]` advantages, in the rows' order and the rewards' dtype. Exactly zero for every row of a group
        whose rewards are all equal.

    Raises:
        ValueError: If `rewards` is not 1-D, `group_size < 2`, or `N` is not a multiple of
            `group_size`.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for a group baseline, got {group_size}")
    if rewards.numel() % group_size != 0:
        raise ValueError(
            f"{rewards.numel()} rewards do not split into groups of {group_size}; pass G rows per prompt"
        )
    grouped = rewards.view(-1, group_size)  # [B, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [B, G]
    if scale_by_std:
        centred = centred / (grouped.std(dim=1, keepdim=True) + eps)  # [B, G], unbiased std
    # The mean of equal floats can differ from them by an ulp; pin constant groups to exactly 0.
    constant = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # [B, 1]
    advantages = torch.where(constant, torch.zeros_like(centred), centred)  # [B, G]
    return advantages.reshape(-1)  # [N]


def k3_kl(logp: Tensor, ref_logp: Tensor, clamp: float = 20.0) -> Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref): `exp(d) - d - 1` with `d = ref_logp - logp`.

    Args:
        logp: `[N, T]` log-probs of the sampled tokens under the policy (may require grad).
        ref_logp: `[N, T]` log-probs of the same tokens under the reference model.
        clamp: `d` is clamped to `[-clamp, clamp]` so that `exp` stays finite.

    Returns:
        `[N, T]` non-negative estimates (padding positions included; mask them downstream).
    """
    d = (ref_logp - logp).clamp(-clamp, clamp)  # [N, T]
    # expm1(d) - d equals exp(d) - d - 1 but keeps precision (and >= 0) when d is tiny.
    return torch.expm1(d) - d  # [N, T]


def _check_per_token(name: str, tensor: Tensor, shape: torch.Size) -> None:
    if tensor.shape != shape:
        raise ValueError(f"{name} must have shape {tuple(shape)} like logp [N, T], got {tuple(tensor.shape)}")


def aggregate(
    values: Tensor, mask: Tensor, mode: str, num_rows: int, num_tokens: int, max_len: int
) -> Tensor:
    """Reduce a per-token loss to a scalar with the full batch's normalisers (micro-batch exact).

    The three counts describe the *whole* step's batch, not `values`: calling this on each micro-batch of a
    step and summing gives the full-batch result. Modes are described in the module docstring.

    Args:
        values: `[n, T]` per-token values of this micro-batch (`n <= N` rows).
        mask: `[n, T]` completion mask (bool or 0/1 float).
        mode: One of `LOSS_AGGREGATIONS`.
        num_rows: N, the rows of the full batch (`seq-mean-token-mean` and `seq-mean-token-sum-norm`).
        num_tokens: The full batch's `mask.sum()` (`token-mean`; floored at 1).
        max_len: The constant length of Dr. GRPO's normaliser, normally the maximum completion length
            (`seq-mean-token-sum-norm`).

    Returns:
        A scalar tensor, differentiable through `values`.

    Raises:
        ValueError: If `mode` is unknown, shapes differ, or a normaliser the mode uses is not positive.
    """
    if mode not in LOSS_AGGREGATIONS:
        raise ValueError(f"unknown loss aggregation {mode!r}; use one of {LOSS_AGGREGATIONS}")
    _check_per_token("mask", mask, values.shape)
    if mode != "token-mean" and num_rows < 1:
        raise ValueError(f"num_rows must be the full batch's row count (>= 1), got {num_rows}")
    if mode == "seq-mean-token-sum-norm" and max_len < 1:
        raise ValueError(f"max_len must be the maximum completion length (>= 1), got {max_len}")
    mask = mask.to(values.dtype)  # [n, T]
    masked = values * mask  # [n, T]
    if mode == "seq-mean-token-mean":
        row_means = masked.sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)  # [n]
        return row_means.sum() / num_rows  # []
    if mode == "token-mean":
        return masked.sum() / max(num_tokens, 1)  # []
    return masked.sum() / (num_rows * max_len)  # [], seq-mean-token-sum-norm


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor | None,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float,
    beta: float,
    agg: str,
    num_rows: int,
    num_tokens: int,
    max_len: int,
    log_ratio_clamp: float = 20.0,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO loss of one micro-batch: clipped surrogate plus `beta` times the k3 KL, aggregated by `agg`.

    Args:
        logp: `[n, T]` per-token log-probs of the sampled completions under the current policy (with grad).
        old_logp: `[n, T]` log-probs under the policy that sampled them, or None for one update per rollout
            (on-policy: `logp.detach()` is used, so the ratio is 1 and the gradient is `A * grad logp`).
        ref_logp: `[n, T]` log-probs under the reference model; None is allowed only when `beta == 0`.
        advantages: `[n]` one advantage per completion, broadcast over its tokens.
        mask: `[n, T]` completion mask (bool or 0/1 float).
        clip_eps: PPO clip range; the ratio is clipped to `[1 - clip_eps, 1 + clip_eps]`.
        beta: KL coefficient (>= 0); 0 skips the KL term.
        agg: Aggregation mode, one of `LOSS_AGGREGATIONS`.
        num_rows: Rows of the full step's batch, see `aggregate`.
        num_tokens: Completion tokens of the full step's batch, see `aggregate`.
        max_len: Maximum completion length, see `aggregate`.
        log_ratio_clamp: `logp - old_logp` is clamped to `+-log_ratio_clamp` before `exp`.

    Returns:
        `(loss, stats)`: the scalar loss to backpropagate (sum it over micro-batches) and python floats
        `policy/kl` (masked mean k3, 0.0 without a KL term), `policy/clip_frac` (share of tokens whose
        clipped branch is the active one), `policy/ratio_mean`, `policy/pg_loss` and `policy/kl_loss`
        (the two terms, aggregated like the loss, the latter times `beta`) and `train/loss`. The means are
        over this micro-batch's masked tokens.

    Raises:
        ValueError: If `beta > 0` without `ref_logp`, `beta < 0`, `clip_eps <= 0`, shapes disagree, or
            `agg` is unknown.
    """
    if beta < 0:
        raise ValueError(f"beta (KL coefficient) must be >= 0, got {beta}")
    if beta > 0 and ref_logp is None:
        raise ValueError(f"beta={beta} needs ref_logp; pass the reference log-probs or set beta to 0")
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if logp.dim() != 2:
        raise ValueError(f"logp must be 2-D [N, T], got shape {tuple(logp.shape)}")
    _check_per_token("mask", mask, logp.shape)
    if old_logp is not None:
        _check_per_token("old_logp", old_logp, logp.shape)
    if ref_logp is not None:
        _check_per_token("ref_logp", ref_logp, logp.shape)
    if advantages.shape != logp.shape[:1]:
        raise ValueError(
            f"advantages must have shape ({logp.shape[0]},), one per row, got {tuple(advantages.shape)}"
        )

    if old_logp is None:
        old_logp = logp.detach()  # [n, T]
    log_ratio = (logp - old_logp).clamp(-log_ratio_clamp, log_ratio_clamp)  # [n, T]
    ratio = torch.exp(log_ratio)  # [n, T]
    adv = advantages.to(logp.dtype).unsqueeze(1)  # [n, 1]
    unclipped = ratio * adv  # [n, T]
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * adv  # [n, T]
    surrogate = -torch.minimum(unclipped, clipped)  # [n, T]

    kl = k3_kl(logp, ref_logp) if beta > 0 else None  # [n, T]
    per_token = surrogate + beta * kl if kl is not None else surrogate  # [n, T]
    loss = aggregate(per_token, mask, agg, num_rows, num_tokens, max_len)  # []

    with torch.no_grad():
        m = mask.to(logp.dtype)  # [n, T]
        denom = m.sum().clamp_min(1.0)  # []
        # The clipped branch binds when the ratio left the trust region in the direction A rewards.
        binds = ((adv > 0) & (ratio > 1.0 + clip_eps)) | ((adv < 0) & (ratio < 1.0 - clip_eps))  # [n, T]
        pg_loss = aggregate(surrogate, mask, agg, num_rows, num_tokens, max_len)  # []
        kl_loss = (
            beta * aggregate(kl, mask, agg, num_rows, num_tokens, max_len) if kl is not None else 0.0
        )  # []
        stats = {
            "policy/kl": float((kl * m).sum() / denom) if kl is not None else 0.0,
            "policy/clip_frac": float((binds.to(m.dtype) * m).sum() / denom),
            "policy/ratio_mean": float((ratio * m).sum() / denom),
            "policy/pg_loss": float(pg_loss),
            "policy/kl_loss": float(kl_loss),
            "train/loss": loss.item(),
        }
    return loss, stats


def sft_loss(logp: Tensor, mask: Tensor, num_tokens: int) -> Tensor:
    """Token-mean negative log-likelihood of the target tokens, normalised by the full batch's token count.

    Args:
        logp: `[n, T]` log-probs of the target tokens under the model (with grad).
        mask: `[n, T]` target mask (bool or 0/1 float), 0 on prompt and padding.
        num_tokens: The full step's `mask.sum()` (floored at 1), so that micro-batch losses sum exactly.

    Returns:
        A scalar tensor.
    """
    _check_per_token("mask", mask, logp.shape)
    m = mask.to(logp.dtype)  # [n, T]
    return -(logp * m).sum() / max(num_tokens, 1)  # []
