"""`rft.logprobs`: the chunked token log-prob against the textbook `log_softmax`, its memory, and the shared-prompt
forward under gradient checkpointing.

    - `selective_logprobs` equals `log_softmax(logits.float() / temperature).gather(ids)` in value and gradient
      (fp32 and bf16 logits, temperature != 1, whole-row, multi-row and sub-row chunks, a strided view);
    - its peak memory, counted by a dispatch mode that tracks live tensor storage, is a fraction of the
      textbook's (the figures are printed; `-s` shows them);
    - `shared_prompt_logprobs` on a model with gradient checkpointing gives the plain model's loss and gradients,
      logs its fallback once, and still shares the prompt in no-grad passes.

    python -m pytest -q tests/test_logprobs.py
"""

from __future__ import annotations

import logging
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from rft import logprobs, models
from rft.config import ModelConfig
from rft.data.sat import make_sat_synth
from rft.logprobs import completion_logprobs, selective_logprobs, shared_prompt_logprobs
from rft.prompts import chat_text, encode_prompts
from rft.sampling import sample_lean

TEMPERATURE = 0.7


def textbook(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """The straightforward form: a full fp32 copy, divided, log_softmax, gather. [M, T, V], [M, T] -> [M, T]."""
    return torch.log_softmax(logits.float() / temperature, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)


def value_and_grad(fn, base: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor):
    """fn on the view base[:, :-1] (as the log-prob forwards slice the LM head's output); the gradient of a fixed
    weighted sum of its log-probs with respect to base."""
    leaf = base.detach().requires_grad_(True)  # [M, T+1, V]
    logp = fn(leaf[:, :-1], ids)  # [M, T]
    (grad,) = torch.autograd.grad((logp * weights).sum(), leaf)  # [M, T+1, V]
    return logp.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_elements", [1 << 24, 2 * 6 * 97, 3 * 97, 40])  # all, 2 rows, 3 positions, 1
def test_selective_logprobs_equals_log_softmax(dtype, chunk_elements):
    gen = torch.Generator().manual_seed(0)
    M, T, V = 5, 6, 97
    base = (4 * torch.randn(M, T + 1, V, generator=gen)).to(dtype)  # [M, T+1, V] spread-out logits
    ids = torch.randint(0, V, (M, T), generator=gen)  # [M, T]
    weights = torch.randn(M, T, generator=gen)  # [M, T] stands in for advantages and masks
    ref, ref_grad = value_and_grad(lambda x, i: textbook(x, i, TEMPERATURE), base, ids, weights)
    got, got_grad = value_and_grad(
        lambda x, i: selective_logprobs(x, i, TEMPERATURE, chunk_elements), base, ids, weights
    )
    assert got.dtype == torch.float32 and got_grad.dtype == dtype
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    truth = (
        torch.log_softmax(base.double()[:, :-1] / TEMPERATURE, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    )
    torch.testing.assert_close(got.double(), truth, rtol=1e-6, atol=1e-6)
    if dtype == torch.float32:
        torch.testing.assert_close(got_grad, ref_grad, rtol=1e-6, atol=1e-6)
    else:  # both round the same fp32 gradient to bf16; at most one bf16 step apart
        torch.testing.assert_close(got_grad.float(), ref_grad.float(), rtol=2**-8, atol=1e-6)
    assert got_grad[:, -1].eq(0).all()  # the sliced-off last position gets no gradient


def test_selective_logprobs_without_grad_and_at_temperature_one():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 4, 50, generator=gen, dtype=torch.bfloat16)  # [M, T, V]
    ids = torch.randint(0, 50, (3, 4), generator=gen)  # [M, T]
    with torch.no_grad():
        got = selective_logprobs(logits, ids)  # [M, T]
    assert not got.requires_grad
    torch.testing.assert_close(got, textbook(logits, ids, 1.0), rtol=1e-6, atol=1e-6)


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of tensor storage that ops allocate while the mode is on, and their peak.

    A storage is counted when an op first returns it and uncounted when it is freed (torch keeps one Python
    object per live storage, so a weakref finalizer fires at the free). Storages that exist already (`existing`)
    are not counted.
    """

    def __init__(self, *existing: torch.Tensor):
        super().__init__()
        self.live = self.peak = 0
        self.keys = {t.untyped_storage()._cdata for t in existing}

    def _free(self, key: int, nbytes: int) -> None:
        self.keys.discard(key)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage()._cdata not in self.keys:
                storage = t.untyped_storage()
                self.keys.add(storage._cdata)
                self.live += storage.nbytes()
                weakref.finalize(storage, self._free, storage._cdata, storage.nbytes())
        self.peak = max(self.peak, self.live)
        return out


def peak_bytes(fn, base: torch.Tensor, ids: torch.Tensor, grad: bool) -> int:
    """Peak bytes allocated beyond the inputs by fn(base, ids), and by its backward when grad is set."""
    leaf = base.detach().requires_grad_(grad)
    with LiveBytes(leaf, ids) as mode:
        logp = fn(leaf, ids)  # [M, T]
        if grad:
            logp.sum().backward()
    return mode.peak


@pytest.mark.parametrize("grad", [False, True])
def test_selective_logprobs_peak_memory_is_a_fraction_of_the_textbook(grad):
    """A slice of a real micro-batch: 4 rows x 64 positions of Qwen's vocabulary in bf16 (74 MiB of logits)."""
    gen = torch.Generator().manual_seed(0)
    M, T, V = 4, 64, 151_936
    base = torch.randn(M, T + 1, V, generator=gen).to(torch.bfloat16)  # [M, T+1, V]
    ids = torch.randint(0, V, (M, T), generator=gen)  # [M, T]
    next_ids = torch.cat([ids, ids[:, :1]], dim=1)  # [M, T+1] as completion_logprobs passes them
    ref = peak_bytes(lambda x, i: textbook(x[:, :-1], i, TEMPERATURE), base, ids, grad)
    got = peak_bytes(lambda x, i: selective_logprobs(x, next_ids, TEMPERATURE)[:, :-1], base, ids, grad)
    bf16_logits = M * T * V * 2
    print(
        f"\npeak above the inputs, grad={grad}: textbook {ref / 2**20:.1f} MiB, selective {got / 2**20:.1f} MiB "
        f"(bf16 logits {bf16_logits / 2**20:.1f} MiB)"
    )
    # Textbook: fp32 copy + divided copy (+ their gradients) = 4 (8) x the bf16 logits. Selective: one row's
    # fp32 chunk and logsumexp's temporary forward; backward adds only the bf16 gradient the caller needs anyway.
    assert ref >= 4 * bf16_logits
    assert got <= (2.0 if grad else 1.0) * bf16_logits
    assert got < ref / 3


# The shared-prompt forward under gradient checkpointing, on the tiny model.


@pytest.fixture(scope="module")
def tiny_pair():
    """The tiny model twice, plain and with gradient checkpointing (same weights); two image prompts, the second
    left-padded; 3 sampled completions per prompt with uneven lengths."""
    from tests.conftest import TINY_MODEL

    plain, processor = models.load_model(ModelConfig(**TINY_MODEL))
    ckpt, _ = models.load_model(ModelConfig(gradient_checkpointing=True, **TINY_MODEL))
    assert ckpt.is_activation_checkpointing and not plain.is_activation_checkpointing
    task = make_sat_synth(4, 1, 0, 56)
    samples = task.split("train")[:2]
    texts = [
        chat_text(processor, task.prompt(s, think), 1)
        for s, think in zip(samples, (True, False), strict=True)
    ]
    prompts = encode_prompts(processor, texts, [s.images for s in samples])
    torch.manual_seed(0)
    ids, mask = sample_lean(
        plain.eval(), processor.tokenizer, prompts, num_return_sequences=3, max_new_tokens=10, temperature=1.0
    )  # [6, T]
    mask[1, 4:] = 0
    mask[4, 2:] = 0
    pidx = torch.arange(2).repeat_interleave(3)  # [6]
    return plain, ckpt, prompts, pidx, ids, mask


def loss_and_grads(model, fn, prompts, pidx, ids, mask):
    """A fixed linear functional of the per-token log-probs at temperature 0.7, and every parameter's gradient."""
    model.train()
    model.zero_grad(set_to_none=True)
    logp = fn(model, prompts, pidx, ids, mask, TEMPERATURE)  # [M, T]
    weights = torch.linspace(-1.0, 1.0, ids.shape[0], device=ids.device)  # [M] stands in for advantages
    loss = -((logp.sum(1) / mask.sum(1).clamp(min=1)) * weights).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach(), loss.item(), grads


def test_shared_prompt_logprobs_under_gradient_checkpointing_equals_the_plain_model(tiny_pair, caplog):
    plain, ckpt, prompts, pidx, ids, mask = tiny_pair
    ref_logp, ref_loss, ref_grads = loss_and_grads(plain, shared_prompt_logprobs, prompts, pidx, ids, mask)
    logprobs._fallback_logged = False
    with caplog.at_level(logging.INFO, logger="rft.logprobs"):
        for _ in range(2):  # logged once, not per call
            logp, loss, grads = loss_and_grads(ckpt, shared_prompt_logprobs, prompts, pidx, ids, mask)
    assert sum("gradient checkpointing is on" in r.getMessage() for r in caplog.records) == 1
    torch.testing.assert_close(logp, ref_logp, rtol=0, atol=1e-5)
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-7)
    assert ref_grads.keys() == grads.keys()
    assert any(n.startswith("model.visual.") for n in grads), "the vision tower must receive gradients"
    for n, g in ref_grads.items():
        scale = g.abs().max().item() + 1e-12
        assert (g - grads[n]).abs().max().item() <= 1e-5 * scale + 1e-9, n
    # A micro-batch that holds part of one group and part of another.
    sub = slice(2, 5)
    ref = loss_and_grads(plain, completion_logprobs, prompts, pidx[sub], ids[sub], mask[sub])
    got = loss_and_grads(ckpt, shared_prompt_logprobs, prompts, pidx[sub], ids[sub], mask[sub])
    torch.testing.assert_close(got[0], ref[0], rtol=0, atol=1e-5)
    assert got[1] == pytest.approx(ref[1], rel=1e-5, abs=1e-7)


def test_no_grad_passes_under_gradient_checkpointing_still_share_the_prompt(tiny_pair, monkeypatch):
    """The reference and old-policy passes run in training mode without grad: no layer is replayed, so the
    prompt's K/V are shared (the fallback is not taken) and the values equal the plain model's."""
    plain, ckpt, prompts, pidx, ids, mask = tiny_pair
    ckpt.train()

    def refuse(*args, **kwargs):
        raise AssertionError("the no-grad pass fell back to completion_logprobs")

    with torch.no_grad():
        ref = completion_logprobs(plain.train(), prompts, pidx, ids, mask, TEMPERATURE)  # [M, T]
        monkeypatch.setattr(logprobs, "completion_logprobs", refuse)
        got = shared_prompt_logprobs(ckpt, prompts, pidx, ids, mask, TEMPERATURE)  # [M, T]
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
