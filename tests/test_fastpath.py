"""Correctness guard of the fast paths: each optimised path against its straightforward counterpart, on the tiny
model and fixed inputs.

    - lean sampler (rft.sampling.sample_lean) vs HF generate: token-identical greedy and seeded sampling, on image prompts with
      left padding (so M-RoPE positions and rope_deltas are exercised), and the min_new_tokens rule;
    - shared-prompt log-probs vs the full-sequence forward vs the naive G-image-copies forward: same log-probs,
      loss gradients (vision tower included) within 1e-5 relative;
    - one GRPO step: lean + shared-prompt defaults vs HF generate + full forward give the same completions,
      loss and gradient norm;
    - with beta = 0 and mu = 1 the policy runs one grad-enabled pass per micro-batch and no other forward;
    - experiments/bench_gpu.py --dry-run sets up and runs on CPU.

    python -m pytest -q tests/test_fastpath.py
"""

from __future__ import annotations

import math

import pytest
import torch

from rft import grpo, models
from rft.config import ModelConfig
from rft.data.sat import make_sat_synth
from rft.logprobs import completion_logprobs, naive_logprobs, shared_prompt_logprobs
from rft.prompts import chat_text, encode_prompts
from rft.sampling import sample_hf, sample_lean, sample_next

REL_TOL = 1e-5  # fp32; observed differences are ~1e-7 relative


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny model, its processor, and two image prompts of different lengths (so one is left-padded)."""
    from tests.conftest import TINY_MODEL

    spec = ModelConfig(**TINY_MODEL)
    model, processor = models.load_model(spec)
    task = make_sat_synth(4, 1, 0, 56)
    samples = task.split("train")[:2]
    texts = [
        chat_text(processor, task.prompt(s, think), 1)
        for s, think in zip(samples, (True, False), strict=True)
    ]
    prompts = encode_prompts(processor, texts, [s.images for s in samples])
    assert (prompts.attention_mask == 0).any(), "the fixture needs a left-padded prompt"
    return model, processor, prompts


def both(model, tok, prompts, seed, **kw):
    model.eval()
    torch.manual_seed(seed)
    ref = sample_hf(model, tok, prompts, **kw)
    torch.manual_seed(seed)
    lean = sample_lean(model, tok, prompts, **kw)
    return ref, lean


def test_lean_greedy_is_token_identical_to_hf(tiny):
    model, processor, prompts = tiny
    (ids, mask), (lean_ids, lean_mask) = both(
        model, processor.tokenizer, prompts, 0, num_return_sequences=1, max_new_tokens=24, temperature=None
    )
    assert torch.equal(ids, lean_ids)
    assert torch.equal(mask, lean_mask)


@pytest.mark.parametrize("min_new_tokens", [0, 16])
def test_lean_sampling_matches_hf_with_a_fixed_seed(tiny, min_new_tokens):
    """Same processors in the same order and one multinomial draw per step: the seeded samples coincide."""
    model, processor, prompts = tiny
    (ids, _), (lean_ids, _) = both(
        model,
        processor.tokenizer,
        prompts,
        3,
        num_return_sequences=4,
        max_new_tokens=16,
        temperature=0.7,
        min_new_tokens=min_new_tokens,
    )
    assert torch.equal(ids, lean_ids)


def test_sampler_rules():
    logits = torch.zeros(3, 6)
    logits[:, 5] = 50.0  # EOS would always win
    kw = dict(suppress=torch.tensor([1, 2]), eos_id=5, temperature=1.0)
    for _ in range(20):
        held = sample_next(logits, 0, min_new_tokens=1, **kw)
        assert not bool(((held == 5) | (held == 1) | (held == 2)).any())
    assert sample_next(logits, 1, min_new_tokens=1, **kw).eq(5).all()
    assert (
        sample_next(logits, 0, min_new_tokens=0, suppress=kw["suppress"], eos_id=5, temperature=None)
        .eq(5)
        .all()
    )


def loss_and_grads(model, fn, prompts, pidx, ids, mask):
    """A fixed linear functional of the per-token log-probs, and every parameter's gradient of it."""
    model.train()
    model.zero_grad(set_to_none=True)
    logp = fn(model, prompts, pidx, ids, mask)  # [M, T]
    weights = torch.linspace(-1.0, 1.0, ids.shape[0])  # stands in for advantages
    loss = -((logp.sum(1) / mask.sum(1).clamp(min=1)) * weights).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach(), loss.item(), grads


def assert_close_grads(ref: dict, got: dict) -> None:
    assert ref.keys() == got.keys()
    assert any(n.startswith("model.visual.") for n in ref), "the vision tower must receive gradients"
    for n, g in ref.items():
        scale = g.abs().max().item() + 1e-12
        assert (g - got[n]).abs().max().item() <= REL_TOL * scale + 1e-9, n


def test_log_prob_paths_give_the_same_loss_and_gradients(tiny):
    model, processor, prompts = tiny
    tok = processor.tokenizer
    torch.manual_seed(0)
    ids, mask = sample_lean(
        model.eval(), tok, prompts, num_return_sequences=3, max_new_tokens=12, temperature=1.0
    )
    mask[1, 5:] = 0  # uneven lengths, including a row that ends early
    mask[4, 2:] = 0
    pidx = torch.arange(2).repeat_interleave(3)  # [6]
    naive = loss_and_grads(model, naive_logprobs, prompts, pidx, ids, mask)
    for fn in (completion_logprobs, shared_prompt_logprobs):
        logp, loss, grads = loss_and_grads(model, fn, prompts, pidx, ids, mask)
        assert torch.allclose(logp, naive[0], atol=1e-5), fn.__name__
        assert math.isclose(loss, naive[1], rel_tol=REL_TOL, abs_tol=1e-7), fn.__name__
        assert_close_grads(naive[2], grads)
    # A micro-batch holding part of one group and part of another.
    sub = slice(2, 5)
    ref = loss_and_grads(model, naive_logprobs, prompts, pidx[sub], ids[sub], mask[sub])
    got = loss_and_grads(model, shared_prompt_logprobs, prompts, pidx[sub], ids[sub], mask[sub])
    assert torch.allclose(got[0], ref[0], atol=1e-5)
    assert_close_grads(ref[2], got[2])


class Metrics:
    def __init__(self):
        self.rows = []

    def log(self, step, metrics):
        self.rows.append(dict(metrics))

    def log_samples(self, *a, **kw):
        pass


def one_grpo_step(tiny_cfg, monkeypatch, **method):
    """Run GRPO on the tiny model; returns the first step's metrics, the model, and the gradients the optimizer
    was handed at each step (captured at the gradient clip)."""
    cfg = tiny_cfg("rft")
    cfg.method.steps = 1
    for k, v in method.items():
        setattr(cfg.method, k, v)
    task = make_sat_synth(cfg.task.train_size, cfg.task.test_size, 0, cfg.task.image_size)
    train = task.split("train")[:4]
    model, processor = models.load_model(cfg.model)
    grads: list[dict[str, torch.Tensor]] = []
    clip = torch.nn.utils.clip_grad_norm_

    def capture(params, *a, **kw):
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        return clip(params, *a, **kw)

    log = Metrics()
    with monkeypatch.context() as mp:
        mp.setattr(torch.nn.utils, "clip_grad_norm_", capture)
        torch.manual_seed(0)
        grpo.train(cfg, task, train, model, processor, log)
    return log.rows[0], model, grads


def test_grpo_step_fast_and_reference_paths_agree(tiny_cfg, monkeypatch):
    """Same seed: the lean sampler samples the same completions as HF generate, and the shared-prompt update gives the
    same loss and gradient as the full-copy update. (Parameters after one AdamW step are not compared: Adam's
    first step turns a gradient of +-1e-12 noise into a +-lr update.)"""
    fast, _, fast_grads = one_grpo_step(tiny_cfg, monkeypatch)
    ref, _, ref_grads = one_grpo_step(tiny_cfg, monkeypatch, sampler="hf", share_prompt=False)
    assert fast["rollout/completion_tokens"] == ref["rollout/completion_tokens"]
    assert fast["rollout/reward_mean"] == ref["rollout/reward_mean"]
    for key in ("train/loss", "train/grad_norm"):
        assert math.isclose(fast[key], ref[key], rel_tol=1e-4, abs_tol=1e-7), key
    assert len(fast_grads) == len(ref_grads) == 1
    assert_close_grads(ref_grads[0], fast_grads[0])


@pytest.mark.parametrize("share_prompt", [True, False])
def test_beta0_mu1_runs_one_policy_pass_per_micro_batch(tiny_cfg, monkeypatch, share_prompt):
    """No reference model and no old-log-prob pass: the only forwards outside the rollout are the graded ones."""
    calls = {"grad": 0, "no_grad_train": 0, "vision_grad": 0}
    made = []
    real_load = models.load_model

    def load_and_hook(spec, model_dir=None):
        model, processor = real_load(spec, model_dir)
        made.append(model)

        def count(module, args, kwargs):
            if torch.is_grad_enabled():
                calls["grad"] += 1
            elif module.training:
                calls["no_grad_train"] += 1  # a log-prob pass without grad (old/ref) would land here

        def count_vision(module, args):
            calls["vision_grad"] += torch.is_grad_enabled()

        model.register_forward_pre_hook(count, with_kwargs=True)
        model.model.visual.register_forward_pre_hook(count_vision)
        return model, processor

    monkeypatch.setattr(models, "load_model", load_and_hook)
    monkeypatch.setattr(grpo, "frozen_copy", lambda m: pytest.fail("beta=0 must not build a reference model"))
    steps, micro = 2, 2  # tiny_cfg: 8 rows, micro-batches of 4
    one_grpo_step(tiny_cfg, monkeypatch, steps=steps, share_prompt=share_prompt, beta=0.0, mu=1)
    assert len(made) == 1
    per_pass = 2 if share_prompt else 1  # shared: the prompts' forward, then the completions on their K/V
    assert calls["grad"] == steps * micro * per_pass
    assert calls["no_grad_train"] == 0
    assert calls["vision_grad"] == steps * micro  # the vision tower once per micro-batch, not once per row


def test_bench_gpu_dry_run_sets_up_and_steps_on_cpu():
    from experiments import bench_gpu

    report = bench_gpu.main(
        ["--dry-run", "--no-trl"]
    )  # TRL's side: `python experiments/bench_gpu.py --dry-run`
    assert report["device"] == "cpu"
    assert report["ours"]["step_s"] > 0 and report["ours"]["rollout_tokens_per_s"] > 0
    assert report["decode_bandwidth"]["bytes_per_step"] > 0
