"""An offline stand-in of the hub checkpoints Qwen/Qwen2-VL-2B-Instruct and Qwen/Qwen2.5-VL-3B-Instruct.

`build_standin(out, kind)` writes a folder laid out like the hub one: the hub's `config.json` (transformers 4.x
format, reduced depth and optionally width), random seeded weights in two safetensors shards with an index and
the hub's tensor names (`model.layers.*`, `visual.*`, no `lm_head.weight`: embeddings are tied), the real Qwen2
tokenizer rebuilt from the `quicktok-v1` vocab with the real chat template, and `preprocessor_config.json` /
`generation_config.json` written as the hub has them (not normalised by `save_pretrained`). The real models'
values come from public copies of the hub files, cited where they are used. Only the weights are not real, so
the GPU path can be exercised with the real vocabulary, special ids, pixel and sampling defaults.
`experiments/gpu_check.py` builds it at full size; `tests/test_standin.py` checks it at reduced size.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import shutil
import struct
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from rft.processor import SPECIAL_TOKENS

KINDS = ("qwen2vl_2b", "qwen25vl_3b")

# The real text and vision shapes, from the hub `config.json` of each model (public copies: e.g. a Qwen2-VL-2B
# test fixture `get_config` and Qwen2.5-VL-3B configs reproduced in starVLA/wall-x style model code). Both use
# head_dim 128, so the real mrope_section [16, 24, 24] (sums to head_dim / 2) stays valid at any reduced width.
_REAL = {
    "qwen2vl_2b": dict(
        architecture="Qwen2VLForConditionalGeneration",
        model_type="qwen2_vl",
        hidden=1536,
        heads=12,
        kv_heads=2,
        intermediate=8960,
        layers=28,
        max_position_embeddings=32768,
        max_window_layers=28,
        model_max_length=32768,
        processor_class="Qwen2VLProcessor",
        vision=dict(
            depth=32,
            embed_dim=1280,
            mlp_ratio=4,
            num_heads=16,
            in_chans=3,
            patch_size=14,
            spatial_merge_size=2,
            spatial_patch_size=14,
            temporal_patch_size=2,
        ),
        # Qwen2-VL's tokenizer stops at <|video_pad|>.
        num_added_tokens=14,
    ),
    "qwen25vl_3b": dict(
        architecture="Qwen2_5_VLForConditionalGeneration",
        model_type="qwen2_5_vl",
        hidden=2048,
        heads=16,
        kv_heads=2,
        intermediate=11008,
        layers=36,
        max_position_embeddings=128000,
        max_window_layers=70,
        model_max_length=131072,
        processor_class="Qwen2_5_VLProcessor",
        vision=dict(
            depth=32,
            hidden_act="silu",
            hidden_size=1280,
            intermediate_size=3420,
            num_heads=16,
            in_chans=3,
            patch_size=14,
            spatial_merge_size=2,
            spatial_patch_size=14,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
            tokens_per_second=2,
            temporal_patch_size=2,
        ),
        # Qwen2.5 adds <tool_call> ... <|file_sep|> (151657-151664) as added, non-special tokens.
        num_added_tokens=22,
    ),
}
HEAD_DIM = 128
MROPE_SECTION = [16, 24, 24]
VOCAB_SIZE = 151936  # the embedding rows; the tokenizer has fewer tokens (151657 / 151665)

# Special token ids shared by both checkpoints (config.json and tokenizer_config.json of either hub repo).
BOS_ID = 151643  # <|endoftext|>, also pad
EOS_ID = 151645  # <|im_end|>
TOKEN_IDS = dict(
    vision_start_token_id=151652,
    vision_end_token_id=151653,
    vision_token_id=151654,
    image_token_id=151655,
    video_token_id=151656,
)
# The additional_special_tokens of tokenizer_config.json: every special token but <|endoftext|>.
ADDITIONAL_SPECIAL_TOKENS = list(SPECIAL_TOKENS[1:])

# The Jinja chat template of Qwen2-VL-Instruct (chat_template.json / tokenizer_config.json of the hub repos; the
# same text is reproduced in many public projects). Used for Qwen2.5-VL-3B-Instruct too: public Qwen2.5-VL code
# reproduces the same text (one later variant adds <tool_response> wrapping for a `tool` role, not modelled here).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# preprocessor_config.json of both repos (only processor_class differs); CLIP mean/std.
PREPROCESSOR = dict(
    min_pixels=3136,
    max_pixels=12845056,
    patch_size=14,
    temporal_patch_size=2,
    merge_size=2,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    image_processor_type="Qwen2VLImageProcessor",
)

# generation_config.json of the Instruct repos. The Qwen2.5-VL-3B sampling values (temperature 0.1, top_p 0.001,
# top_k 1, repetition_penalty 1.05) are the ones public Qwen2.5-VL-3B inference scripts (e.g. PaddleMIX's) pass.
GENERATION = dict(
    bos_token_id=BOS_ID,
    pad_token_id=BOS_ID,
    do_sample=True,
    eos_token_id=[EOS_ID, BOS_ID],
    repetition_penalty=1.05,
    temperature=0.1,
    top_p=0.001,
    top_k=1,
    transformers_version="4.37.0",
)


def reduced_text(kind: str, hidden: int | None) -> dict[str, int]:
    """Text width at `hidden` (default: the real one): head_dim stays 128, heads and KV heads keep the real ratio."""
    real = _REAL[kind]
    hidden = real["hidden"] if hidden is None else hidden
    if hidden <= 0 or hidden % HEAD_DIM:
        raise ValueError(f"hidden={hidden} must be a positive multiple of the real head_dim {HEAD_DIM}")
    heads = hidden // HEAD_DIM
    kv_heads = max(1, heads * real["kv_heads"] // real["heads"])
    if heads % kv_heads:
        kv_heads = 1
    intermediate = real["intermediate"] * hidden // real["hidden"]
    return dict(hidden=hidden, heads=heads, kv_heads=kv_heads, intermediate=intermediate)


def hub_config(kind: str, *, layers: int, vision_depth: int, hidden: int | None, dtype: torch.dtype) -> dict:
    """The hub `config.json` (transformers 4.41 format: flat text keys, `rope_scaling` of type mrope)."""
    real, text = _REAL[kind], reduced_text(kind, hidden)
    vision = dict(real["vision"], depth=vision_depth)
    if kind == "qwen2vl_2b":
        vision["hidden_size"] = text["hidden"]  # the merger's output width
    else:
        vision["out_hidden_size"] = text["hidden"]
        vision["fullatt_block_indexes"] = sorted(
            {min(i, vision_depth - 1) for i in real["vision"]["fullatt_block_indexes"]}
        )
    return {
        "architectures": [real["architecture"]],
        "attention_dropout": 0.0,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        **TOKEN_IDS,
        "hidden_act": "silu",
        "hidden_size": text["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": text["intermediate"],
        "max_position_embeddings": real["max_position_embeddings"],
        "max_window_layers": real["max_window_layers"],
        "model_type": real["model_type"],
        "num_attention_heads": text["heads"],
        "num_hidden_layers": layers,
        "num_key_value_heads": text["kv_heads"],
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": vision,
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "vocab_size": VOCAB_SIZE,
    }


def model_config(hub: dict):
    """The same architecture as a transformers 5.x config object (`text_config`, `vision_config`, `rope_parameters`)."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    text_keys = (
        "hidden_act",
        "hidden_size",
        "initializer_range",
        "intermediate_size",
        "max_position_embeddings",
        "max_window_layers",
        "num_attention_heads",
        "num_hidden_layers",
        "num_key_value_heads",
        "rms_norm_eps",
        "sliding_window",
        "use_sliding_window",
        "vocab_size",
        "bos_token_id",
        "eos_token_id",
        "attention_dropout",
    )
    text = {k: hub[k] for k in text_keys}
    text["rope_parameters"] = {
        "rope_type": "default",
        "mrope_section": MROPE_SECTION,
        "rope_theta": hub["rope_theta"],
    }
    text["tie_word_embeddings"] = True
    cls = Qwen2VLConfig if hub["model_type"] == "qwen2_vl" else Qwen2_5_VLConfig
    return cls(
        text_config=text,
        vision_config=dict(hub["vision_config"]),
        tie_word_embeddings=True,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        **{
            k: hub[k]
            for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        },
    )


# --- the tokenizer -------------------------------------------------------------------------------------------


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (printable Latin-1 bytes map to themselves)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _read_quicktok() -> tuple[dict[bytes, int], list[tuple[int, str]]]:
    """The Qwen BPE ranks and the special tokens shipped by `quicktok-v1`.

    Both files start with a u32 count; the vocab then holds `[u16 len][bytes][u32 rank]` entries, the specials
    `[u32 id][u16 len][utf8]` entries.
    """
    data = importlib.resources.files("quicktok") / "data"
    raw = (data / "qwen3.vocab").read_bytes()
    (count,), pos, ranks = struct.unpack_from("<I", raw), 4, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<H", raw, pos)
        token = raw[pos + 2 : pos + 2 + n]
        (rank,) = struct.unpack_from("<I", raw, pos + 2 + n)
        ranks[token] = rank
        pos += 2 + n + 4
    raw, pos, specials = (data / "qwen3.special").read_bytes(), 4, []
    for _ in range(struct.unpack_from("<I", raw)[0]):
        tid, n = struct.unpack_from("<IH", raw, pos)
        specials.append((tid, raw[pos + 6 : pos + 6 + n].decode()))
        pos += 6 + n
    return ranks, sorted(specials)


def _merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Recover the merge list from ranks: a token of rank r is the merge of the two parts BPE reaches with ranks < r."""
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_rank = None, rank
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best, best_rank = i, r
            if best is None:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2:
            raise RuntimeError(f"cannot rebuild the merge of token rank {rank}: BPE stops at {parts}")
        merges.append((parts[0], parts[1]))
    return merges


# Bump when the tokenizer files written below change: it is part of the on-disk cache key.
TOKENIZER_FORMAT = 1


def _tokenizer_files(kind: str) -> Path:
    """A folder with the hub tokenizer files of `kind`, built once per cache folder (`$RFT_CACHE` or the temp dir)."""
    import importlib.metadata

    version = importlib.metadata.version("quicktok-v1")
    root = Path(os.environ.get("RFT_CACHE", tempfile.gettempdir())) / "standin-tokenizer"
    cache = root / f"{kind}-quicktok{version}-v{TOKENIZER_FORMAT}"
    if (cache / "tokenizer.json").is_file():
        return cache
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    ranks, specials = _read_quicktok()
    b2u = _byte_to_unicode()

    def enc(token: bytes) -> str:
        return "".join(b2u[x] for x in token)

    vocab = {enc(tok): rank for tok, rank in ranks.items()}
    merges = [(enc(a), enc(b)) for a, b in _merges(ranks)]
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None, pad_token=None
    )
    added = specials[: _REAL[kind]["num_added_tokens"]]
    if [tid for tid, _ in added] != list(range(len(vocab), len(vocab) + len(added))):
        raise RuntimeError(f"quicktok's special ids are not contiguous after the {len(vocab)} ranks: {added}")
    special_names = {"<|endoftext|>", *ADDITIONAL_SPECIAL_TOKENS}
    # Added one at a time, in id order, before eos/pad are set: otherwise eos would take the first free id.
    for _, name in added:
        tok.add_tokens([AddedToken(name, special=name in special_names, normalized=False)])
    tok.add_special_tokens({"additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS})
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|endoftext|>"
    tok.chat_template = CHAT_TEMPLATE
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}-", dir=_mkdir(cache.parent)))
    tok.save_pretrained(tmp)
    (tmp / "chat_template.jinja").unlink(missing_ok=True)  # the hub repos ship chat_template.json instead
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (tmp / "tokenizer_config.json").write_text(
        json.dumps(_tokenizer_config(kind, added, special_names), indent=2)
    )
    (tmp / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    try:
        os.replace(tmp, cache)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _tokenizer_config(kind: str, added: list[tuple[int, str]], special_names: set[str]) -> dict:
    """tokenizer_config.json as the hub repos have it (slow-tokenizer keys, the template inline)."""
    return {
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(tid): {
                "content": name,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": name in special_names,
            }
            for tid, name in added
        },
        "additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS,
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": _REAL[kind]["model_max_length"],
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- the folder ----------------------------------------------------------------------------------------------


def hub_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's tensors under the hub checkpoint's names (`model.layers.*`, `visual.*`; tied lm_head left out)."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            continue
        if name.startswith("model.language_model."):
            name = "model." + name.removeprefix("model.language_model.")
        elif name.startswith("model.visual."):
            name = "visual." + name.removeprefix("model.visual.")
        out[name] = tensor.contiguous().cpu()
    return out


def _save_shards(tensors: dict[str, torch.Tensor], out: Path) -> None:
    """Two shards plus model.safetensors.index.json, as the hub repos are split (vision tower in the second)."""
    names = sorted(tensors)
    groups = [
        [n for n in names if not n.startswith("visual.")],
        [n for n in names if n.startswith("visual.")],
    ]
    files = [f"model-0000{i + 1}-of-00002.safetensors" for i in range(2)]
    weight_map = {}
    for fname, group in zip(files, groups, strict=True):
        save_file({n: tensors[n] for n in group}, str(out / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def build_standin(
    out: Path,
    kind: str = "qwen2vl_2b",
    *,
    layers: int = 2,
    vision_depth: int = 2,
    hidden: int | None = None,
    dtype: torch.dtype = torch.bfloat16,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> Path:
    """Write a stand-in of the hub checkpoint `kind` into `out` (created) and return `out`.

    Args:
        kind: "qwen2vl_2b" (Qwen/Qwen2-VL-2B-Instruct) or "qwen25vl_3b" (Qwen/Qwen2.5-VL-3B-Instruct).
        layers, vision_depth: reduced text and vision depth (the real ones are 28/36 and 32).
        hidden: reduced text width, a multiple of 128 (heads scale with it); None keeps the real width.
        dtype: the dtype of the saved weights (the hub ones are bf16).
        seed: seeds the random weights.
        device: where the random weights are drawn (a GPU draws the 2B ones in seconds); they are saved from
            the CPU either way.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown stand-in kind {kind!r}; known: {KINDS}")
    if layers < 1 or vision_depth < 1:
        raise ValueError(f"layers={layers} and vision_depth={vision_depth} must be >= 1")
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    out = _mkdir(Path(out))
    hub = hub_config(kind, layers=layers, vision_depth=vision_depth, hidden=hidden, dtype=dtype)
    cls = Qwen2VLForConditionalGeneration if kind == "qwen2vl_2b" else Qwen2_5_VLForConditionalGeneration
    torch.manual_seed(seed)
    with torch.device(device):
        model = cls(model_config(hub))
    model = model.to(dtype)
    if model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError("the stand-in's lm_head is not tied to the input embeddings")
    _save_shards(hub_state_dict(model), out)
    (out / "config.json").write_text(json.dumps(hub, indent=2))
    (out / "generation_config.json").write_text(json.dumps(GENERATION, indent=2))
    pre = dict(PREPROCESSOR, processor_class=_REAL[kind]["processor_class"])
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    for f in _tokenizer_files(kind).iterdir():
        shutil.copy2(f, out / f.name)
    return out


def image_tokens(grid_thw: torch.Tensor, merge_size: int = 2) -> int:
    """The number of <|image_pad|> tokens an image of grid [t, h, w] expands to."""
    return int(math.prod(grid_thw.tolist())) // merge_size**2


def cached_standin(
    root: Path,
    kind: str = "qwen2vl_2b",
    *,
    layers: int,
    vision_depth: int,
    hidden: int | None,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device = "cpu",
) -> tuple[Path, float]:
    """`build_standin` into a folder under `root` named by its sizes, built once (atomically) and then reused.

    Returns:
        (the folder, the seconds the build took; 0.0 when it was already there).
    """
    name = f"standin-{kind}-L{layers}-V{vision_depth}-H{hidden or 'full'}-{str(dtype).removeprefix('torch.')}"
    folder = Path(root) / name
    if (folder / "model.safetensors.index.json").is_file():
        return folder, 0.0
    t0 = time.perf_counter()
    tmp = _mkdir(Path(root)) / f".{name}.tmp-{os.getpid()}"
    build_standin(
        tmp, kind, layers=layers, vision_depth=vision_depth, hidden=hidden, dtype=dtype, device=device
    )
    try:
        os.replace(tmp, folder)
    except OSError:  # another process built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, time.perf_counter() - t0
