"""Load the policy and its processor for any model the suite supports.

Qwen2-VL and Qwen2.5-VL checkpoints load through `AutoModelForImageTextToText` and the image-only processor of
`rft.processor`, from `model.path`, the Hugging Face cache, or (online) the hub. The built-in tiny presets are
built on first use by `rft.tiny` and load through the same `from_pretrained` path. `tiny_base` is not built
here: it needs a pretraining run, which `rft.pipeline` (or `make tiny-base`) starts through `rft.testbed`, and
hands the finished folder to `load_model`. The configured pixel budget beats the checkpoint's own
(`pixel_budget` reports it), and flash_attention_2 falls back to sdpa where flash-attn cannot run.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForImageTextToText, AutoTokenizer, Qwen2VLImageProcessorPil

from rft import tiny
from rft.config import ModelConfig
from rft.processor import CHAT_TEMPLATE, SUPPORTED_ARCHITECTURES, Qwen2VLImageOnlyProcessor

log = logging.getLogger(__name__)


# Any of these marks a folder that holds a tokenizer (what `save_pretrained` of a tokenizer writes).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


class ModelLoadError(RuntimeError):
    """A model could not be found or is not supported; the message says how to fix it."""


def resolve_model_dir(cfg: ModelConfig) -> str:
    """Return a local directory (or, online, a hub id) to load from, building a tiny preset if needed.

    Raises:
        ModelLoadError: the local path is missing, the built-in name is unknown (or is `tiny_base`, which the
            pipeline builds), or the hub is offline and no cached copy exists.
    """
    if cfg.path is not None:
        if not Path(cfg.path, "config.json").is_file():
            raise ModelLoadError(
                f"model.path={cfg.path!r} has no config.json. Point model.path at a folder saved with "
                "save_pretrained (config.json, *.safetensors, tokenizer and processor files), or drop model.path "
                "to load model.id from the hub."
            )
        return cfg.path
    if cfg.builtin:
        if cfg.id not in tiny.TINY_PRESETS:
            raise ModelLoadError(
                f"unknown built-in model {cfg.id!r}; built-in presets are {sorted(tiny.TINY_PRESETS)} "
                "(tiny_base is built by `make tiny-base` and loaded by the pipeline)"
            )
        return str(tiny.build_tiny_model(cfg.id, cfg.seed, Path(cfg.cache_dir).expanduser()))
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    try:
        return snapshot_download(cfg.id, local_files_only=offline)
    except LocalEntryNotFoundError as err:
        raise ModelLoadError(
            f"model {cfg.id!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it. "
            f"Either download it once with network access (`huggingface-cli download {cfg.id}`), or pass "
            "model.path=<local folder with the weights>."
        ) from err


def check_architecture(model_dir: str, trust_remote_code: bool) -> str:
    """Read config.json and refuse unsupported architectures before any weights load.

    Returns:
        The model_type string, e.g. "qwen2_vl".
    """
    try:
        cfg = json.loads(Path(model_dir, "config.json").read_text())
    except ValueError as err:  # a truncated or hand-edited file
        cfg = f"not valid JSON ({err})"
    if not isinstance(cfg, dict):
        raise ModelLoadError(
            f"{model_dir}/config.json is {cfg if isinstance(cfg, str) else 'not a JSON object'}; it is damaged "
            "(a partial copy?): copy the model folder again, or re-save it with save_pretrained"
        )
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


def load_processor(model_dir: str, cfg: ModelConfig) -> Qwen2VLImageOnlyProcessor:
    """Build the image-only processor with the configured pixel budget (`model.min_pixels`, `model.max_pixels`).

    Built from its parts, so a folder saved by upstream with a video processor still loads without torchvision.
    Qwen's `preprocessor_config.json` carries its own `min_pixels`/`max_pixels` (3136 and 12845056) and sometimes
    a `size`. `from_pretrained` merges keyword arguments over the file's keys and the image processor's
    `__init__` then lets `min_pixels`/`max_pixels` override `size`, so a `size` alone loses to the file's
    `max_pixels`; passing the budget as `min_pixels`/`max_pixels` too makes it win in every layout.

    Raises:
        ModelLoadError: the processor still ends up with another budget (a transformers change).
    """
    local = Path(model_dir)
    if local.is_dir() and not any((local / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(
            f"{model_dir} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); a checkpoint written before "
            "checkpoints held the processor lacks them. Copy the tokenizer and image-processor files of the model "
            f"it was trained from into it (cp <base>/{{tokenizer*,vocab.json,merges.txt,*_config.json,"
            f"chat_template*}} {model_dir}/, without overwriting config.json), or pass model.path=<that base model>"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=cfg.trust_remote_code)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(
        model_dir,
        size={"shortest_edge": cfg.min_pixels, "longest_edge": cfg.max_pixels},
        min_pixels=cfg.min_pixels,
        max_pixels=cfg.max_pixels,
    )
    template = tokenizer.chat_template or CHAT_TEMPLATE
    processor = Qwen2VLImageOnlyProcessor(image_processor, tokenizer, chat_template=template)
    tokenizer.padding_side = "left"
    if pixel_budget(processor) != (cfg.min_pixels, cfg.max_pixels):
        raise ModelLoadError(
            f"the image processor of {model_dir} resizes to {pixel_budget(processor)} pixels, not "
            f"model.min_pixels/max_pixels=({cfg.min_pixels}, {cfg.max_pixels}); check rft.models.load_processor "
            "against the installed transformers"
        )
    return processor


def pixel_budget(processor) -> tuple[int, int]:
    """(min_pixels, max_pixels) the processor resizes every image into; what a run's result row records.

    Every image is resized (aspect ratio kept, sides multiples of 28) to at most max_pixels pixels, i.e. at most
    max_pixels / 784 merged image tokens (Qwen's `smart_resize`).
    """
    size = processor.image_processor.size
    return int(size["shortest_edge"]), int(size["longest_edge"])


def load_model(
    cfg: ModelConfig, model_dir: str | None = None
) -> tuple[torch.nn.Module, Qwen2VLImageOnlyProcessor]:
    """Load the policy model and its processor.

    Args:
        cfg: The model config (`model=`).
        model_dir: A folder to load from instead of resolving `cfg` (the pipeline passes tiny_base's).

    Returns:
        (model in train mode, processor whose tokenizer pads on the left).
    """
    if cfg.trust_remote_code:
        log.warning(
            "!!! model.trust_remote_code=true: code shipped with %s will run on this machine !!!", cfg.id
        )
    model_dir = model_dir or resolve_model_dir(cfg)
    check_architecture(model_dir, cfg.trust_remote_code)
    processor = load_processor(model_dir, cfg)
    dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            model_dir,
            dtype=dtype,
            attn_implementation=attention_implementation(cfg.attn_implementation),
            trust_remote_code=cfg.trust_remote_code,
            use_safetensors=True,
        )
    except (OSError, SafetensorError) as err:  # no *.safetensors, or one cut short by a partial copy
        raise ModelLoadError(
            f"could not read the weights in {model_dir}: {type(err).__name__}: {err}. The folder needs complete "
            "*.safetensors weights (saved with save_pretrained): copy the model folder again"
        ) from err
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    return prepare_for_training(model, cfg), processor


def attention_implementation(requested: str) -> str:
    """`requested`, or "sdpa" with one warning when it is flash_attention_2 and flash-attn cannot run here.

    flash-attn is an optional CUDA-only package (not in the lock file): it needs a CUDA device and an importable
    `flash_attn` module.
    """
    if requested != "flash_attention_2":
        return requested
    if not torch.cuda.is_available():
        reason = "CUDA is not available"
    else:
        try:
            import flash_attn  # noqa: F401
        except (ImportError, OSError) as err:  # absent, or built against another torch/CUDA
            reason = f"flash_attn cannot be imported ({err})"
        else:
            return requested
    log.warning(
        "model.attn_implementation=flash_attention_2 falls back to sdpa: %s. On a CUDA node, install it with "
        "`pip install flash-attn --no-build-isolation`.",
        reason,
    )
    return "sdpa"


def prepare_for_training(model, cfg: ModelConfig):
    """Apply freezing, gradient checkpointing and LoRA as configured; returns the (possibly wrapped) model."""
    if cfg.freeze_vision:
        unwrap(model).model.visual.requires_grad_(False)  # the ViT blocks and the patch merger
    if cfg.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers 5.x: the old name is deprecated
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=cfg.lora.r,
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            target_modules=list(cfg.lora.target_modules),
        )
        model = get_peft_model(model, lora)
    return model


def unwrap(model):
    """The transformers model under a peft wrapper (adapters stay active: peft injects them in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def is_lora(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "peft_config")
