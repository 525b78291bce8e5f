"""What the suite knows of the Qwen2-VL formats: the image-only processor, the chat template, the special tokens.

The stock `Qwen2VLProcessor` insists on a video processor, which needs torchvision; the suite handles images
only, so `Qwen2VLImageOnlyProcessor` (a subclass with a narrower `__init__`) drops the video modality and is
registered with `AutoProcessor` for both Qwen2-VL and Qwen2.5-VL configs. `CHAT_TEMPLATE` and `SPECIAL_TOKENS`
give the built-in tiny models the same token layout as Qwen's checkpoints.
"""

from __future__ import annotations

from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2VLConfig, Qwen2VLProcessor

SUPPORTED_ARCHITECTURES = ("qwen2_vl", "qwen2_5_vl")


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor without the video modality (so torchvision is not needed)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


for _config_cls in (Qwen2VLConfig, Qwen2_5_VLConfig):
    AutoProcessor.register(_config_cls, Qwen2VLImageOnlyProcessor, exist_ok=True)


# The Qwen2-VL chat format: one <|vision_start|><|image_pad|><|vision_end|> block per image part, the processor
# expands <|image_pad|> to the number of merged patches. Written for this suite; same token layout as Qwen's.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
