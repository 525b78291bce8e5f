"""A per-rank estimate of accelerator memory, computed from the config and the model's sizes and logged at start.

`estimate` is pure arithmetic: weights, gradients, AdamW state, the reference model, the logits of one
micro-batch's log-prob forward and the KV cache of a rollout, in GiB per rank, with ZeRO sharding and CPU
offload applied. It counts no activations (they depend on checkpointing and the attention kernel) and no
DeepSpeed buckets or allocator slack, so read it as a floor: a total near the card's memory will not fit.
`LOGPROB_CHUNK_ELEMENTS` is the chunk size of `rft.logprobs.selective_logprobs`, kept here so the estimate and
the code agree. Layer: imports `rft.config` only.
"""

from __future__ import annotations

from rft.config import RFTConfig, RunConfig, SFTConfig

GIB = 2**30
# Logits one fp32 chunk of `rft.logprobs.selective_logprobs` holds: 64 MiB, about 110 positions at Qwen's vocab.
LOGPROB_CHUNK_ELEMENTS = 1 << 24
FP32 = 4


def estimate(
    model_params: int,
    trainable_params: int,
    cfg: RunConfig,
    *,
    text_config,
    world_size: int,
    param_bytes: int,
) -> dict[str, float]:
    """Per-rank memory of a run, in GiB.

    Args:
        model_params: Every parameter of the policy (vision tower, language model, LoRA adapters).
        trainable_params: Those with requires_grad (all of them, fewer with frozen vision, the adapters with LoRA).
        cfg: The run; method (RFT, SFT or zero-shot), model.lora, dist and world size decide the terms.
        text_config: The language model's HF config (`model.config.get_text_config()`): `vocab_size`,
            `num_hidden_layers`, `num_key_value_heads`, and `head_dim` or `hidden_size / num_attention_heads`.
        world_size: Ranks training together.
        param_bytes: Bytes per weight (2 for bf16/fp16, 4 for fp32).

    Returns:
        weights, gradients, optimizer, reference, logits, kv_cache and total on the accelerator, and cpu (what
        offload keeps in host memory). The total counts the rollout's KV cache and the update's logits as
        alternatives (they are never alive together): weights + gradients + optimizer + reference +
        max(logits, kv_cache).
    """
    m, dist = cfg.method, cfg.dist
    zero = dist.zero_stage if dist.backend == "deepspeed" else 0
    shard_states = world_size if zero >= 2 else 1  # ZeRO-2/3: gradients and optimizer state
    shard_weights = world_size if zero == 3 else 1  # ZeRO-3: parameters too
    training = isinstance(m, RFTConfig | SFTConfig)

    weights = model_params * param_bytes / shard_weights
    gradients = trainable_params * param_bytes / shard_states if training else 0.0
    # AdamW: two fp32 moments; low-precision weights also get an fp32 master copy (DeepSpeed's bf16/fp16 mode
    # keeps one too, sharded like the moments).
    master = FP32 if param_bytes < FP32 else 0
    optimizer = trainable_params * (2 * FP32 + master) / shard_states if training else 0.0
    # The KL reference: a frozen copy of the weights (none with LoRA: the adapter is switched off instead).
    has_ref = isinstance(m, RFTConfig) and m.beta > 0 and not cfg.model.lora.enabled
    reference = model_params * param_bytes / shard_weights if has_ref else 0.0

    # One micro-batch's log-prob forward: the LM head's [M, T+1, V] output and its gradient, in the weights'
    # dtype, plus one fp32 chunk and logsumexp's temporary of the same size (selective_logprobs).
    V = text_config.vocab_size
    logits = 0.0
    if training:
        M, T = m.micro_batch_size, m.max_new_tokens
        logits = 2 * M * (T + 1) * V * param_bytes + 2 * FP32 * min(LOGPROB_CHUNK_ELEMENTS, M * T * V)

    # The rollout's KV cache: this rank's B*G rows x (prompt + new tokens) x layers x (K, V) x heads x head_dim.
    kv_cache = 0.0
    if isinstance(m, RFTConfig):
        head_dim = getattr(text_config, "head_dim", None) or (
            text_config.hidden_size // text_config.num_attention_heads
        )
        rows = m.rollout_batch_size // world_size
        length = m.max_prompt_tokens + m.max_new_tokens
        kv_cache = (
            rows * length * text_config.num_hidden_layers * 2 * text_config.num_key_value_heads * head_dim
        ) * param_bytes

    cpu = 0.0
    if zero and dist.offload_optimizer:
        cpu, optimizer = cpu + optimizer, 0.0
    if zero == 3 and dist.offload_params:
        cpu, weights = cpu + weights, 0.0

    parts = dict(
        weights=weights,
        gradients=gradients,
        optimizer=optimizer,
        reference=reference,
        logits=logits,
        kv_cache=kv_cache,
    )
    total = weights + gradients + optimizer + reference + max(logits, kv_cache)
    return {k: v / GIB for k, v in {**parts, "total": total, "cpu": cpu}.items()}


def format_estimate(d: dict[str, float]) -> str:
    """One log line: `memory estimate per rank (GiB): weights 4.04, ..., total 37.6; offloaded to CPU 0.00`."""
    parts = ", ".join(f"{k} {d[k]:.2f}" for k in d if k != "cpu")
    return f"memory estimate per rank (GiB): {parts}; offloaded to CPU {d['cpu']:.2f}"
