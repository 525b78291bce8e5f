"""The built-in tiny Qwen2-VL presets (`model=tiny`, `tiny_20m`, and `small`, the base of `tiny_base`).

Each preset is built locally from a config: weights seeded, a byte-level BPE tokenizer trained on the prompts and
answers of the synthetic tasks, the Qwen chat template and special tokens. The folder is saved once to the model
cache and then loaded through the same `from_pretrained` path as a real checkpoint (`rft.models.load_model`). The
cache folder's name hashes everything that determines the weights, so a change rebuilds instead of reusing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil

from rft.data.base import option_letter
from rft.data.draw import GLYPH_CLASSES
from rft.data.fgvc import make_fgvc_synth
from rft.data.sat import make_sat_synth
from rft.processor import CHAT_TEMPLATE, SPECIAL_TOKENS, Qwen2VLImageOnlyProcessor

log = logging.getLogger(__name__)

# Bump when the synthetic renderers or prompts change: it is part of the tiny tokenizer's cache key.
CORPUS_VERSION = 1

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
# A preset's optional `rope_theta` and `mrope_hw` (frequencies each for height and width) replace Qwen2-VL's
# M-RoPE values. Scaled down to a small head, Qwen's height and width frequencies turn so little per image-grid
# step that a tiny LM cannot tell where an image token is (measured in docs/tiny_study.md); without these keys a
# preset keeps Qwen2-VL's values.

# Upper bound of the tiny BPE vocabulary; the model's vocab is the trained tokenizer's actual size.
TINY_VOCAB_SIZE = 1024


def vocabulary_corpus() -> list[str]:
    """Every prompt and answer string the synthetic tasks can produce (the tiny tokenizer's training text)."""
    fgvc = make_fgvc_synth(1, 0, 0, 28)
    sat = make_sat_synth(64, 0, 0, 28)
    lines = []
    for task in (fgvc, sat):
        for s in task.splits["train"]:
            for think in (True, False):
                lines.append(task.prompt(s, think))
            lines.append(f"<think> the answer is {s.answer} </think> <answer>{s.answer}</answer>")
    lines += [f"<answer>{c}</answer>" for c in GLYPH_CLASSES]
    lines += [f"<answer>{option_letter(i)}</answer>" for i in range(4)]
    return lines


def _tokenizer_corpus() -> list[str]:
    """Text the tiny tokenizer is trained on: the prompts, tags and answer vocabulary of the synthetic tasks."""
    lines = list(vocabulary_corpus())
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
    key = json.dumps([name, seed, TINY_PRESETS[name], TINY_VOCAB_SIZE, CORPUS_VERSION], sort_keys=True)
    return cache_dir / f"{name}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def share(folder: Path) -> None:
    """Make `folder` readable by everyone, as `save_pretrained` leaves a folder: 0755 folders, 0644 files
    (`tempfile.mkdtemp` creates 0700, which would keep a shared model cache to its builder)."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


@contextlib.contextmanager
def building(out: Path):
    """Write a model folder under a temporary name beside `out` and rename it into place on success.

    A concurrent job never sees half a folder. If the build fails (the rename included) but another job has put
    a complete `out` in place meanwhile, that one is kept and the failure is dropped.
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        share(tmp)
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
        raise ValueError(f"unknown built-in model {name!r}; built-in presets are {sorted(TINY_PRESETS)}")
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
