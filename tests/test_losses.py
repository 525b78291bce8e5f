"""Unit tests for rft.losses against hand-computed values, plus a slow loop reference for grpo_loss.

Every expected number is worked out in the comment beside it. The micro-batch tests pin the contract that the
training loop relies on: summing the losses of a step's micro-batches (with global normalisers) reproduces the
full-batch loss and gradient exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from rft.losses import LOSS_AGGREGATIONS, aggregate, group_advantages, grpo_loss, k3_kl, sft_loss

E = math.e
LN2 = math.log(2.0)


def ragged_mask(lengths: list[int], max_len: int) -> torch.Tensor:
    """[N, T] float mask with ``lengths[i]`` leading ones in row i."""
    return (torch.arange(max_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()  # [N, T]


# ------------------------------------------------------------------------------------------- group_advantages


def test_group_advantages_two_groups_of_three_with_std() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 3.0])  # [N=6], B=2, G=3
    # group 0: mean 2, deviations (-1, 0, 1), unbiased var (1 + 0 + 1) / 2 = 1 -> std 1
    # group 1: mean 1, deviations (-1, -1, 2), unbiased var (1 + 1 + 4) / 2 = 3 -> std sqrt(3)
    expected = torch.tensor(
        [-1 / 1.0001, 0.0, 1 / 1.0001]
        + [-1 / (math.sqrt(3) + 1e-4), -1 / (math.sqrt(3) + 1e-4), 2 / (math.sqrt(3) + 1e-4)]
    )
    assert_close(group_advantages(rewards, group_size=3), expected)


def test_group_advantages_two_groups_of_three_without_std() -> None:
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 3.0])  # [N=6]
    # Dr. GRPO: only the group mean is subtracted (means 2 and 1).
    expected = torch.tensor([-1.0, 0.0, 1.0, -1.0, -1.0, 2.0])
    assert_close(group_advantages(rewards, group_size=3, scale_by_std=False), expected)


def test_group_advantages_constant_group_is_exactly_zero() -> None:
    # 0.1 is not representable; the float32 mean of (0.1, 0.1, 0.1) need not equal 0.1, and that rounding
    # noise divided by std + eps = 1e-4 would be a large spurious advantage. It must be exactly 0 instead.
    rewards = torch.tensor([0.1, 0.1, 0.1, 1.0, 0.0, 0.0, 0.7, 0.7, 0.7])  # [N=9], B=3, G=3
    for scale in (True, False):
        adv = group_advantages(rewards, group_size=3, scale_by_std=scale)  # [N]
        assert not torch.isnan(adv).any()
        assert torch.equal(adv[:3], torch.zeros(3))
        assert torch.equal(adv[6:], torch.zeros(3))
    # the middle group: mean 1/3, deviations (2/3, -1/3, -1/3), unbiased var (4/9 + 1/9 + 1/9) / 2 = 1/3
    std = math.sqrt(1 / 3)
    expected = torch.tensor([2 / 3, -1 / 3, -1 / 3]) / (std + 1e-4)
    assert_close(group_advantages(rewards, group_size=3)[3:6], expected)


def test_group_advantages_group_of_two() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.25, 0.75])  # [N=4], B=2, G=2
    # G=2: deviations are +-d/2 for a reward gap d, and the unbiased std is sqrt(2 * (d/2)^2 / 1) = d/sqrt(2),
    # so every non-constant pair gets +-1/sqrt(2) (up to eps), whatever the gap.
    # pair 0: d=1 -> +-0.5 / (0.70711 + 1e-4); pair 1: d=0.5 -> -+0.25 / (0.35355 + 1e-4)
    expected = torch.tensor(
        [0.5 / (math.sqrt(0.5) + 1e-4), -0.5 / (math.sqrt(0.5) + 1e-4)]
        + [-0.25 / (math.sqrt(0.125) + 1e-4), 0.25 / (math.sqrt(0.125) + 1e-4)]
    )
    assert_close(group_advantages(rewards, group_size=2), expected)


@pytest.mark.parametrize(
    ("rewards", "group_size", "match"),
    [
        (torch.zeros(5), 2, "groups of 2"),
        (torch.zeros(4), 1, ">= 2"),
        (torch.zeros(4), 0, ">= 2"),
        (torch.zeros(2, 2), 2, "1-D"),
    ],
)
def test_group_advantages_errors(rewards: torch.Tensor, group_size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        group_advantages(rewards, group_size=group_size)


# ------------------------------------------------------------------------------------------------------ k3_kl


def test_k3_kl_hand_values() -> None:
    logp = torch.tensor([[0.0, 0.0, -1.0]])  # [N=1, T=3]
    ref_logp = torch.tensor([[0.0, LN2, -1.0 - LN2]])  # [1, 3]
    # d = ref - logp = (0, ln2, -ln2)
    # k3(0) = 1 - 0 - 1 = 0; k3(ln2) = 2 - ln2 - 1 = 0.30685; k3(-ln2) = 0.5 + ln2 - 1 = 0.19315
    expected = torch.tensor([[0.0, 1.0 - LN2, LN2 - 0.5]])
    assert_close(k3_kl(logp, ref_logp), expected)


def test_k3_kl_gradient() -> None:
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)  # [1, 2]
    ref_logp = torch.tensor([[LN2, -LN2]])  # [1, 2]
    # dk3/dlogp = -(exp(d) - 1) = 1 - exp(d): (1 - 2, 1 - 0.5) = (-1, 0.5)
    k3_kl(logp, ref_logp).sum().backward()
    assert_close(logp.grad, torch.tensor([[-1.0, 0.5]]))


def test_k3_kl_clamp_keeps_huge_differences_finite() -> None:
    logp = torch.tensor([[-1000.0, 0.0]])  # [1, 2]
    ref_logp = torch.tensor([[0.0, -1000.0]])  # [1, 2]
    # d = (1000, -1000) is clamped to (20, -20): k3 = (e^20 - 21, e^-20 + 19)
    kl = k3_kl(logp, ref_logp)  # [1, 2]
    assert torch.isfinite(kl).all()
    assert_close(kl, torch.tensor([[math.exp(20) - 21, math.exp(-20) + 19]]))
    # a tighter clamp: d = +-5 -> (e^5 - 6, e^-5 + 4)
    assert_close(k3_kl(logp, ref_logp, clamp=5.0), torch.tensor([[math.exp(5) - 6, math.exp(-5) + 4]]))


def test_k3_kl_is_non_negative() -> None:
    gen = torch.Generator().manual_seed(0)
    logp = torch.randn(8, 16, generator=gen) * 3  # [8, 16]
    ref_logp = logp + torch.randn(8, 16, generator=gen) * torch.logspace(-8, 1, 16)  # [8, 16], tiny to big d
    assert (k3_kl(logp, ref_logp) >= 0).all()


# -------------------------------------------------------------------------------------------------- aggregate

# Shared hand example: two rows of uneven length.
VALUES = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # [N=2, T=3]
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # [2, 3], lengths 2 and 1, 3 tokens


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # row means (1 + 2) / 2 = 1.5 and 4 / 1 = 4, averaged over 2 rows -> 2.75
        ("seq-mean-token-mean", 2.75),
        # (1 + 2 + 4) / 3 tokens
        ("token-mean", 7 / 3),
        # (1 + 2 + 4) / (2 rows * max_len 3)
        ("seq-mean-token-sum-norm", 7 / 6),
    ],
)
def test_aggregate_hand_values(mode: str, expected: float) -> None:
    out = aggregate(VALUES, MASK, mode, num_rows=2, num_tokens=3, max_len=3)  # []
    assert out.shape == ()
    assert_close(out, torch.tensor(expected))
    assert_close(
        aggregate(VALUES, MASK.bool(), mode, num_rows=2, num_tokens=3, max_len=3), torch.tensor(expected)
    )


def test_aggregate_empty_row_counts_as_a_zero_row() -> None:
    mask = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # [2, 3], row 1 has no token
    # seq-mean-token-mean: row means 1.5 and 0 (0 / max(0, 1)), over 2 rows -> 0.75, no NaN
    out = aggregate(VALUES, mask, "seq-mean-token-mean", num_rows=2, num_tokens=2, max_len=3)  # []
    assert_close(out, torch.tensor(0.75))
    # token-mean with no token at all: 0 / max(0, 1) = 0
    out = aggregate(VALUES, torch.zeros(2, 3), "token-mean", num_rows=2, num_tokens=0, max_len=3)  # []
    assert_close(out, torch.tensor(0.0))


def test_aggregate_unknown_mode_lists_valid_modes() -> None:
    with pytest.raises(ValueError, match="seq-mean-token-sum-norm"):
        aggregate(VALUES, MASK, "sequence-mean", num_rows=2, num_tokens=3, max_len=3)


def test_aggregate_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        aggregate(VALUES, MASK[:, :2], "token-mean", num_rows=2, num_tokens=3, max_len=3)


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS)
def test_aggregate_micro_batches_sum_to_full_batch(mode: str) -> None:
    gen = torch.Generator().manual_seed(1)
    lengths, max_len = [5, 1, 3, 0, 4, 2], 5
    values = torch.randn(6, max_len, generator=gen).requires_grad_(True)  # [N=6, T=5]
    mask = ragged_mask(lengths, max_len)  # [6, 5]
    norm = {"num_rows": 6, "num_tokens": int(mask.sum()), "max_len": max_len}

    full = aggregate(values, mask, mode, **norm)  # []
    (full_grad,) = torch.autograd.grad(full, values)  # [6, 5]

    # an uneven split, 2 rows then 4 rows, as gradient accumulation would see it
    parts = [
        aggregate(values[rows], mask[rows], mode, **norm) for rows in (slice(0, 2), slice(2, 6))
    ]  # [] each
    summed = parts[0] + parts[1]  # []
    (summed_grad,) = torch.autograd.grad(summed, values)  # [6, 5]

    assert_close(summed, full)
    assert_close(summed_grad, full_grad)


# -------------------------------------------------------------------------------------------------- grpo_loss


def test_grpo_loss_on_policy_value_and_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.0]], requires_grad=True)  # [N=2, T=3]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # [2, 3], 5 tokens
    adv = torch.tensor([1.0, -2.0])  # [2]
    # ratio == 1 everywhere, so the per-token loss is -A: row 0 -> -1 on 2 tokens, row 1 -> +2 on 3 tokens.
    # token-mean: (-1 * 2 + 2 * 3) / 5 = 0.8 ; gradient -A * m / 5: row 0 -> -0.2, row 1 -> +0.4 (masked -> 0)
    loss, stats = grpo_loss(
        logp,
        None,
        None,
        adv,
        mask,
        clip_eps=0.2,
        beta=0.0,
        agg="token-mean",
        num_rows=2,
        num_tokens=5,
        max_len=3,
    )
    assert_close(loss, torch.tensor(0.8))
    assert_close(loss, -aggregate(adv.unsqueeze(1).expand(2, 3), mask, "token-mean", 2, 5, 3))
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-0.2, -0.2, 0.0], [0.4, 0.4, 0.4]]))
    assert stats == pytest.approx(
        {
            "policy/kl": 0.0,
            "policy/clip_frac": 0.0,
            "policy/ratio_mean": 1.0,
            "policy/pg_loss": 0.8,
            "policy/kl_loss": 0.0,
            "train/loss": 0.8,
        }
    )
    assert all(isinstance(v, float) for v in stats.values())


def test_grpo_loss_on_policy_seq_mean_token_mean_gradient() -> None:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, -2.0]], requires_grad=True)  # [2, 3]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # [2, 3]
    adv = torch.tensor([1.0, -2.0])  # [2]
    # row means of -A are -1 and 2, over 2 rows -> 0.5. Gradient -A * m / (len_i * 2): row 0 -1/4, row 1 2/6.
    loss, _ = grpo_loss(
        logp,
        None,
        None,
        adv,
        mask,
        clip_eps=0.2,
        beta=0.0,
        agg="seq-mean-token-mean",
        num_rows=2,
        num_tokens=5,
        max_len=3,
    )
    assert_close(loss, torch.tensor(0.5))
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-0.25, -0.25, 0.0], [1 / 3, 1 / 3, 1 / 3]]))


def test_grpo_loss_clipping_with_old_logp() -> None:
    # log-ratios (logp - old_logp): +0.5 -> ratio e^0.5 = 1.6487 (> 1.2); -0.5 -> e^-0.5 = 0.6065 (< 0.8)
    old = torch.tensor([[-1.0, -1.0], [-2.0, -2.0]])  # [N=2, T=2]
    logp = (old + torch.tensor([[0.5, -0.5], [0.5, -0.5]])).requires_grad_(True)  # [2, 2]
    adv = torch.tensor([1.0, -1.0])  # [2]
    mask = torch.ones(2, 2)  # [2, 2]
    hi, lo = math.exp(0.5), math.exp(-0.5)
    # row 0, A=+1: token 0 min(1.6487, 1.2) = 1.2        -> clipped,   loss -1.2,    grad 0
    #              token 1 min(0.6065, 0.8) = 0.6065     -> unclipped, loss -0.6065, grad -A*ratio = -0.6065
    # row 1, A=-1: token 0 min(-1.6487, -1.2) = -1.6487  -> unclipped, loss 1.6487,  grad -A*ratio = 1.6487
    #              token 1 min(-0.6065, -0.8) = -0.8     -> clipped,   loss 0.8,     grad 0
    # token-mean over 4 tokens: (-1.2 - 0.6065 + 1.6487 + 0.8) / 4 = 0.16055; gradients / 4
    loss, stats = grpo_loss(
        logp,
        old,
        None,
        adv,
        mask,
        clip_eps=0.2,
        beta=0.0,
        agg="token-mean",
        num_rows=2,
        num_tokens=4,
        max_len=2,
    )
    assert_close(loss, torch.tensor((-1.2 - lo + hi + 0.8) / 4))
    loss.backward()
    assert_close(logp.grad, torch.tensor([[0.0, -lo / 4], [hi / 4, 0.0]]))
    # 2 of 4 tokens take the clipped branch; ratio mean (2 e^0.5 + 2 e^-0.5) / 4 = cosh(0.5) = 1.1276
    assert stats["policy/clip_frac"] == pytest.approx(0.5)
    assert stats["policy/ratio_mean"] == pytest.approx(math.cosh(0.5))
    assert stats["policy/pg_loss"] == pytest.approx((-1.2 - lo + hi + 0.8) / 4)


def test_grpo_loss_clip_frac_ignores_masked_and_zero_advantage_tokens() -> None:
    old = torch.zeros(2, 2)  # [2, 2]
    logp = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # [2, 2], every ratio e > 1.2
    adv = torch.tensor([1.0, 0.0])  # [2], A=0 never binds
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # [2, 3 tokens]
    # binding tokens: row 0 token 0 only (token 1 is masked) -> 1 of 3 masked tokens
    _, stats = grpo_loss(
        logp,
        old,
        None,
        adv,
        mask,
        clip_eps=0.2,
        beta=0.0,
        agg="token-mean",
        num_rows=2,
        num_tokens=3,
        max_len=2,
    )
    assert stats["policy/clip_frac"] == pytest.approx(1 / 3)
    assert stats["policy/ratio_mean"] == pytest.approx(E)


def test_grpo_loss_kl_term() -> None:
    logp = torch.tensor([[0.0, 0.0]], requires_grad=True)  # [N=1, T=2]
    ref_logp = torch.tensor([[LN2, -LN2]])  # [1, 2], d = (ln2, -ln2)
    adv = torch.tensor([1.0])  # [1]
    mask = torch.ones(1, 2)  # [1, 2]
    # k3 = (1 - ln2, ln2 - 0.5), sum 0.5, mean 0.25; beta 0.1, token-mean over 2 tokens -> kl_loss 0.025
    # surrogate on-policy = -A = -1 per token -> pg_loss -1; loss = -1 + 0.025 = -0.975
    # grad = (-A + beta * (1 - e^d)) / 2 = (-1 + 0.1 * (-1, 0.5)) / 2 = (-0.55, -0.475)
    loss, stats = grpo_loss(
        logp,
        None,
        ref_logp,
        adv,
        mask,
        clip_eps=0.2,
        beta=0.1,
        agg="token-mean",
        num_rows=1,
        num_tokens=2,
        max_len=2,
    )
    assert_close(loss, torch.tensor(-0.975))
    loss.backward()
    assert_close(logp.grad, torch.tensor([[-0.55, -0.475]]))
    assert stats["policy/kl"] == pytest.approx(0.25)
    assert stats["policy/kl_loss"] == pytest.approx(0.025)
    assert stats["policy/pg_loss"] == pytest.approx(-1.0)
    assert stats["train/loss"] == pytest.approx(-0.975)


def test_grpo_loss_beta_zero_ignores_ref() -> None:
    logp = torch.tensor([[0.0, 0.0]])  # [1, 2]
    ref_logp = torch.tensor([[LN2, -LN2]])  # [1, 2]
    kwargs = {"clip_eps": 0.2, "beta": 0.0, "agg": "token-mean", "num_rows": 1, "num_tokens": 2, "max_len": 2}
    with_ref, stats = grpo_loss(logp, None, ref_logp, torch.tensor([1.0]), torch.ones(1, 2), **kwargs)
    without_ref, _ = grpo_loss(logp, None, None, torch.tensor([1.0]), torch.ones(1, 2), **kwargs)
    assert_close(with_ref, without_ref)
    assert stats["policy/kl"] == 0.0


def test_grpo_loss_errors() -> None:
    logp, mask, adv = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2)  # [2, 3], [2, 3], [2]
    norm = {"agg": "token-mean", "num_rows": 2, "num_tokens": 6, "max_len": 3}
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp, None, None, adv, mask, clip_eps=0.2, beta=0.04, **norm)
    with pytest.raises(ValueError, match="beta"):
        grpo_loss(logp, None, logp, adv, mask, clip_eps=0.2, beta=-0.1, **norm)
    with pytest.raises(ValueError, match="clip_eps"):
        grpo_loss(logp, None, None, adv, mask, clip_eps=0.0, beta=0.0, **norm)
    with pytest.raises(ValueError, match="advantages"):
        grpo_loss(logp, None, None, torch.zeros(3), mask, clip_eps=0.2, beta=0.0, **norm)
    with pytest.raises(ValueError, match="old_logp"):
        grpo_loss(logp, torch.zeros(2, 2), None, adv, mask, clip_eps=0.2, beta=0.0, **norm)
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        grpo_loss(logp, None, None, adv, mask, clip_eps=0.2, beta=0.0, **{**norm, "agg": "mean"})


def slow_grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    beta: float,
    agg: str,
    num_rows: int,
    num_tokens: int,
    max_len: int,
) -> torch.Tensor:
    """grpo_loss written as a loop over rows and tokens, on 0-d tensors so autograd still works."""
    total = torch.zeros(())
    n, t = logp.shape
    for i in range(n):
        row_sum, row_len = torch.zeros(()), 0
        a = float(advantages[i])
        for j in range(t):
            if mask[i, j] == 0:
                continue
            ratio = torch.exp(torch.clamp(logp[i, j] - old_logp[i, j], -20.0, 20.0))
            bounded = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps)
            objective = min(ratio * a, bounded * a)  # the pessimistic branch
            d = torch.clamp(ref_logp[i, j] - logp[i, j], -20.0, 20.0)
            row_sum = row_sum + (-objective) + beta * (torch.exp(d) - d - 1)
            row_len += 1
        if agg == "seq-mean-token-mean":
            total = total + row_sum / max(row_len, 1) / num_rows
        elif agg == "token-mean":
            total = total + row_sum / num_tokens
        else:
            total = total + row_sum / (num_rows * max_len)
    return total


def random_batch(seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    n, t = 6, 7  # B=2, G=3
    old = -torch.rand(n, t, generator=gen) * 3  # [N, T]
    return {
        "logp": old + torch.randn(n, t, generator=gen) * 0.3,  # [N, T], ratios around 1, many clipped
        "old_logp": old,  # [N, T]
        "ref_logp": old + torch.randn(n, t, generator=gen) * 0.5,  # [N, T]
        "advantages": group_advantages(torch.rand(n, generator=gen), group_size=3),  # [N]
        "mask": ragged_mask([7, 3, 5, 1, 6, 2], t),  # [N, T]
    }


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grpo_loss_matches_slow_loop(mode: str, seed: int) -> None:
    batch = random_batch(seed)
    norm = {"num_rows": 6, "num_tokens": int(batch["mask"].sum()), "max_len": 7}
    fast_logp = batch["logp"].clone().requires_grad_(True)  # [N, T]
    slow_logp = batch["logp"].clone().requires_grad_(True)  # [N, T]
    args = (batch["old_logp"], batch["ref_logp"], batch["advantages"], batch["mask"])

    fast, stats = grpo_loss(fast_logp, *args, clip_eps=0.2, beta=0.04, agg=mode, **norm)
    slow = slow_grpo_loss(slow_logp, *args, clip_eps=0.2, beta=0.04, agg=mode, **norm)
    fast.backward()
    slow.backward()

    assert_close(fast, slow)
    assert_close(fast_logp.grad, slow_logp.grad)
    assert stats["train/loss"] == pytest.approx(slow.item(), rel=1e-5)
    assert 0.0 < stats["policy/clip_frac"] < 1.0  # the example really exercises both branches


@pytest.mark.parametrize("mode", LOSS_AGGREGATIONS)
def test_grpo_loss_micro_batches_sum_to_full_batch(mode: str) -> None:
    batch = random_batch(3)
    norm = {"num_rows": 6, "num_tokens": int(batch["mask"].sum()), "max_len": 7}
    hp = {"clip_eps": 0.2, "beta": 0.04, "agg": mode, **norm}
    logp = batch["logp"].clone().requires_grad_(True)  # [N, T]
    keys = ("old_logp", "ref_logp", "advantages", "mask")

    full, _ = grpo_loss(logp, *(batch[k] for k in keys), **hp)  # []
    (full_grad,) = torch.autograd.grad(full, logp)  # [N, T]
    summed = sum(
        grpo_loss(logp[rows], *(batch[k][rows] for k in keys), **hp)[0] for rows in (slice(0, 3), slice(3, 6))
    )  # []
    (summed_grad,) = torch.autograd.grad(summed, logp)  # [N, T]

    assert_close(summed, full)
    assert_close(summed_grad, full_grad)


# --------------------------------------------------------------------------------------------------- sft_loss


def test_sft_loss_hand_value_and_micro_batches() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -7.0, -9.0]], requires_grad=True)  # [N=2, T=3]
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # [2, 3], 3 target tokens
    # NLL over the masked tokens (1 + 2 + 0.5) / 3 = 3.5 / 3; gradient -m / 3
    loss = sft_loss(logp, mask, num_tokens=3)  # []
    assert_close(loss, torch.tensor(3.5 / 3))
    loss.backward()
    assert_close(logp.grad, -mask / 3)
    # one row at a time with the global count: 3 / 3 + 0.5 / 3
    summed = sft_loss(logp[:1], mask[:1], num_tokens=3) + sft_loss(
        logp[1:], mask[1:].bool(), num_tokens=3
    )  # []
    assert_close(summed, loss)
