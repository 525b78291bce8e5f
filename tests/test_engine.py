"""Engine tier: bf16 training without DeepSpeed learns like fp32 (fp32 master weights), and saves them.

python -m pytest -q tests/test_engine.py
"""

from __future__ import annotations

import copy

import torch

from rft.engine import TorchEngine

LR = 1e-6


def tiny_net(dtype: torch.dtype) -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.Tanh(), torch.nn.Linear(64, 8))
    return net.to(dtype)


def train(net: torch.nn.Module, steps: int = 2) -> TorchEngine:
    engine = TorchEngine(
        net, device=torch.device("cpu"), lr=LR, weight_decay=0.0, max_grad_norm=1.0, lr_factor=lambda s: 1.0
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 64, generator=g)
    for _ in range(steps):
        loss = net(x.to(next(net.parameters()).dtype)).float().pow(2).mean()
        engine.backward(loss)
        engine.step()
    return engine


def changed_fraction(before: list[torch.Tensor], after: list[torch.Tensor]) -> float:
    changed = sum(int((a.float() != b.float()).sum()) for a, b in zip(before, after, strict=True))
    return changed / sum(b.numel() for b in before)


def test_bf16_weights_learn_like_fp32_at_lr_1e_6():
    fp32, bf16 = tiny_net(torch.float32), tiny_net(torch.bfloat16)
    start32 = [p.detach().clone() for p in fp32.parameters()]
    start16 = [p.detach().float().clone() for p in bf16.parameters()]
    train(fp32)
    engine = train(bf16)
    moved32 = changed_fraction(start32, list(fp32.parameters()))
    moved16 = changed_fraction(start16, engine.masters)  # the trained state: the fp32 masters
    assert moved32 > 0.99 and moved16 > 0.99, (moved32, moved16)
    # The same updates: Adam's first steps are ~lr * sign(grad), so the deltas agree (bf16 forward noise flips
    # the sign of a few near-zero gradients).
    deltas16 = torch.cat([(m - s).flatten() for m, s in zip(engine.masters, start16, strict=True)])
    deltas32 = torch.cat(
        [(p.detach() - s).flatten() for p, s in zip(fp32.parameters(), start32, strict=True)]
    )
    agree = ((deltas16 - deltas32).abs() < 0.5 * LR).float().mean().item()
    assert agree > 0.9, agree
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())  # the model keeps its dtype


def test_plain_adamw_on_bf16_weights_would_not_learn():
    """Why the masters exist: stepping the bf16 weights directly drops almost every update at lr 1e-6."""
    net = tiny_net(torch.bfloat16)
    start = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(1)).bfloat16()
    for _ in range(2):
        net(x).float().pow(2).mean().backward()
        opt.step()
        opt.zero_grad()
    assert changed_fraction(start, list(net.parameters())) < 0.1


def test_fp32_weights_are_their_own_masters():
    net = tiny_net(torch.float32)
    engine = TorchEngine(
        net, device=torch.device("cpu"), lr=LR, weight_decay=0.0, max_grad_norm=1.0, lr_factor=lambda s: 1.0
    )
    assert all(m is p for m, p in zip(engine.masters, net.parameters(), strict=True))


def test_masters_survive_a_save_and_load_bit_for_bit(tmp_path):
    net = tiny_net(torch.bfloat16)
    engine = train(net)
    engine.save_state(tmp_path)
    other = copy.deepcopy(net)
    restored = TorchEngine(
        other, device=torch.device("cpu"), lr=LR, weight_decay=0.0, max_grad_norm=1.0, lr_factor=lambda s: 1.0
    )
    restored.load_state(tmp_path)
    for a, b in zip(engine.masters, restored.masters, strict=True):
        assert torch.equal(a, b)  # the fp32 state, not its bf16 rounding
