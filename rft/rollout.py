"""Prompt encoding, batched generation and per-token log-probs: the only code that knows the model is a VLM.

Vision inputs are kept per prompt: a `Prompts` batch carries each prompt's pixel patches once, and the G
completions of a prompt point back to it by index. The log-prob forward runs the vision tower once per prompt
and reuses its embeddings for all G completions (gradients from the G copies sum into the tower), instead of
tiling the image G times. `shared_prompt_logprobs` goes one step further: the whole prompt (text and image) runs
once per step and its K/V are shared by the G completions, in the forward and in the backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image
from transformers.modeling_outputs import BaseModelOutputWithPooling

from rft.rewards import extract_think

# Tokens a completion must never contain: a sampled <|image_pad|> would make the log-prob forward expect image
# features that do not exist. Generation suppresses them; `completion_mask` masks any that slip through.
VISION_SPECIAL_TOKENS = (
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)


@dataclass
class Prompts:
    """B encoded prompts, left-padded, with their vision inputs.

    Attributes:
        input_ids: [B, P] left-padded token ids.
        attention_mask: [B, P].
        mm_token_type_ids: [B, P] 1 on image tokens (needed for M-RoPE positions).
        pixel_values: [sum of patches, D] all prompts' patches, prompt by prompt.
        image_grid_thw: [n_images, 3] grid of every image, prompt by prompt.
        images_per_prompt: [B] number of images of each prompt.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    mm_token_type_ids: torch.Tensor
    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    images_per_prompt: list[int]

    @property
    def num_prompts(self) -> int:
        return self.input_ids.shape[0]

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """The keyword arguments a Qwen2-VL forward or `generate` takes for these prompts."""
        return dict(
            input_ids=self.input_ids,
            attention_mask=self.attention_mask,
            mm_token_type_ids=self.mm_token_type_ids,
            pixel_values=self.pixel_values,
            image_grid_thw=self.image_grid_thw,
        )


def chat_text(processor, user_text: str, num_images: int) -> str:
    """The chat-formatted prompt: the image(s) first, then the text, then the assistant header."""
    content = [{"type": "image"}] * num_images + [{"type": "text", "text": user_text}]
    return processor.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )


def encode_prompts(processor, texts: list[str], images: list[tuple[Image.Image, ...]]) -> Prompts:
    """Tokenise B chat-formatted prompts with their images (left padding, for generation)."""
    flat = [img.convert("RGB") for imgs in images for img in imgs]
    enc = processor(text=texts, images=flat, padding=True, padding_side="left", return_tensors="pt")
    return Prompts(
        input_ids=enc["input_ids"],  # [B, P]
        attention_mask=enc["attention_mask"],  # [B, P]
        mm_token_type_ids=enc["mm_token_type_ids"],  # [B, P]
        pixel_values=enc["pixel_values"],  # [patches, D]
        image_grid_thw=enc["image_grid_thw"],  # [n_images, 3]
        images_per_prompt=[len(imgs) for imgs in images],
    )


def suppressed_token_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS]


@torch.no_grad()
def generate(
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

    EOS is suppressed until `min_new_tokens` tokens exist (0 = off). `rft.decode.generate` is the faster
    drop-in (`method.decode=lean`); this is the reference path (`method.decode=hf`).

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


def decode(tokenizer, completion_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Decode masked completions to text (special tokens dropped)."""
    return tokenizer.batch_decode(
        [ids[m.bool()].tolist() for ids, m in zip(completion_ids, mask, strict=True)],
        skip_special_tokens=True,
    )


def count_think_tokens(tokenizer, texts: list[str]) -> list[int]:
    """Tokens inside the single <think>…</think> block of each text (0 when absent or malformed)."""
    thinks = [extract_think(t) or "" for t in texts]
    return [len(ids) for ids in tokenizer(thinks, add_special_tokens=False)["input_ids"]]


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
    first_image = torch.tensor([0] + prompts.images_per_prompt).cumsum(0)
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
    logits = out.logits[:, :-1].float() / temperature  # [M, T, V] position t predicts completion token t
    token_logits = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # [M, T]
    logp = token_logits - torch.logsumexp(logits, dim=-1)  # [M, T]
    return logp * completion_mask


def select_prompts(prompts: Prompts, rows: list[int]) -> Prompts:
    """The listed prompts only (their ids, masks, patches and grids), in the listed order."""
    first_image = [0]
    for n in prompts.images_per_prompt:
        first_image.append(first_image[-1] + n)
    patches = prompts.image_grid_thw.prod(-1).tolist()
    first_patch = [0]
    for n in patches:
        first_patch.append(first_patch[-1] + n)
    images = [i for p in rows for i in range(first_image[p], first_image[p + 1])]
    return Prompts(
        input_ids=prompts.input_ids[rows],  # [U, P]
        attention_mask=prompts.attention_mask[rows],  # [U, P]
        mm_token_type_ids=prompts.mm_token_type_ids[rows],  # [U, P]
        pixel_values=torch.cat([prompts.pixel_values[first_patch[i] : first_patch[i + 1]] for i in images]),
        image_grid_thw=prompts.image_grid_thw[images],  # [images, 3]
        images_per_prompt=[prompts.images_per_prompt[p] for p in rows],
    )


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

    Shapes as in `completion_logprobs`: prompt_index [M], completion_ids/completion_mask [M, T] -> [M, T].
    """
    unique = sorted(set(prompt_index.tolist()))
    local = torch.tensor(
        [unique.index(p) for p in prompt_index.tolist()], device=completion_ids.device
    )  # [M] row -> its prompt in `unique`
    sub = select_prompts(prompts, unique)
    T = completion_ids.shape[1]
    prefix, position_ids = prefill(model, sub)  # position_ids [3, U, P]
    logits = prefix.logits[local]  # [M, 1, V] the prompt's last position predicts completion token 0
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
        logits = torch.cat([logits, out.logits], dim=1)  # [M, T, V]
    logits = logits.float() / temperature  # [M, T, V]
    token_logits = logits.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)  # [M, T]
    logp = token_logits - torch.logsumexp(logits, dim=-1)  # [M, T]
    return logp * completion_mask
