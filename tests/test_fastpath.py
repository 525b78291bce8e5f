"""Correctness guard of the fast paths: each optimised path against its straightforward counterpart, on the tiny
model and fixed inputs.

    - shared-prompt log-probs vs the full-sequence forward vs the naive G-image-copies forward: same log-probs,
      loss gradients (vision tower included) within 1e-5 relative;
    - one GRPO step: lean + shared-prompt defaults vs HF generate + full forward give the same completions,
      loss and gradient norm;
    - with beta = 0 and mu = 1 the policy runs one grad-enabled pass per micro-batch and no other forward;
    - experiments/bench_gpu.py --dry-run sets up and runs on CPU.

The lean sampler against HF generate is checked in tests/test_sampling.py.

    python -m pytest -q tests/test_fastpath.py
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from rft import grpo, models
from rft.config import ModelConfig
from rft.data.sat import make_sat_synth
from rft.logprobs import completion_logprobs, naive_logprobs, shared_prompt_logprobs
from rft.prompts import chat_text, encode_prompts
from rft.sampling import sample_lean

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


def test_bench_gpu_dry_run_sets_up_and_steps_on_cpu(tmp_path):
    """`bench_gpu --dry-run` times the real `rft.grpo.train` on a tiny stand-in (TRL's side needs trl installed)."""
    from experiments import bench_gpu

    out = tmp_path / "bench.json"
    report = bench_gpu.main(["--dry-run", "--no-trl", "--work", str(tmp_path), "--out", str(out)])
    assert report["device"] == "cpu"
    assert json.loads(out.read_text())["ours"]["step_s"] == report["ours"]["step_s"]
    from experiments import study  # the study's estimate takes the written report as its calibration

    rates = study.calibrated_rates(out)
    assert "cpu" in rates.basis and rates.decode_step > 0
    ours = report["ours"]
    assert len(ours["step_s_all"]) == report["warmup"] + report["steps"]  # every step went through the loop
    assert ours["step_s"] > 0 and ours["rollout_tokens_per_s"] > 0 and ours["update_s"] > 0
    assert ours["completion_tokens"] == report["T"]  # min = max new tokens
    assert all(math.isfinite(x) for x in ours["loss"])
    assert report["decode_bandwidth"]["bytes_per_step"] > 0
