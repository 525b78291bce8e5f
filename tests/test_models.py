"""Model tier: the tiny Qwen2-VL builds deterministically, caches, and loads through the real Auto* path.

python -m pytest -q tests/test_models.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from rft import models, tiny
from rft.config import ModelConfig
from rft.processor import SPECIAL_TOKENS
from tests.conftest import TINY_MODEL


def spec(**kw) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **kw})


def test_tiny_model_is_deterministic_and_cached(tmp_path):
    a = tiny.build_tiny_model("tiny", 3, tmp_path)
    b = tiny.build_tiny_model("tiny", 3, tmp_path / "other")
    assert a.name == b.name
    wa, wb = (models.AutoModelForImageTextToText.from_pretrained(p).state_dict() for p in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    mtime = (a / "model.safetensors").stat().st_mtime
    assert tiny.build_tiny_model("tiny", 3, tmp_path) == a  # second call reuses the cache
    assert (a / "model.safetensors").stat().st_mtime == mtime
    c = tiny.build_tiny_model("tiny", 4, tmp_path)
    wc = models.AutoModelForImageTextToText.from_pretrained(c).state_dict()
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_tiny_model_loads_through_the_auto_classes_with_qwen_tokens():
    model, processor = models.load_model(spec())
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    tok = processor.tokenizer
    for name in SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(name) != tok.unk_token_id
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "left"
    text = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert "<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")
    # The configured pixel budget reaches the image processor.
    assert processor.image_processor.size["longest_edge"] == TINY_MODEL["max_pixels"]


def test_local_path_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(models.ModelLoadError, match="has no config.json"):
        models.load_model(spec(builtin=False, id="x", path=str(tmp_path)))


def test_offline_hub_model_without_cache_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(models.ModelLoadError, match="HF_HUB_OFFLINE=1 forbids downloading"):
        models.resolve_model_dir(spec(builtin=False, id="Qwen/Qwen2-VL-2B-Instruct"))


def test_unsupported_architecture_and_remote_code_are_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(models.ModelLoadError, match="not supported"):
        models.check_architecture(str(tmp_path), trust_remote_code=False)
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "qwen2_vl", "auto_map": {"AutoModel": "x.Y"}})
    )
    with pytest.raises(models.ModelLoadError, match="trust_remote_code"):
        models.check_architecture(str(tmp_path), trust_remote_code=False)
    assert models.check_architecture(str(tmp_path), trust_remote_code=True) == "qwen2_vl"


def test_local_copy_of_a_real_layout_loads_by_path(tmp_path):
    """model.path=<dir> is the route for real checkpoints; the tiny folder has the same layout."""
    src = tiny.build_tiny_model("tiny", 0, Path(TINY_MODEL["cache_dir"]))
    model, _ = models.load_model(spec(builtin=False, id="local", path=str(src)))
    assert model.config.model_type == "qwen2_vl"
    assert os.path.isfile(src / "model.safetensors")
