"""The thin engine interface the training loops talk to: model, backward, optimizer step, generation context.

`TorchEngine` is the single-process implementation. A DeepSpeed ZeRO engine implements the same five members
(`module`, `backward`, `step`, `generation`, `lr`) plus `rank`/`world_size`/`is_main`, so the loops do not change
when ZeRO drops in.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch


def warmup_constant(warmup_steps: int):
    """LR multiplier: linear warm-up over `warmup_steps`, then constant (the GRPO lineage uses a constant LR)."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up, then cosine decay to 0 (LLaMA-Factory's SFT default)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


class TorchEngine:
    """Plain PyTorch: AdamW over trainable parameters, gradient-norm clipping, a LambdaLR schedule.

    Args:
        model: The policy; trained in place.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay.
        max_grad_norm: Clip the global gradient norm to this (<= 0 disables clipping).
        lr_factor: step -> LR multiplier.
    """

    rank = 0
    world_size = 1
    is_main = True

    def __init__(self, model: torch.nn.Module, *, lr: float, weight_decay: float, max_grad_norm: float, lr_factor):
        self.module = model
        self.max_grad_norm = max_grad_norm
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        model.train()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        """Clip, step the optimizer and the schedule, zero the gradients. Returns the pre-clip gradient norm."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        limit = self.max_grad_norm if self.max_grad_norm > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, limit))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    @contextmanager
    def generation(self):
        """Eval mode and no autograd for rollouts; back to train mode afterwards."""
        self.module.eval()
        try:
            with torch.no_grad():
                yield self.module
        finally:
            self.module.train()
