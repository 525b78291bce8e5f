"""Per-token log-probs of completions under a policy or reference model, and the shared prompt prefill.

`completion_logprobs` is the straightforward forward: prompt and completion together, each prompt's image through
the vision tower once however many of its completions are in the batch, and only completion positions reach the
LM head. `shared_prompt_logprobs` runs each prompt once per step and lets its G completions attend to its K/V, in
the forward and the backward: same values and gradients, B*P + B*G*T tokens instead of B*G*(P+T).
`tests/test_fastpath.py` checks the two against each other. Both turn logits into log-probs with
`selective_logprobs`, which works chunk by chunk and never holds an fp32 copy of the whole `[M, T, V]` logits
(`tests/test_logprobs.py` checks it against the textbook `log_softmax` and measures the memory it saves).
Under gradient checkpointing the grad-enabled shared-prompt call falls back to `completion_logprobs`
(`shared_prompt_logprobs` says why).
"""

from __future__ import annotations

import logging

import torch
from torch.autograd.function import once_differentiable
from transformers.modeling_outputs import BaseModelOutputWithPooling

from rft.memory import LOGPROB_CHUNK_ELEMENTS
from rft.prompts import Prompts, select_prompts

log = logging.getLogger(__name__)


def _chunks(M: int, T: int, V: int, budget: int) -> list[tuple[slice, slice]]:
    """(rows, positions) blocks of an [M, T, V] tensor with at most `budget` elements each (at least 1 position)."""
    if T * V <= budget:
        rows = budget // max(T * V, 1)
        return [(slice(i, i + rows), slice(0, T)) for i in range(0, M, rows)]
    steps = max(1, budget // V)  # a row is too big: split it over positions
    return [(slice(i, i + 1), slice(t, t + steps)) for i in range(M) for t in range(0, T, steps)]


class _SelectiveLogprobs(torch.autograd.Function):
    """log_softmax(logits / temperature) at `ids`, one chunk at a time; saves the logits, not an fp32 copy.

    Backward recomputes each chunk's softmax from the saved logits and the [M, T] logsumexp:
    d logp / d logits = (onehot(ids) - softmax(logits / temperature)) / temperature.
    """

    @staticmethod
    def forward(
        ctx, logits: torch.Tensor, ids: torch.Tensor, temperature: float, budget: int
    ) -> torch.Tensor:
        M, T, V = logits.shape
        logp = torch.empty(M, T, dtype=torch.float32, device=logits.device)  # [M, T]
        lse = torch.empty(M, T, dtype=torch.float32, device=logits.device)  # [M, T] logsumexp per position
        for r, t in _chunks(M, T, V, budget):
            x = logits[r, t].to(torch.float32, copy=True).div_(temperature)  # [m, t, V] fp32, this chunk only
            lse[r, t] = torch.logsumexp(x, dim=-1)  # [m, t]
            logp[r, t] = x.gather(-1, ids[r, t].unsqueeze(-1)).squeeze(-1) - lse[r, t]  # [m, t]
            del x  # before the next chunk's copy
        ctx.save_for_backward(logits, ids, lse)
        ctx.temperature, ctx.budget = temperature, budget
        return logp

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logp: torch.Tensor):
        logits, ids, lse = ctx.saved_tensors  # [M, T, V], [M, T], [M, T]
        temperature = ctx.temperature
        M, T, V = logits.shape
        grad = torch.empty_like(logits)  # [M, T, V] in the logits' dtype
        g = grad_logp.to(torch.float32) / temperature  # [M, T]
        for r, t in _chunks(M, T, V, ctx.budget):
            x = logits[r, t].to(torch.float32, copy=True).div_(temperature)  # [m, t, V] fp32, this chunk only
            x.sub_(lse[r, t].unsqueeze(-1)).exp_()  # [m, t, V] softmax
            x.mul_(-g[r, t].unsqueeze(-1))  # [m, t, V] -g * softmax / temperature
            # [m, t, V] + g / temperature at the chosen token
            x.scatter_add_(-1, ids[r, t].unsqueeze(-1), g[r, t].unsqueeze(-1))
            grad[r, t] = x  # cast to the logits' dtype
            del x
        return grad, None, None, None


def selective_logprobs(
    logits: torch.Tensor,
    ids: torch.Tensor,
    temperature: float = 1.0,
    chunk_elements: int = LOGPROB_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Log-prob of each chosen token: `log_softmax(logits.float() / temperature).gather(ids)`, in chunks.

    Equal in value and gradient to the textbook form, but the fp32 work happens `chunk_elements` logits at a
    time: no fp32 (or temperature-divided) copy of the whole tensor is made, and backward keeps only the logits
    (in their own dtype) and an [M, T] logsumexp. At Qwen's 151,936-token vocabulary that is the difference
    between 3-4 full-size fp32 copies and one 64 MiB chunk.

    Args:
        logits: [M, T, V] any float dtype (a view is fine: chunks are views of it).
        ids: [M, T] the token whose log-prob is wanted at each position.
        temperature: Logits are divided by it (per chunk, in fp32).
        chunk_elements: Upper bound on the logits one fp32 chunk holds (at least one position).

    Returns:
        [M, T] fp32 log-probs.
    """
    return _SelectiveLogprobs.apply(logits, ids, temperature, chunk_elements)  # [M, T]


def _image_features(model, prompts: Prompts, prompt_rows: list[int]) -> list[list[torch.Tensor]]:
    """Run the vision tower once over the given prompts; returns, per listed prompt, its images' embeddings."""
    grid = prompts.image_grid_thw  # [n_images, 3]
    patches = grid.prod(-1).tolist()  # patches per image
    first_image = [0]
    for n in prompts.images_per_prompt:
        first_image.append(first_image[-1] + n)
    first_patch = [0]
    for n in patches:
        first_patch.append(first_patch[-1] + n)
    images = [i for p in prompt_rows for i in range(first_image[p], first_image[p + 1])]
    pixel_values = torch.cat([prompts.pixel_values[first_patch[i] : first_patch[i + 1]] for i in images])
    feats = model.model.get_image_features(pixel_values, grid[images], return_dict=True).pooler_output
    out, k = [], 0
    for p in prompt_rows:
        n = prompts.images_per_prompt[p]
        out.append(list(feats[k : k + n]))
        k += n
    return out


def completion_logprobs(
    model,
    prompts: Prompts,
    prompt_index: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Per-token log-probs of completion tokens under `model` (policy or reference).

    Only the completion positions reach the LM head (`logits_to_keep`), and each prompt's image goes through the
    vision tower once however many of its completions are in the batch.

    Args:
        prompts: The B prompts the completions were generated from.
        prompt_index: [M] which prompt each completion row belongs to.
        completion_ids: [M, T] right-padded completions.
        completion_mask: [M, T] valid completion tokens.
        temperature: Logits are divided by the sampling temperature, so log-probs match the sampling policy.

    Returns:
        [M, T] log-probs (0 where the mask is 0).
    """
    T = completion_ids.shape[1]
    pidx = prompt_index.tolist()
    unique = sorted(set(pidx))
    feats = dict(zip(unique, _image_features(model, prompts, unique), strict=True))
    pooled = tuple(f for p in pidx for f in feats[p])  # one entry per image of each row, in row order
    first_image = [0]  # host-side offsets: the index of each prompt's first image
    for n in prompts.images_per_prompt:
        first_image.append(first_image[-1] + n)
    grid = torch.cat(
        [prompts.image_grid_thw[first_image[p] : first_image[p + 1]] for p in pidx]
    )  # [images, 3]
    safe_ids = completion_ids.masked_fill(completion_mask == 0, 0)  # [M, T] no vision ids reach the forward
    input_ids = torch.cat([prompts.input_ids[prompt_index], safe_ids], dim=1)  # [M, P+T]
    attention = torch.cat([prompts.attention_mask[prompt_index], completion_mask], dim=1)  # [M, P+T]
    mm_types = torch.cat(
        [prompts.mm_token_type_ids[prompt_index], torch.zeros_like(completion_ids)], dim=1
    )  # [M, P+T]
    out = model(
        input_ids=input_ids,
        attention_mask=attention,
        mm_token_type_ids=mm_types,
        image_grid_thw=grid,
        mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=pooled)},
        logits_to_keep=T + 1,
        use_cache=False,
    )
    # Position t predicts completion token t; the last position predicts nothing (any id; dropped). Passing the LM
    # head's whole output rather than the view [:, :-1] lets its gradient be allocated once, not again by a slice.
    next_ids = torch.cat([completion_ids, completion_ids[:, :1]], dim=1)  # [M, T+1]
    logp = selective_logprobs(out.logits, next_ids, temperature)[:, :-1]  # [M, T]
    return logp * completion_mask


def prefill(model, prompts: Prompts):
    """Run the prompts once (vision tower included) at their M-RoPE positions, keeping K/V and the last logits.

    Shared by the lean decoder and the shared-prompt log-prob forward.

    Returns:
        (model output with `.cache` and last-position `.logits` [B, 1, V], position_ids [3, B, P]).
    """
    position_ids, _ = model.model.get_rope_index(
        prompts.input_ids,
        prompts.mm_token_type_ids,
        image_grid_thw=prompts.image_grid_thw,
        attention_mask=prompts.attention_mask,
    )  # [3, B, P]
    out = model(
        **prompts.model_inputs(),
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
    )
    return out, position_ids


def _replays_layers(model) -> bool:
    """True when this forward would run checkpointed layers (HF's own condition: a layer flag, training, grad)."""
    return (
        model.training
        and torch.is_grad_enabled()
        and any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    )


_fallback_logged = False


def _log_fallback_once() -> None:
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        log.info(
            "gradient checkpointing is on: the grad-enabled log-prob forward runs prompt+completion per row "
            "(completion_logprobs), since checkpointed layers keep no K/V to share; no-grad passes still share it"
        )


def shared_prompt_logprobs(
    model,
    prompts: Prompts,
    prompt_index: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """`completion_logprobs` with each prompt run once: same contract, same values, fewer FLOPs.

    Each distinct prompt (text and image) goes through the model once; its K/V are indexed out to the rows that
    answer it, and only the completion tokens run on top, attending to that shared prefix. Gradients from all
    rows flow back through the shared K/V into the prompt's forward (the index's backward sums them), so the
    loss and its gradient equal the full-sequence forward's. Work per step drops from B*G*(P+T) to
    B*P + B*G*T tokens. The last completion token is only predicted, never fed.

    Under gradient checkpointing, a call that builds a graph (training mode, grad enabled) runs
    `completion_logprobs` instead, with a one-time log line. HF replays every checkpointed decoder layer in the
    backward, so a layer that writes K/V into a cache would write them twice; it therefore drops the cache inside
    checkpointed layers (the prefill returns none, and a cache handed to the completion forward is ignored, so
    completions would silently stop attending to their prompt). Keeping the prompt's K/V would mean running the
    prefill unchecked and patching HF's private cache rules; the full-sequence forward is the same math with
    the same gradient, at B*G*(P+T) tokens for that call. No-grad calls (reference and old-policy passes) do not
    replay layers and still share the prompt.

    Shapes as in `completion_logprobs`: prompt_index [M], completion_ids/completion_mask [M, T] -> [M, T].
    """
    if _replays_layers(model):
        _log_fallback_once()
        return completion_logprobs(model, prompts, prompt_index, completion_ids, completion_mask, temperature)
    unique = sorted(set(prompt_index.tolist()))
    local = torch.tensor(
        [unique.index(p) for p in prompt_index.tolist()], device=completion_ids.device
    )  # [M] row -> its prompt in `unique`
    sub = select_prompts(prompts, unique)
    T = completion_ids.shape[1]
    prefix, position_ids = prefill(model, sub)  # position_ids [3, U, P]
    first = prefix.logits[local]  # [M, 1, V] the prompt's last position predicts completion token 0
    logp = selective_logprobs(first, completion_ids[:, :1], temperature)  # [M, 1]
    if T > 1:
        cache = prefix.cache
        cache.batch_select_indices(local)  # per layer [M, K, P, D]; backward sums the G copies
        # Text after the prompt: equal t/h/w positions from the prompt's largest position + 1 (HF's rope_deltas).
        start = position_ids.amax(dim=(0, 2))[local] + 1  # [M]
        steps = torch.arange(T - 1, device=start.device)
        pos = (start[:, None] + steps).unsqueeze(0).expand(3, -1, -1)  # [3, M, T-1]
        # No vision ids reach the forward (masked positions hold 0).
        safe_ids = completion_ids.masked_fill(completion_mask == 0, 0)  # [M, T]
        attention = torch.cat([sub.attention_mask[local], completion_mask[:, :-1]], dim=1)  # [M, P+T-1]
        out = model(
            input_ids=safe_ids[:, :-1],
            attention_mask=attention,
            position_ids=pos,
            cache=cache,
            use_cache=True,
        )
        rest = selective_logprobs(out.logits, completion_ids[:, 1:], temperature)  # [M, T-1]
        logp = torch.cat([logp, rest], dim=1)  # [M, T]; the [M, T, V] logits are never concatenated
    return logp * completion_mask


def naive_logprobs(model, prompts, prompt_index, ids, mask, keep_all_logits: bool = False) -> torch.Tensor:
    """The textbook forward: every row carries its full prompt and its own copy of the prompt's image(s).

    The reference the fast paths are tested against (tests/test_fastpath.py) and the floor `make bench` measures.

    Shapes as in `completion_logprobs` (temperature 1): prompt_index [M], ids/mask [M, T] -> [M, T].
    keep_all_logits=True also skips `logits_to_keep`, so the LM head runs on every position.
    """
    T = ids.shape[1]
    rows = select_prompts(prompts, prompt_index.tolist())  # M prompts, images copied per row
    safe = ids.masked_fill(mask == 0, 0)  # [M, T]
    out = model(
        input_ids=torch.cat([rows.input_ids, safe], 1),  # [M, P+T]
        attention_mask=torch.cat([rows.attention_mask, mask], 1),  # [M, P+T]
        mm_token_type_ids=torch.cat([rows.mm_token_type_ids, torch.zeros_like(ids)], 1),  # [M, P+T]
        pixel_values=rows.pixel_values,  # [M * patches, D]
        image_grid_thw=rows.image_grid_thw,
        logits_to_keep=0 if keep_all_logits else T + 1,
        use_cache=False,
    )
    logits = out.logits[:, -(T + 1) : -1].float()  # [M, T, V] position t predicts completion token t
    logp = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, -1)  # [M, T]
    return logp * mask
