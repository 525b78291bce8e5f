"""Prompt batches: the chat text, the tokenised prompts and their vision inputs, kept per prompt.

A `Prompts` batch carries each prompt's pixel patches once; the G completions of a prompt point back to it by
index (`prompt_index`), so an image is never tiled G times. Only this module, `rft.logprobs` and `rft.sampling`
look inside the VLM-specific tensors (`pixel_values`, `image_grid_thw`, `mm_token_type_ids`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

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

    def to(self, device: torch.device | str) -> Prompts:
        """These prompts on `device` (the one place batches move to the model's device)."""
        return Prompts(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            mm_token_type_ids=self.mm_token_type_ids.to(device),
            pixel_values=self.pixel_values.to(device),
            image_grid_thw=self.image_grid_thw.to(device),
            images_per_prompt=self.images_per_prompt,
        )

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


def encode_prompts(
    processor, texts: list[str], images: list[tuple[Image.Image, ...]], device: torch.device | str = "cpu"
) -> Prompts:
    """Tokenise B chat-formatted prompts with their images (left padding, for generation), placed on `device`.

    The processor works on the host; the finished batch moves to `device` in one transfer.
    """
    flat = [img.convert("RGB") for imgs in images for img in imgs]
    with torch.device("cpu"):  # the processor's tensors are host tensors, whatever the default device
        enc = processor(text=texts, images=flat, padding=True, padding_side="left", return_tensors="pt")
    return Prompts(
        input_ids=enc["input_ids"],  # [B, P]
        attention_mask=enc["attention_mask"],  # [B, P]
        mm_token_type_ids=enc["mm_token_type_ids"],  # [B, P]
        pixel_values=enc["pixel_values"],  # [patches, D]
        image_grid_thw=enc["image_grid_thw"],  # [n_images, 3]
        images_per_prompt=[len(imgs) for imgs in images],
    ).to(device)


def suppressed_token_ids(tokenizer) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in VISION_SPECIAL_TOKENS]


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
