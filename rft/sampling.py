"""The two rollout samplers and what turns their tokens into completions.

`sample_hf` is HF `generate` (the reference, `method.sampler=hf`, also greedy evaluation). `sample_lean`
(`method.sampler=lean`) samples from the same distribution with the same logits processing in the same order:

    scores = logits (float32); scores[suppressed] = -inf; scores[eos] = -inf while t < min_new_tokens;
    scores /= temperature; token = multinomial(softmax(scores)); finished rows emit pad.

It is cheaper on a small model: prefill runs on the B prompts, not B*G copies; the KV cache is preallocated once
and written in place; each decode step is a plain loop over the decoder layers with fused q/k/v and gate/up
weights; the loop stops as soon as every row has emitted EOS. M-RoPE: text after the prompt has equal t/h/w
positions starting at the prompt's largest position + 1, through the model's own rotary module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rft.logprobs import prefill
from rft.processor import SUPPORTED_ARCHITECTURES
from rft.prompts import Prompts, suppressed_token_ids
from rft.rewards import extract_think


@torch.no_grad()
def sample_hf(
    model,
    tokenizer,
    prompts: Prompts,
    *,
    num_return_sequences: int,
    max_new_tokens: int,
    temperature: float | None,
    min_new_tokens: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched generate call: G completions for each of B prompts (greedy when temperature is None).

    EOS is suppressed until `min_new_tokens` tokens exist (0 = off). This is the reference sampler
    (`method.sampler=hf`, and greedy evaluation); `sample_lean` is the faster drop-in (`method.sampler=lean`).

    Returns:
        completion_ids: [B*G, T] rows grouped by prompt (row b*G+g is completion g of prompt b).
        completion_mask: [B*G, T] 1 up to and including the first end-of-turn token.
    """
    sampling = temperature is not None
    out = model.generate(
        **prompts.model_inputs(),
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=None,
        top_k=None,
        num_return_sequences=num_return_sequences,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens or None,
        suppress_tokens=suppressed_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    completion_ids = out[:, prompts.input_ids.shape[1] :]  # [B*G, T]
    return completion_ids, completion_mask(completion_ids, tokenizer)


def completion_mask(completion_ids: torch.Tensor, tokenizer) -> torch.Tensor:
    """[N, T] mask: 1 up to and including the first EOS; 0 after it and on any vision special token."""
    is_eos = completion_ids == tokenizer.eos_token_id  # [N, T]
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # [N, T] strictly after the first EOS
    suppressed = torch.tensor(suppressed_token_ids(tokenizer), device=completion_ids.device)
    vision = torch.isin(completion_ids, suppressed)  # [N, T]
    return (~after_eos & ~vision).long()  # [N, T]


def completion_texts(tokenizer, completion_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Decode masked completions to text (special tokens dropped)."""
    return tokenizer.batch_decode(
        [ids[m.bool()].tolist() for ids, m in zip(completion_ids, mask, strict=True)],
        skip_special_tokens=True,
    )


def count_think_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Tokens inside the single <think>…</think> block of each text (0 when absent or malformed)."""
    thinks = [extract_think(t) or "" for t in texts]
    return [len(ids) for ids in tokenizer(thinks, add_special_tokens=False)["input_ids"]]


def _rms_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """HF's Qwen2 RMSNorm as one fused op (statistics in the input dtype; fp32 here, so HF's upcast is a no-op)."""
    return F.rms_norm(x, norm.weight.shape, norm.weight, norm.variance_epsilon)


class _FusedLayer:
    """One decoder layer's weights for decoding: q/k/v and gate/up concatenated (2 matmuls instead of 5), and the
    attention scale folded into the q rows (RoPE is linear, so scaling q before or after it is the same)."""

    def __init__(self, layer: torch.nn.Module):
        attn, mlp = layer.self_attn, layer.mlp
        s = attn.scaling
        self.w_qkv = torch.cat(
            [attn.q_proj.weight * s, attn.k_proj.weight, attn.v_proj.weight]
        )  # [(H+2K)*D, E]
        self.b_qkv = torch.cat([attn.q_proj.bias * s, attn.k_proj.bias, attn.v_proj.bias])  # [(H+2K)*D]
        self.w_o = attn.o_proj.weight  # [E, H*D]
        self.w_gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])  # [2I, E]
        self.w_down = mlp.down_proj.weight  # [E, I]
        self.act = mlp.act_fn
        self.norm_in, self.norm_post = layer.input_layernorm, layer.post_attention_layernorm
        self.heads = attn.config.num_attention_heads
        self.kv_heads = attn.config.num_key_value_heads
        self.head_dim = attn.head_dim


def _decode_step(
    layers: list[_FusedLayer],
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    pos: int,
    pad_mask: torch.Tensor | None,
) -> torch.Tensor:
    """One token for every row through all decoder layers; writes its K/V at cache index `pos`.

    Args:
        x: [N, E] input embeddings.
        cos: [N, 1, D] rotary cosines of this step's position.
        sin: [N, 1, D] rotary sines with the first half negated, so rotate_half(x) * sin == roll(x) * sin.
        keys, values: per layer [N, K, S, D] preallocated caches.
        pad_mask: [N, 1, 1, pos+1] True on cached positions that must not be attended to (left padding), or
            None when no row is padded.

    Returns:
        [N, E] hidden states after the last layer (before the final norm).
    """
    N = x.shape[0]
    for layer, k_cache, v_cache in zip(layers, keys, values, strict=True):
        H, K, D = layer.heads, layer.kv_heads, layer.head_dim
        qkv = F.linear(_rms_norm(layer.norm_in, x), layer.w_qkv, layer.b_qkv).view(
            N, H + 2 * K, D
        )  # [N, H+2K, D]
        qk = qkv[:, : H + K]  # [N, H+K, D] q (pre-scaled) and k share the rotation
        qk = qk * cos + qk.roll(D // 2, dims=-1) * sin  # [N, H+K, D]
        k_cache[:, :, pos] = qk[:, H:]  # [N, K, D]
        v_cache[:, :, pos] = qkv[:, H + K :]  # [N, K, D]
        # Plain attention for one query (SDPA's CPU flash kernel costs more than the math at q_len = 1); the
        # R = H/K query heads that share a K/V head are batched against it, so K/V are never repeated.
        q = qk[:, :H].reshape(N, K, H // K, D)  # [N, K, R, D]
        scores = torch.matmul(q, k_cache[:, :, : pos + 1].transpose(-1, -2))  # [N, K, R, S]
        if pad_mask is not None:
            scores = scores.masked_fill(pad_mask, -float("inf"))
        attn = torch.matmul(torch.softmax(scores, dim=-1), v_cache[:, :, : pos + 1])  # [N, K, R, D]
        x = x + F.linear(attn.reshape(N, H * D), layer.w_o)  # [N, E]
        gate, up = F.linear(_rms_norm(layer.norm_post, x), layer.w_gate_up).chunk(2, dim=-1)  # [N, I] each
        x = x + F.linear(layer.act(gate) * up, layer.w_down)  # [N, E]
    return x


def sample_next(
    logits: torch.Tensor,
    step: int,
    *,
    suppress: torch.Tensor,
    eos_id: int,
    min_new_tokens: int,
    temperature: float | None,
) -> torch.Tensor:
    """The reference sampler (HF's order): suppress, hold EOS back until `min_new_tokens`, temperature, sample.

    Args:
        logits: [N, V] float32 next-token logits.
        step: Index of the token being chosen (0 for the first new token).
        temperature: None for greedy (argmax).

    Returns:
        [N] token ids.
    """
    scores = logits.clone()  # [N, V]
    scores[:, suppress] = -float("inf")
    if step < min_new_tokens:
        scores[:, eos_id] = -float("inf")
    if temperature is None:
        return scores.argmax(-1)  # [N]
    probs = torch.softmax(scores / temperature, dim=-1)  # [N, V]
    return torch.multinomial(probs, num_samples=1).squeeze(1)  # [N]


def sample_lean(
    model,
    tokenizer,
    prompts: Prompts,
    *,
    num_return_sequences: int,
    max_new_tokens: int,
    temperature: float | None,
    min_new_tokens: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lean sampler (`method.sampler=lean`): same contract and distribution as `sample_hf`, less work.

    Returns:
        completion_ids: [B*G, T'] with T' <= max_new_tokens (the loop stops once every row has ended; HF's
            `generate` also returns only as many columns as its longest row).
        completion_mask: [B*G, T'] 1 up to and including the first end-of-turn token.
    """
    with torch.inference_mode():  # cheaper per op than no_grad; the loop is hundreds of small ops per token
        tokens = _lean_loop(
            model, tokenizer, prompts, num_return_sequences, max_new_tokens, temperature, min_new_tokens
        )
    tokens = tokens.clone()  # a normal tensor again: the log-prob forward saves it for backward
    return tokens, completion_mask(tokens, tokenizer)


def _lean_loop(
    model, tokenizer, prompts: Prompts, G: int, T: int, temperature: float | None, min_new_tokens: int
):
    """The body of `sample_lean`: prefill, cache, decode loop. Returns [B*G, T'] token ids."""
    if model.config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(
            f"method.sampler=lean supports {SUPPORTED_ARCHITECTURES}, not {model.config.model_type!r}; "
            "set method.sampler=hf"
        )
    B, P = prompts.input_ids.shape
    N = B * G
    dev = prompts.input_ids.device
    lm = model.model.language_model
    prompt_index = torch.arange(B, device=dev).repeat_interleave(G)  # [N]

    # Prefill: the B prompts once (vision tower included), keeping their K/V and last-position logits.
    out, position_ids = prefill(model, prompts)  # position_ids [3, B, P]
    next_pos = position_ids.amax(dim=(0, 2))[prompt_index] + 1  # [N] M-RoPE position of the first new token
    dtype = lm.embed_tokens.weight.dtype
    keys, values = [], []
    for layer in out.cache.layers:
        k_prompt, v_prompt = layer.keys[prompt_index], layer.values[prompt_index]  # [N, K, P, D]
        k = k_prompt.new_empty(N, k_prompt.shape[1], P + T, k_prompt.shape[3])  # [N, K, P+T, D]
        v = torch.empty_like(k)
        k[:, :, :P], v[:, :, :P] = k_prompt, v_prompt
        keys.append(k)
        values.append(v)
    pad_mask = torch.zeros(
        N, 1, 1, P + T, dtype=torch.bool, device=dev
    )  # [N, 1, 1, P+T] True on left padding
    pad_mask[:, 0, 0, :P] = prompts.attention_mask[prompt_index] == 0
    has_pad = bool(pad_mask.any())
    layers = [_FusedLayer(layer) for layer in lm.layers]
    # Rotary tables of every decode position at once, through the model's own (M-RoPE) rotary module.
    pos = (
        (next_pos[:, None] + torch.arange(T, device=dev)).unsqueeze(0).expand(3, N, T)
    )  # [3, N, T] equal t/h/w
    cos, sin = lm.rotary_emb(lm.embed_tokens.weight[:1].to(dtype), pos)  # [N, T, D] each
    D = cos.shape[-1]
    # rotate_half's sign folded into sin: rotate_half(x) * sin == roll(x, D/2) * sin_signed.
    sin = torch.cat([-sin[..., : D // 2], sin[..., D // 2 :]], dim=-1)  # [N, T, D]

    suppress = torch.tensor(suppressed_token_ids(tokenizer), device=dev)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    logits = out.logits[prompt_index, -1].float()  # [N, V]
    tokens = torch.full((N, T), pad, dtype=torch.long, device=dev)  # [N, T]
    unfinished = torch.ones(N, dtype=torch.bool, device=dev)  # [N]
    for t in range(T):
        nxt = sample_next(
            logits, t, suppress=suppress, eos_id=eos, min_new_tokens=min_new_tokens, temperature=temperature
        )  # [N]
        tokens[:, t] = torch.where(unfinished, nxt, pad)
        unfinished &= nxt != eos
        if t == T - 1 or not bool(unfinished.any()):
            return tokens[:, : t + 1]
        x = lm.embed_tokens(tokens[:, t]).to(dtype)  # [N, E]
        mask_t = pad_mask[..., : P + t + 1] if has_pad else None
        cos_t, sin_t = cos[:, t : t + 1], sin[:, t : t + 1]  # [N, 1, D]
        h = _decode_step(layers, x, cos_t, sin_t, keys, values, P + t, mask_t)  # [N, E]
        logits = model.lm_head(_rms_norm(lm.norm, h)).float()  # [N, V]
    return tokens


# method.sampler -> sampler; both take (model, tokenizer, prompts, *, num_return_sequences, max_new_tokens,
# temperature, min_new_tokens) and return ([B*G, T] ids, [B*G, T] mask).
SAMPLERS = {"lean": sample_lean, "hf": sample_hf}
