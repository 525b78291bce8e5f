"""Load the policy (and processor) for any model the suite supports, including the offline tiny Qwen2-VL.

Real models (Qwen2-VL, Qwen2.5-VL) load through `AutoModelForImageTextToText` and an image-only processor. The
tiny models are built locally from a config — weights seeded, tokenizer trained on a small synthetic corpus —
saved to a cache directory once and then loaded through exactly the same `from_pretrained` path as a real model.

Why an image-only processor: the stock `Qwen2VLProcessor` insists on a video processor, which needs torchvision;
the suite handles images only, so a subclass with a narrower `__init__` drops the video modality.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen2VLProcessor,
)

log = logging.getLogger(__name__)

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

# Presets of the locally built models. `tiny` keeps tests fast; `small` is tiny_base's base; `tiny_20m` is the
# ~19M-parameter model the performance issue benchmarks against TRL (text hidden 384, 6 layers; vision depth 4,
# embed 256).
TINY_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=2,
        intermediate=128,
        vision_depth=2,
        vision_embed=64,
        vision_heads=4,
    ),
    # tiny_base's architecture (rft/testbed.py): wide and deep enough to learn the pretraining corpus in a few CPU
    # minutes (~1.6M parameters), still fast enough for the 56-job tiny study on 2 cores. Its M-RoPE lets the LM
    # see where an image token is (see SPATIAL_ROPE below).
    "small": dict(
        hidden=128,
        layers=4,
        heads=4,
        kv_heads=2,
        intermediate=384,
        vision_depth=2,
        vision_embed=128,
        vision_heads=4,
        rope_theta=10,
        mrope_hw=7,
    ),
    "tiny_20m": dict(
        hidden=384,
        layers=6,
        heads=6,
        kv_heads=2,
        intermediate=1536,
        vision_depth=4,
        vision_embed=256,
        vision_heads=4,
    ),
}
# SPATIAL_ROPE. Qwen2-VL's text RoPE (theta 1e6, sections [t, h, w] = [16, 24, 24] of 64 frequencies) gives the
# height and width of an image token only its lowest frequencies. Scaled down to a 32-dim head ([6, 5, 5] of 16),
# they turn by at most 0.006 rad (height) and 8e-5 rad (width) per grid step, so a tiny LM cannot tell where an
# image token is: trained directly on "is the object left or right of the centre?", `small` stayed at chance for
# 300 steps with Qwen's values and reached 100% with theta 10 and sections [2, 7, 7] (0.75-0.12 rad per step).
# A preset's optional `rope_theta` and `mrope_hw` (frequencies each for height and width) set these; without
# them a preset keeps Qwen2-VL's values.

# Upper bound of the tiny BPE vocabulary; the model's vocab is the trained tokenizer's actual size.
TINY_VOCAB_SIZE = 1024


@dataclass
class ModelSpec:
    """What `load_model` needs; mirrors the model config schema without importing it.

    Attributes:
        id: Hub id (e.g. "Qwen/Qwen2-VL-2B-Instruct") or the name of a built-in preset ("tiny", "small", "tiny_20m").
        path: Local directory that overrides `id`; None to use the hub cache (or the built-in cache).
        builtin: True for presets built locally from a config.
        seed: Weight-init seed of a built-in preset.
        dtype: "float32", "bfloat16", "float16" or "auto".
        attn_implementation: "sdpa", "eager" or "flash_attention_2".
        min_pixels: Lower pixel budget of the image processor.
        max_pixels: Upper pixel budget of the image processor.
        trust_remote_code: Allow model code from the checkpoint folder (off by default; logged loudly when on).
        cache_dir: Where built-in presets are saved after their first build.
        freeze_vision: Freeze the vision tower and its merger.
        gradient_checkpointing: Recompute activations in the backward pass (less memory, more compute).
        lora: LoRA settings as a dict (enabled, r, alpha, dropout, target_modules).
    """

    id: str
    path: str | None
    builtin: bool
    seed: int
    dtype: str
    attn_implementation: str
    min_pixels: int
    max_pixels: int
    trust_remote_code: bool
    cache_dir: str
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    lora: dict | None = None


class ModelLoadError(RuntimeError):
    """A model could not be found or is not supported; the message says how to fix it."""


def resolve_model_dir(spec: ModelSpec) -> str:
    """Return a local directory (or, online, a hub id) to load from, building a tiny preset if needed.

    Raises:
        ModelLoadError: the local path is missing, or the hub is offline and no cached copy exists.
    """
    if spec.path is not None:
        if not Path(spec.path, "config.json").is_file():
            raise ModelLoadError(
                f"model.path={spec.path!r} has no config.json. Point model.path at a folder saved with "
                "save_pretrained (config.json, *.safetensors, tokenizer and processor files), or drop model.path "
                "to load model.id from the hub."
            )
        return spec.path
    if spec.builtin and spec.id == "tiny_base":  # `tiny` after a short SFT pretraining (rft/testbed.py)
        from rft import testbed

        return str(testbed.build_tiny_base(Path(spec.cache_dir).expanduser(), spec.seed))
    if spec.builtin:
        return str(build_tiny_model(spec.id, spec.seed, Path(spec.cache_dir).expanduser()))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return snapshot_download(spec.id, local_files_only=offline)
    except LocalEntryNotFoundError as err:
        raise ModelLoadError(
            f"model {spec.id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it. "
            f"Either download it once with network access (`huggingface-cli download {spec.id}`), or pass "
            "model.path=<local folder with the weights>."
        ) from err


def check_architecture(model_dir: str, trust_remote_code: bool) -> str:
    """Read config.json and refuse unsupported architectures before any weights load.

    Returns:
        The model_type string, e.g. "qwen2_vl".
    """
    cfg = json.loads(Path(model_dir, "config.json").read_text())
    model_type = cfg.get("model_type", "<missing>")
    if "auto_map" in cfg and not trust_remote_code:
        raise ModelLoadError(
            f"{model_dir} ships its own model code (auto_map in config.json) and model.trust_remote_code is off. "
            "Read that code, then pass model.trust_remote_code=true if you trust it."
        )
    if model_type not in SUPPORTED_ARCHITECTURES and not trust_remote_code:
        raise ModelLoadError(
            f"model_type {model_type!r} in {model_dir}/config.json is not supported; the suite supports "
            f"{', '.join(SUPPORTED_ARCHITECTURES)} (Qwen2-VL and Qwen2.5-VL). Pick one of conf/model/*.yaml."
        )
    return model_type


def load_processor(model_dir: str, spec: ModelSpec) -> Qwen2VLImageOnlyProcessor:
    """Build the image-only processor with the configured pixel budget.

    Built from its parts, so a folder saved by upstream with a video processor still loads without torchvision.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=spec.trust_remote_code)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(
        model_dir, size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels}
    )
    # Older attributes would be re-sent on every call and override `size`; the pixel budget lives in `size`.
    for attr in ("min_pixels", "max_pixels"):
        if hasattr(image_processor, attr):
            delattr(image_processor, attr)
    template = tokenizer.chat_template or CHAT_TEMPLATE
    processor = Qwen2VLImageOnlyProcessor(image_processor, tokenizer, chat_template=template)
    tokenizer.padding_side = "left"
    return processor


def load_model(spec: ModelSpec) -> tuple[torch.nn.Module, Qwen2VLImageOnlyProcessor]:
    """Load the policy model and its processor.

    Returns:
        (model in train mode, processor whose tokenizer pads on the left).
    """
    if spec.trust_remote_code:
        log.warning(
            "!!! model.trust_remote_code=true: code shipped with %s will run on this machine !!!", spec.id
        )
    model_dir = resolve_model_dir(spec)
    check_architecture(model_dir, spec.trust_remote_code)
    processor = load_processor(model_dir, spec)
    dtype = "auto" if spec.dtype == "auto" else getattr(torch, spec.dtype)
    model = AutoModelForImageTextToText.from_pretrained(
        model_dir,
        dtype=dtype,
        attn_implementation=spec.attn_implementation,
        trust_remote_code=spec.trust_remote_code,
        use_safetensors=True,
    )
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return prepare_for_training(model, spec), processor


def prepare_for_training(model, spec: ModelSpec):
    """Apply freezing, gradient checkpointing and LoRA as configured; returns the (possibly wrapped) model."""
    if spec.freeze_vision:
        unwrap(model).model.visual.requires_grad_(False)  # the ViT blocks and the patch merger
    if spec.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x: the old name is deprecated
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec.lora and spec.lora.get("enabled"):
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=spec.lora["r"],
            lora_alpha=spec.lora["alpha"],
            lora_dropout=spec.lora["dropout"],
            target_modules=list(spec.lora["target_modules"]),
        )
        model = get_peft_model(model, lora)
    return model


def unwrap(model):
    """The transformers model under a peft wrapper (adapters stay active: peft injects them in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_lora(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")


# ---------------------------------------------------------------------------------------------------------------
# Built-in tiny models
# ---------------------------------------------------------------------------------------------------------------


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts, tags and answer vocabulary of the synthetic tasks."""
    from rft import tasks

    lines = list(tasks.vocabulary_corpus())
    lines += [
        "<think> </think> <answer> </answer>",
        "user",
        "assistant",
        "system",
        "You are a helpful assistant.",
    ]
    return lines


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tokenizer_corpus() * 4, trainer=trainer)
    state = json.loads(bpe.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["model"]["vocab"], merges=merges, unk_token=None, eos_token=None, pad_token=None
    )
    # Specials are added in id order before eos/pad are set, so <|endoftext|> keeps the first special id.
    tok.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _tiny_config(preset: dict[str, int], tok) -> Qwen2VLConfig:
    head_dim = preset["hidden"] // preset["heads"]
    half = head_dim // 2
    hw = preset.get("mrope_hw", half // 3)
    mrope = [half - 2 * hw, hw, hw]
    ids = {name: tok.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
            hidden_size=preset["hidden"],
            num_hidden_layers=preset["layers"],
            num_attention_heads=preset["heads"],
            num_key_value_heads=preset["kv_heads"],
            intermediate_size=preset["intermediate"],
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": mrope,
                "rope_theta": float(preset.get("rope_theta", 1e6)),
            },
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            depth=preset["vision_depth"],
            embed_dim=preset["vision_embed"],
            hidden_size=preset["hidden"],
            num_heads=preset["vision_heads"],
            mlp_ratio=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )


def tiny_model_dir(name: str, seed: int, cache_dir: Path) -> Path:
    """The cache folder of a built-in preset; its name hashes everything that determines the weights."""
    from rft import tasks

    key = json.dumps([name, seed, TINY_PRESETS[name], TINY_VOCAB_SIZE, tasks.CORPUS_VERSION], sort_keys=True)
    return cache_dir / f"{name}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


@contextlib.contextmanager
def building(out: Path):
    """Write a model folder under a temporary name beside `out` and rename it into place on success.

    A concurrent job never sees half a folder. If the build fails (the rename included) but another job has put
    a complete `out` in place meanwhile, that one is kept and the failure is dropped.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():  # another job may have won the race
            raise


def build_tiny_model(name: str, seed: int, cache_dir: Path) -> Path:
    """Build (once) and return the folder of a tiny Qwen2-VL preset, deterministic from `seed`.

    The folder is written under a temporary name and renamed into place, so a concurrent job never sees half of it.
    """
    if name not in TINY_PRESETS:
        raise ModelLoadError(f"unknown built-in model {name!r}; built-in presets are {sorted(TINY_PRESETS)}")
    out = tiny_model_dir(name, seed, cache_dir)
    if (out / "config.json").is_file():
        return out
    log.info("building tiny model %s (seed %d) into %s", name, seed, out)
    cache_dir.mkdir(parents=True, exist_ok=True)
    from transformers import Qwen2VLForConditionalGeneration

    tok = _train_tokenizer(TINY_VOCAB_SIZE)
    config = _tiny_config(TINY_PRESETS[name], tok)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    image_processor = Qwen2VLImageProcessorPil(size={"shortest_edge": 28 * 28, "longest_edge": 112 * 112})
    processor = Qwen2VLImageOnlyProcessor(image_processor, tok, chat_template=CHAT_TEMPLATE)
    with building(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    return out
