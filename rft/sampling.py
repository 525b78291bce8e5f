"""The two rollout samplers and what turns their tokens into completions.

`sample_hf` is HF `generate` under a `GenerationConfig` built only from the suite's settings (the reference,
`method.sampler=hf`, and greedy evaluation). `sample_lean` (`method.sampler=lean`) draws the same tokens with the
same logits processing in the same order; both end a completion at any of `stop_token_ids`:

    scores = logits (float32); scores[suppressed] = -inf; scores[stop ids] = -inf while t < min_new_tokens;
    scores /= temperature; token = multinomial(softmax(scores)); finished rows emit pad.

The lean sampler prefills the B prompts once, decodes with fused q/k/v and gate/up weights (`fused_weights`, kept
until a weight changes) into a static KV cache, syncs with the host only every few tokens on CUDA, and can compile
its per-token step. M-RoPE: new text has equal t/h/w positions from the prompt's largest position + 1.
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import GenerationConfig

from rft.logprobs import prefill
from rft.processor import SUPPORTED_ARCHITECTURES
from rft.prompts import Prompts, suppressed_token_ids
from rft.rewards import extract_think

# Device type -> tokens between two checks for "every row has ended" (1 where absent). On CUDA each check is a
# host sync that drains the launch queue; rows that ended emit pad meanwhile and the surplus columns are trimmed.
# On the CPU a check costs nothing, while each surplus step costs a whole forward.
STOP_CHECK_EVERY = {"cuda": 16}
# The compiled step's KV cache length is rounded up to this, so prompts of nearby lengths share one graph.
COMPILED_CACHE_MULTIPLE = 64

# GenerationConfig fields that shape the distribution, at the value that switches each off. `generate` fills
# every field left None from the checkpoint's generation_config.json (Qwen2-VL-Instruct ships
# repetition_penalty 1.05, top_k 1, top_p 0.001, temperature 0.1), so each one is set explicitly.
_NEUTRAL = dict(
    repetition_penalty=1.0,
    encoder_repetition_penalty=1.0,
    no_repeat_ngram_size=0,
    encoder_no_repeat_ngram_size=0,
    guidance_scale=1.0,
    renormalize_logits=False,
    remove_invalid_values=False,
    num_beams=1,
    use_cache=True,
)
_NEUTRAL_WHEN_SAMPLING = dict(top_k=0, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0)
# Greedy search ignores the sampling fields; HF's global defaults keep the checkpoint's out (HF warns about them).
_DEFAULT_WHEN_GREEDY = dict(
    temperature=1.0, top_k=50, top_p=1.0, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0
)
# Fields whose only "off" value is None, so `generate` would take them from the checkpoint: refused there.
_MUST_BE_UNSET = (
    "bad_words_ids",
    "sequence_bias",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "exponential_decay_length_penalty",
    "begin_suppress_tokens",
    "watermarking_config",
    "max_time",
    "stop_strings",
    "prompt_lookup_num_tokens",
    "penalty_alpha",
    "dola_layers",
    "constraints",
    "force_words_ids",
    "token_healing",
    "num_beam_groups",
    "diversity_penalty",
)
_MUST_BE_UNSET_WHEN_SAMPLING = ("min_p", "top_h")


def stop_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the tokenizer's EOS, then each id of `model.generation_config.eos_token_id`.

    Qwen2-VL-Instruct lists two, `<|im_end|>` (151645) and `<|endoftext|>` (151643); HF `generate` stops at both.
    """
    ids = [tokenizer.eos_token_id]
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += [extra] if isinstance(extra, int) else list(extra or [])
    stops = list(dict.fromkeys(i for i in ids if i is not None))
    if not stops:
        raise ValueError(
            "neither the tokenizer nor model.generation_config names an EOS token; set the tokenizer's eos_token"
        )
    return stops


def hf_generation_config(
    model,
    tokenizer,
    *,
    num_return_sequences: int,
    max_new_tokens: int,
    temperature: float | None,
    min_new_tokens: int = 0,
) -> GenerationConfig:
    """The `GenerationConfig` of `sample_hf`: the suite's settings, and nothing from the checkpoint's file.

    Raises:
        ValueError: the checkpoint's generation config sets a field that has no neutral value (`_MUST_BE_UNSET`).
    """
    sampling = temperature is not None
    checkpoint = getattr(model, "generation_config", None)
    unset = _MUST_BE_UNSET + (_MUST_BE_UNSET_WHEN_SAMPLING if sampling else ())
    leaked = [k for k in unset if getattr(checkpoint, k, None) is not None]
    if leaked:
        raise ValueError(
            f"the checkpoint's generation_config sets {leaked}, which HF generate would apply on top of the suite's "
            "sampling settings; delete these keys from generation_config.json in the model folder (model.path)"
        )
    return GenerationConfig(
        **_NEUTRAL,
        **(dict(_NEUTRAL_WHEN_SAMPLING, temperature=temperature) if sampling else _DEFAULT_WHEN_GREEDY),
        do_sample=sampling,
        num_return_sequences=num_return_sequences,
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        suppress_tokens=suppressed_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=stop_token_ids(model, tokenizer),
    )


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
    compile: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batched generate call: G completions for each of B prompts (greedy when temperature is None).

    Every stop id is suppressed until `min_new_tokens` tokens exist (0 = off). This is the reference sampler
    (`method.sampler=hf`, and greedy evaluation); `sample_lean` is the faster drop-in (`method.sampler=lean`).
    `compile` is accepted so both samplers take the same arguments; `generate` is never compiled here.

    Returns:
        completion_ids: [B*G, T] rows grouped by prompt (row b*G+g is completion g of prompt b).
        completion_mask: [B*G, T] 1 up to and including the first stop token.
    """
    config = hf_generation_config(
        model,
        tokenizer,
        num_return_sequences=num_return_sequences,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        min_new_tokens=min_new_tokens,
    )
    out = model.generate(**prompts.model_inputs(), generation_config=config)
    completion_ids = out[:, prompts.input_ids.shape[1] :]  # [B*G, T]
    return completion_ids, completion_mask(completion_ids, tokenizer, stop_token_ids(model, tokenizer))


def completion_mask(
    completion_ids: torch.Tensor, tokenizer, stop_ids: list[int] | None = None
) -> torch.Tensor:
    """[N, T] mask: 1 up to and including the first stop token; 0 after it and on any vision special token.

    Args:
        stop_ids: `stop_token_ids(model, tokenizer)`; None: the tokenizer's EOS only.
    """
    dev = completion_ids.device
    stops = torch.tensor(stop_ids or [tokenizer.eos_token_id], device=dev)
    is_stop = torch.isin(completion_ids, stops)  # [N, T]
    after_stop = (is_stop.cumsum(dim=1) - is_stop.long()) > 0  # [N, T] strictly after the first stop
    vision = torch.isin(completion_ids, torch.tensor(suppressed_token_ids(tokenizer), device=dev))  # [N, T]
    return (~after_stop & ~vision).long()  # [N, T]


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


def sample_next(
    logits: torch.Tensor,
    step: int,
    *,
    suppress: torch.Tensor,
    stop_ids: torch.Tensor,
    min_new_tokens: int,
    temperature: float | None,
) -> torch.Tensor:
    """The reference sampler (HF's order): suppress, hold the stop ids back until `min_new_tokens`, temperature,
    sample.

    Args:
        logits: [N, V] float32 next-token logits.
        step: Index of the token being chosen (0 for the first new token).
        stop_ids: [S] ids that end a completion.
        temperature: None for greedy (argmax).

    Returns:
        [N] token ids.
    """
    scores = logits.clone()  # [N, V]
    scores[:, suppress] = -float("inf")
    if step < min_new_tokens:
        scores[:, stop_ids] = -float("inf")
    if temperature is None:
        return scores.argmax(-1)  # [N]
    probs = torch.softmax(scores / temperature, dim=-1)  # [N, V]
    return torch.multinomial(probs, num_samples=1).squeeze(1)  # [N]


class _FusedLayer(NamedTuple):
    """One decoder layer's decoding weights: q/k/v and gate/up concatenated (2 matmuls instead of 5)."""

    norm_in: torch.Tensor  # [E]
    w_qkv: torch.Tensor  # [(H+2K)*D, E]
    b_qkv: torch.Tensor  # [(H+2K)*D]
    w_o: torch.Tensor  # [E, H*D]
    norm_post: torch.Tensor  # [E]
    w_gate_up: torch.Tensor  # [2I, E]
    w_down: torch.Tensor  # [E, I]


class FusedWeights(NamedTuple):
    """Everything the decode step reads: tensors and plain numbers only, so a compiled step guards on shapes
    and dtypes, not on which tensors these are (new weights after an optimizer step reuse the compiled code)."""

    layers: tuple[_FusedLayer, ...]
    embed: torch.Tensor  # [V, E]
    norm: torch.Tensor  # [E] final norm
    head: torch.Tensor  # [V, E] lm_head
    heads: int
    kv_heads: int
    head_dim: int
    eps: float
    scale: float


# language model -> [sources, their (id, address, device), their versions, FusedWeights]; weak, so a dropped
# model takes its fused copy along.
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _source_weights(model) -> list[torch.Tensor]:
    """Every tensor `FusedWeights` is built from or refers to, in a fixed order."""
    lm = model.model.language_model
    out = [lm.embed_tokens.weight, lm.norm.weight, model.lm_head.weight]
    for layer in lm.layers:
        attn, mlp = layer.self_attn, layer.mlp
        out += [attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]
        out += [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias, attn.o_proj.weight]
        out += [mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight]
        out += [layer.input_layernorm.weight, layer.post_attention_layernorm.weight]
    return out


def _fused_parts(lm) -> list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]]:
    """Per layer, the q/k/v weights, q/k/v biases and gate/up weights that are concatenated."""
    return [
        (
            [layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight],
            [layer.self_attn.q_proj.bias, layer.self_attn.k_proj.bias, layer.self_attn.v_proj.bias],
            [layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight],
        )
        for layer in lm.layers
    ]


@torch.inference_mode()
def fused_weights(model) -> FusedWeights:
    """The model's `FusedWeights`, built once and refreshed only when a weight has changed.

    A source tensor's `_version` changes with every in-place update (optimizer steps, `copy_` under no_grad,
    `load_state_dict`): the fused tensors are then refreshed in place, so their addresses stay fixed (CUDA graphs
    replay on them). A new tensor or new storage (another model, `model.to(device)`) rebuilds them. Fused AdamW and
    writes through `.data` bump no version: the engines call `weights_changed` (or `forget_fused_weights`) after
    each optimizer step.
    """
    lm = model.model.language_model
    sources = _source_weights(model)
    storage = [(id(t), t.data_ptr(), t.device) for t in sources]
    versions = [t._version for t in sources]
    cached = _FUSED.get(lm)
    if cached is not None and cached[1] == storage:
        if cached[2] != versions:
            for fused, (qkv, bias, gate_up) in zip(cached[3].layers, _fused_parts(lm), strict=True):
                torch.cat(qkv, out=fused.w_qkv)
                torch.cat(bias, out=fused.b_qkv)
                torch.cat(gate_up, out=fused.w_gate_up)
            cached[2] = versions
        return cached[3]
    _FUSED.pop(lm, None)  # free the stale copy before building the new one
    attn0 = lm.layers[0].self_attn
    if hasattr(attn0.q_proj, "base_layer"):
        raise ValueError(
            "the lean sampler reads the raw layer weights and would ignore LoRA adapters; use sampler=hf"
        )
    if lm.config.hidden_act != "silu":
        raise ValueError(f"the lean sampler implements the silu MLP of Qwen2, not {lm.config.hidden_act!r}")
    layers = tuple(
        _FusedLayer(
            norm_in=layer.input_layernorm.weight,
            w_qkv=torch.cat(qkv),
            b_qkv=torch.cat(bias),
            w_o=layer.self_attn.o_proj.weight,
            norm_post=layer.post_attention_layernorm.weight,
            w_gate_up=torch.cat(gate_up),
            w_down=layer.mlp.down_proj.weight,
        )
        for layer, (qkv, bias, gate_up) in zip(lm.layers, _fused_parts(lm), strict=True)
    )
    fused = FusedWeights(
        layers=layers,
        embed=lm.embed_tokens.weight,
        norm=lm.norm.weight,
        head=model.lm_head.weight,
        heads=lm.config.num_attention_heads,
        kv_heads=lm.config.num_key_value_heads,
        head_dim=attn0.head_dim,
        eps=lm.norm.variance_epsilon,
        scale=attn0.scaling,
    )
    _FUSED[lm] = [sources, storage, versions, fused]  # sources: kept alive, so their ids stay theirs
    return fused


def weights_changed(model) -> None:
    """Tell the cache that the model's weights were updated in place: the next lean call refreshes the fused copy
    (at the same addresses). Engines call it after every optimizer step: fused AdamW, like writes through
    `.data`, updates weights without bumping their `_version`, so the version check alone would miss the step."""
    lm = getattr(getattr(model, "model", None), "language_model", None)
    cached = _FUSED.get(lm) if lm is not None else None
    if cached is not None:
        cached[2] = None


def forget_fused_weights(model) -> None:
    """Drop the model's cached `FusedWeights` and compiled-step KV cache (frees their memory; the next lean call
    rebuilds them)."""
    lm = getattr(getattr(model, "model", None), "language_model", None)
    if lm is not None:
        _FUSED.pop(lm, None)
        _KV_CACHE.pop(lm, None)


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """HF's Qwen2RMSNorm: statistics in float32, the normalised value rounded to the input dtype, then the weight."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)  # one fused op, the same value in float32
    h = x.float()
    return weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _decode_step(
    w: FusedWeights,
    tokens: torch.Tensor,
    pos: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: list[torch.Tensor],
    values: list[torch.Tensor],
    keep: torch.Tensor,
    cache_pos: torch.Tensor,
) -> torch.Tensor:
    """One token for every row through the whole language model; writes its K/V at cache index `pos`.

    Static shapes (the position is a tensor), so `torch.compile` builds one graph for every step and CUDA graphs
    can replay it. Attention is HF's eager attention (scores in the model dtype, softmax in float32) over the
    whole cache, masked to the written, non-padding positions; the R = H/K query heads that share a K/V head are
    batched against it, so K/V are never repeated.

    Args:
        tokens: [N] this step's input tokens.
        pos: [1] the cache index of this step.
        cos: [N, 1, D] rotary cosines of this step's position.
        sin: [N, 1, D] rotary sines with the first half negated, so rotate_half(x) * sin == roll(x) * sin.
        keys, values: per layer [N, K, S, D] caches, finite everywhere (zeros beyond what is written).
        keep: [N, 1, 1, S] False on left padding. cache_pos: [S] 0..S-1.

    Returns:
        [N, V] float32 next-token logits.
    """
    N = tokens.shape[0]
    H, K, D = w.heads, w.kv_heads, w.head_dim
    x = F.embedding(tokens, w.embed)  # [N, E]
    allowed = keep & (cache_pos <= pos)  # [N, 1, 1, S]
    for layer, k_cache, v_cache in zip(w.layers, keys, values, strict=True):
        qkv = F.linear(_rms_norm(x, layer.norm_in, w.eps), layer.w_qkv, layer.b_qkv).view(N, H + 2 * K, D)
        qk = qkv[:, : H + K]  # [N, H+K, D] q and k share the rotation
        qk = qk * cos + qk.roll(D // 2, dims=-1) * sin  # [N, H+K, D]
        k_cache.index_copy_(2, pos, qk[:, H:].unsqueeze(2))  # [N, K, 1, D] at cache index pos
        v_cache.index_copy_(2, pos, qkv[:, H + K :].unsqueeze(2))
        q = qk[:, :H].reshape(N, K, H // K, D)  # [N, K, R, D]
        scores = torch.matmul(q, k_cache.transpose(-1, -2)) * w.scale  # [N, K, R, S]
        scores = scores.masked_fill(~allowed, -float("inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)  # [N, K, R, S]
        attn = torch.matmul(probs, v_cache)  # [N, K, R, D]
        x = x + F.linear(attn.reshape(N, H * D), layer.w_o)  # [N, E]
        gate, up = F.linear(_rms_norm(x, layer.norm_post, w.eps), layer.w_gate_up).chunk(2, dim=-1)  # [N, I]
        x = x + F.linear(F.silu(gate) * up, layer.w_down)  # [N, E]
    return F.linear(_rms_norm(x, w.norm, w.eps), w.head).float()  # [N, V]


_COMPILED: dict[str, object] = {}
# language model -> (shape, keys, values) of the compiled step's KV cache, kept so CUDA graphs keep its address.
_KV_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _compiled_step(device: torch.device):
    """`_decode_step` under `torch.compile`, one per device type: CUDA graphs on CUDA (`reduce-overhead`)."""
    if device.type not in _COMPILED:
        mode = "reduce-overhead" if device.type == "cuda" else None
        _COMPILED[device.type] = torch.compile(_decode_step, mode=mode, fullgraph=True)
    return _COMPILED[device.type]


def _kv_cache(lm, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, reuse: bool):
    """Per layer zeroed [N, K, S, D] key and value caches; with `reuse`, the same buffers as the last call of this
    shape (the compiled step: CUDA graphs are recorded on their addresses)."""
    cached = _KV_CACHE.get(lm) if reuse else None
    if cached is not None and cached[0] == (shape, dtype, device):
        for t in (*cached[1], *cached[2]):
            t.zero_()
        return cached[1], cached[2]
    _KV_CACHE.pop(lm, None)
    n = len(lm.layers)
    keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)]
    values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n)]
    if reuse:
        _KV_CACHE[lm] = ((shape, dtype, device), keys, values)
    return keys, values


def sample_lean(
    model,
    tokenizer,
    prompts: Prompts,
    *,
    num_return_sequences: int,
    max_new_tokens: int,
    temperature: float | None,
    min_new_tokens: int = 0,
    compile: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The lean sampler (`method.sampler=lean`): same contract and distribution as `sample_hf`, less work.

    Args:
        compile: Run the per-token step under `torch.compile` (`method.compile_sampler`; CUDA graphs on CUDA);
            the first call pays the compile time. The eager step is the reference.

    Returns:
        completion_ids: [B*G, T'] with T' <= max_new_tokens the longest row (up to its first stop token), as
            HF's `generate` returns.
        completion_mask: [B*G, T'] 1 up to and including the first stop token.
    """
    stops = stop_token_ids(model, tokenizer)
    with torch.inference_mode():  # cheaper per op than no_grad; the loop is hundreds of small ops per token
        tokens = _lean_loop(
            model,
            tokenizer,
            prompts,
            num_return_sequences,
            max_new_tokens,
            temperature,
            min_new_tokens,
            stops,
            compile,
        )
    tokens = tokens.clone()  # a normal tensor again: the log-prob forward saves it for backward
    return tokens, completion_mask(tokens, tokenizer, stops)


def _lean_loop(
    model,
    tokenizer,
    prompts: Prompts,
    G: int,
    T: int,
    temperature: float | None,
    min_new_tokens: int,
    stops: list[int],
    compile: bool,
) -> torch.Tensor:
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
    weights = fused_weights(model)
    prompt_index = torch.arange(B, device=dev).repeat_interleave(G)  # [N]

    # Prefill: the B prompts once (vision tower included), keeping their K/V and last-position logits.
    out, position_ids = prefill(model, prompts)  # position_ids [3, B, P]
    next_pos = position_ids.amax(dim=(0, 2))[prompt_index] + 1  # [N] M-RoPE position of the first new token
    logits = out.logits[prompt_index, -1].float()  # [N, V]
    S = P + T
    if compile:  # nearby prompt lengths share one compiled graph
        S = -(-S // COMPILED_CACHE_MULTIPLE) * COMPILED_CACHE_MULTIPLE
    prompt_cache = out.cache.layers
    K, D = prompt_cache[0].keys.shape[1], prompt_cache[0].keys.shape[3]
    keys, values = _kv_cache(lm, (N, K, S, D), prompt_cache[0].keys.dtype, dev, reuse=compile)
    for layer, k, v in zip(prompt_cache, keys, values, strict=True):
        k[:, :, :P], v[:, :, :P] = layer.keys[prompt_index], layer.values[prompt_index]  # [N, K, P, D]
    del out, prompt_cache  # the prompt K/V now live in the preallocated cache
    keep = torch.ones(N, 1, 1, S, dtype=torch.bool, device=dev)  # [N, 1, 1, S] False on left padding
    keep[:, 0, 0, :P] = prompts.attention_mask[prompt_index] != 0
    cache_pos = torch.arange(S, device=dev)  # [S]
    steps = torch.arange(T, device=dev)  # [T]
    positions = steps + P  # [T] cache index of each decode step
    # Rotary tables of every decode position at once, through the model's own (M-RoPE) rotary module.
    rope_pos = (next_pos[:, None] + steps).unsqueeze(0).expand(3, N, T)  # [3, N, T] equal t/h/w
    cos, sin = lm.rotary_emb(weights.embed[:1], rope_pos)  # [N, T, D] each
    half = cos.shape[-1] // 2
    sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)  # [N, T, D] rotate_half's sign folded in
    step_fn = _decode_step
    if compile:
        step_fn = _compiled_step(dev)
        # Fixed addresses: CUDA graphs replay in place on these instead of copying them in at every step.
        tensors = [weights.embed, weights.norm, weights.head, *(x for layer in weights.layers for x in layer)]
        for t in [*tensors, *keys, *values]:
            torch._dynamo.mark_static_address(t, guard=False)

    suppress = torch.tensor(suppressed_token_ids(tokenizer), device=dev)  # [V_s]
    stop_ids = torch.tensor(stops, device=dev)  # [S_stop]
    pad = tokenizer.pad_token_id
    check_every = STOP_CHECK_EVERY.get(dev.type, 1)
    tokens = torch.full((N, T), pad, dtype=torch.long, device=dev)  # [N, T]
    unfinished = torch.ones(N, dtype=torch.bool, device=dev)  # [N]
    t = 0
    for t in range(T):
        nxt = sample_next(
            logits,
            t,
            suppress=suppress,
            stop_ids=stop_ids,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
        )  # [N]
        tokens[:, t] = torch.where(unfinished, nxt, pad)
        unfinished &= ~torch.isin(nxt, stop_ids)
        if t == T - 1 or ((t + 1) % check_every == 0 and not bool(unfinished.any())):
            break
        if compile and dev.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()  # the previous step's logits have been consumed
        logits = step_fn(
            weights,
            tokens[:, t],
            positions[t : t + 1],
            cos[:, t : t + 1],
            sin[:, t : t + 1],
            keys,
            values,
            keep,
            cache_pos,
        )  # [N, V]
    return _trim(tokens[:, : t + 1], stop_ids)


def _trim(tokens: torch.Tensor, stop_ids: torch.Tensor) -> torch.Tensor:
    """[N, T] -> [N, T'] the columns up to the longest row's first stop token (all of them if a row has none)."""
    is_stop = torch.isin(tokens, stop_ids)  # [N, T]
    ends = torch.where(is_stop.any(1), is_stop.int().argmax(1) + 1, tokens.shape[1])  # [N] row lengths
    return tokens[:, : int(ends.max())]


# method.sampler -> sampler; both take (model, tokenizer, prompts, *, num_return_sequences, max_new_tokens,
# temperature, min_new_tokens, compile) and return ([B*G, T] ids, [B*G, T] mask).
SAMPLERS = {"lean": sample_lean, "hf": sample_hf}
