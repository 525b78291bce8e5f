"""`rft.memory.estimate` against hand-computed numbers for a Qwen2-VL-2B-sized run.

The model: 1.5B language-model + 0.67B vision parameters in bf16, the real text config (vocabulary 151,936,
28 layers, 2 KV heads of 128), GRPO with G = 8 completions of up to 256 tokens, prompts up to 1,024 tokens,
micro-batches of 8 and beta = 0.04. Each case spells its arithmetic out.

    python -m pytest -q tests/test_memory.py
"""

from __future__ import annotations

import pytest
from transformers import Qwen2VLConfig

from rft.config import DistConfig, LoraConfig, ModelConfig, RFTConfig, RunConfig, SFTConfig, ZeroShotConfig
from rft.memory import GIB, LOGPROB_CHUNK_ELEMENTS, estimate, format_estimate

PARAMS = 1_500_000_000 + 670_000_000  # text + vision
TEXT = Qwen2VLConfig(
    text_config=dict(
        vocab_size=151_936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
    )
).get_text_config()  # head_dim is not set: 1536 / 12 = 128
LORA_PARAMS = 28 * 16 * ((1536 + 1536) * 2 + (1536 + 256) * 2)  # r=16 on q, k, v, o of 28 layers: 4,358,144

WEIGHTS = PARAMS * 2 / GIB  # bf16: 4.042 GiB
ADAM = PARAMS * (4 + 4 + 4) / GIB  # fp32 master + two fp32 moments: 24.25 GiB
# One micro-batch's LM-head output [8, 257, V] and its gradient in bf16, plus two fp32 chunks of 2**24 logits.
LOGITS = (2 * 8 * 257 * 151_936 * 2 + 2 * 4 * 2**24) / GIB  # 1.289 GiB


def kv(rows: int) -> float:
    """rows x (1,024 + 256) tokens x 28 layers x (K, V) x 2 heads x 128 x bf16."""
    return rows * 1280 * 28 * 2 * 2 * 128 * 2 / GIB  # 16 rows: 0.547 GiB


def run(dist: DistConfig | None = None, *, rollout: int = 16, lora: bool = False, method=None) -> RunConfig:
    method = method or RFTConfig(
        rollout_batch_size=rollout, group_size=8, micro_batch_size=8, max_new_tokens=256, beta=0.04
    )
    model = ModelConfig(dtype="bfloat16", lora=LoraConfig(enabled=lora))
    return RunConfig(method=method, model=model, dist=dist or DistConfig())


def check(got: dict[str, float], **want: float) -> None:
    assert set(got) == {
        "weights",
        "gradients",
        "optimizer",
        "reference",
        "logits",
        "kv_cache",
        "total",
        "cpu",
    }
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    device = ("weights", "gradients", "optimizer", "reference")
    assert got["total"] == pytest.approx(sum(got[k] for k in device) + max(got["logits"], got["kv_cache"]))


def test_single_process_bf16():
    """dist=none: everything on the one device; B=2 prompts x G=8 = 16 rollout rows."""
    got = estimate(PARAMS, PARAMS, run(), text_config=TEXT, world_size=1, param_bytes=2)
    check(
        got,
        weights=WEIGHTS,
        gradients=WEIGHTS,
        optimizer=ADAM,
        reference=WEIGHTS,
        logits=LOGITS,
        kv_cache=kv(16),
        cpu=0.0,
    )
    assert got["total"] == pytest.approx(3 * 4.0419 + 24.2516 + 1.2887, abs=1e-3)  # 37.67 GiB: not on 24 GB


def test_zero2_on_8_ranks():
    """Gradients and optimizer state over 8 ranks; weights and the reference whole; 64 rows / 8 ranks."""
    got = estimate(
        PARAMS,
        PARAMS,
        run(DistConfig(name="zero2", backend="deepspeed", zero_stage=2), rollout=64),
        text_config=TEXT,
        world_size=8,
        param_bytes=2,
    )
    check(
        got,
        weights=WEIGHTS,
        gradients=WEIGHTS / 8,
        optimizer=ADAM / 8,
        reference=WEIGHTS,
        logits=LOGITS,
        kv_cache=kv(8),
        cpu=0.0,
    )
    assert got["total"] == pytest.approx(4.0419 * (2 + 1 / 8) + 24.2516 / 8 + 1.2887, abs=1e-3)  # 12.91 GiB


def test_zero3_on_8_ranks_and_with_offload():
    """Weights and the reference sharded too; offload moves optimizer state and parameters to the CPU."""
    zero3 = DistConfig(name="zero3", backend="deepspeed", zero_stage=3)
    got = estimate(PARAMS, PARAMS, run(zero3, rollout=64), text_config=TEXT, world_size=8, param_bytes=2)
    check(
        got,
        weights=WEIGHTS / 8,
        gradients=WEIGHTS / 8,
        optimizer=ADAM / 8,
        reference=WEIGHTS / 8,
        logits=LOGITS,
        kv_cache=kv(8),
        cpu=0.0,
    )
    assert got["total"] == pytest.approx((3 * 4.0419 + 24.2516) / 8 + 1.2887, abs=1e-3)  # 5.84 GiB
    offload = DistConfig(
        name="zero3_offload", backend="deepspeed", zero_stage=3, offload_optimizer=True, offload_params=True
    )
    got = estimate(PARAMS, PARAMS, run(offload, rollout=64), text_config=TEXT, world_size=8, param_bytes=2)
    check(got, weights=0.0, optimizer=0.0, gradients=WEIGHTS / 8, cpu=(WEIGHTS + ADAM) / 8)


def test_lora():
    """Only the adapters train; no reference copy (the adapter is switched off instead)."""
    got = estimate(
        PARAMS + LORA_PARAMS, LORA_PARAMS, run(lora=True), text_config=TEXT, world_size=1, param_bytes=2
    )
    check(
        got,
        weights=(PARAMS + LORA_PARAMS) * 2 / GIB,
        gradients=LORA_PARAMS * 2 / GIB,  # 8.3 MiB
        optimizer=LORA_PARAMS * 12 / GIB,  # 50 MiB
        reference=0.0,
        logits=LOGITS,
        kv_cache=kv(16),
    )
    assert got["total"] == pytest.approx(4.0500 + 0.0081 + 0.0487 + 1.2887, abs=1e-3)  # 5.40 GiB


def test_other_methods_and_fp32():
    """fp32 weights need no master copy; beta = 0 loads no reference; SFT has no rollout; zero-shot only weights."""
    beta0 = RFTConfig(rollout_batch_size=16, group_size=8, micro_batch_size=8, max_new_tokens=256, beta=0.0)
    got = estimate(PARAMS, PARAMS, run(method=beta0), text_config=TEXT, world_size=1, param_bytes=4)
    check(got, weights=2 * WEIGHTS, gradients=2 * WEIGHTS, optimizer=PARAMS * 8 / GIB, reference=0.0)
    assert got["kv_cache"] == pytest.approx(2 * kv(16))
    sft = SFTConfig(batch_size=16, micro_batch_size=4, max_new_tokens=16)
    got = estimate(PARAMS, PARAMS, run(method=sft), text_config=TEXT, world_size=1, param_bytes=2)
    V = 151_936
    check(got, reference=0.0, kv_cache=0.0, logits=(2 * 4 * 17 * V * 2 + 2 * 4 * 4 * 16 * V) / GIB)
    assert 4 * 16 * V < LOGPROB_CHUNK_ELEMENTS  # the chunk is the whole (small) micro-batch here
    got = estimate(PARAMS, 0, run(method=ZeroShotConfig()), text_config=TEXT, world_size=1, param_bytes=2)
    check(got, weights=WEIGHTS, gradients=0.0, optimizer=0.0, reference=0.0, logits=0.0, kv_cache=0.0)
    assert got["total"] == pytest.approx(WEIGHTS)


def test_format_estimate_is_one_line():
    line = format_estimate(estimate(PARAMS, PARAMS, run(), text_config=TEXT, world_size=1, param_bytes=2))
    assert "\n" not in line
    assert line.startswith("memory estimate per rank (GiB): weights 4.04, gradients 4.04, optimizer 24.25")
    assert line.endswith("total 37.67; offloaded to CPU 0.00")
