"""Sampler fidelity: the lean sampler and HF generate draw the same tokens, from the suite's settings only.

- lean (rft.sampling.sample_lean) vs HF generate (sample_hf): token-identical greedy and seeded sampling on
  image prompts with left padding (M-RoPE positions and rope_deltas are exercised), min_new_tokens;
- nothing leaks from a checkpoint's generation_config.json (Qwen2-VL-Instruct's repetition_penalty, top_k,
  top_p, temperature); every EOS id it lists ends a completion, in both samplers and in the mask;
- the lean sampler's fused weights are reused until a weight changes; its lazy stop check trims to HF's
  shape; its compiled step (-m slow) gives the eager tokens; bf16 and CUDA-graph parity (-m gpu);
- loading a real checkpoint's files: the configured pixel budget wins over Qwen's preprocessor_config.json,
  and flash_attention_2 falls back to sdpa with a warning where flash-attn cannot run.

python -m pytest -q tests/test_sampling.py
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoTokenizer

from rft import models, sampling, tiny
from rft.config import ModelConfig
from rft.data.sat import make_sat_synth
from rft.prompts import chat_text, encode_prompts
from rft.sampling import sample_hf, sample_lean, sample_next
from tests.conftest import TINY_MODEL

# generation_config.json of Qwen2-VL-Instruct: the sampling keys that must not reach the suite's samplers.
QWEN_SAMPLING = dict(do_sample=True, repetition_penalty=1.05, top_k=1, top_p=0.001, temperature=0.1)
# preprocessor_config.json of Qwen2-VL-2B-Instruct (Qwen2.5-VL's differs only in processor_class), with the
# `size` that newer saves add.
QWEN_PREPROCESSOR = dict(
    min_pixels=3136,
    max_pixels=12845056,
    size={"shortest_edge": 3136, "longest_edge": 12845056},
    patch_size=14,
    temporal_patch_size=2,
    merge_size=2,
    image_mean=[0.48145466, 0.4578275, 0.40821073],
    image_std=[0.26862954, 0.26130258, 0.27577711],
    image_processor_type="Qwen2VLImageProcessor",
    processor_class="Qwen2VLProcessor",
)


def tiny_folder() -> Path:
    return tiny.build_tiny_model("tiny", 0, Path(TINY_MODEL["cache_dir"]))


def tiny_json(stem: str) -> dict:
    return json.loads((tiny_folder() / f"{stem}.json").read_text())


def variant(tmp_path: Path, name: str, **files: dict) -> Path:
    """A copy of the tiny model folder with the JSON files `files` (stem -> content) written over its own."""
    out = tmp_path / name
    shutil.copytree(tiny_folder(), out)
    for stem, content in files.items():
        (out / f"{stem}.json").write_text(json.dumps(content))
    return out


def spec(folder: Path, **kw) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, "builtin": False, "id": "local", "path": str(folder), **kw})


def load(folder: Path, **kw):
    model, processor = models.load_model(spec(folder, **kw))
    return model.eval(), processor


def image_prompts(processor, n: int = 2):
    """`n` image prompts of different lengths (think / no-think), so one is left-padded."""
    task = make_sat_synth(4, 1, 0, 56)
    samples = task.split("train")[:n]
    texts = [chat_text(processor, task.prompt(s, i % 2 == 0), 1) for i, s in enumerate(samples)]
    prompts = encode_prompts(processor, texts, [s.images for s in samples])
    assert (prompts.attention_mask == 0).any(), "the prompts need left padding"
    return prompts


@pytest.fixture(scope="module")
def tiny_model():
    """The tiny model (eval mode), its processor, and two image prompts of different lengths."""
    model, processor = models.load_model(ModelConfig(**TINY_MODEL))
    return model.eval(), processor, image_prompts(processor)


def both(model, tok, prompts, seed, **kw):
    """(sample_hf, sample_lean) outputs from the same seed."""
    torch.manual_seed(seed)
    ref = sample_hf(model, tok, prompts, **kw)
    torch.manual_seed(seed)
    lean = sample_lean(model, tok, prompts, **kw)
    return ref, lean


# --- lean vs HF generate -------------------------------------------------------------------------------------


def test_lean_greedy_is_token_identical_to_hf(tiny_model):
    model, processor, prompts = tiny_model
    (ids, mask), (lean_ids, lean_mask) = both(
        model, processor.tokenizer, prompts, 0, num_return_sequences=1, max_new_tokens=24, temperature=None
    )
    assert torch.equal(ids, lean_ids)
    assert torch.equal(mask, lean_mask)


@pytest.mark.parametrize("min_new_tokens", [0, 16])
def test_lean_sampling_matches_hf_with_a_fixed_seed(tiny_model, min_new_tokens):
    """Same processors in the same order and one multinomial draw per step: the seeded samples coincide."""
    model, processor, prompts = tiny_model
    (ids, _), (lean_ids, _) = both(
        model,
        processor.tokenizer,
        prompts,
        3,
        num_return_sequences=4,
        max_new_tokens=16,
        temperature=0.7,
        min_new_tokens=min_new_tokens,
    )
    assert torch.equal(ids, lean_ids)


def test_sampler_rules():
    logits = torch.zeros(3, 6)
    logits[:, 5] = 50.0  # a stop id would always win
    logits[:, 4] = 40.0  # and so would the second one
    kw = dict(suppress=torch.tensor([1, 2]), stop_ids=torch.tensor([5, 4]), temperature=1.0)
    for _ in range(20):
        held = sample_next(logits, 0, min_new_tokens=1, **kw)
        assert not bool(torch.isin(held, torch.tensor([1, 2, 4, 5])).any())
    assert sample_next(logits, 1, min_new_tokens=1, **kw).eq(5).all()
    assert sample_next(logits, 0, min_new_tokens=0, **{**kw, "temperature": None}).eq(5).all()


def test_completion_mask_ends_at_the_first_of_any_stop_id(tiny_model):
    _, processor, _ = tiny_model
    tok = processor.tokenizer
    eos, other, image = tok.eos_token_id, tok.pad_token_id, tok.convert_tokens_to_ids("<|image_pad|>")
    ids = torch.tensor([[7, other, 8, eos], [7, eos, other, other], [7, image, 8, 9]])
    mask = sampling.completion_mask(ids, tok, [eos, other])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 1, 1]]
    assert sampling.completion_mask(ids, tok).tolist()[0] == [1, 1, 1, 1]  # the tokenizer's EOS only


# --- nothing leaks from the checkpoint's generation config ---------------------------------------------------


def test_checkpoint_sampling_settings_do_not_leak(tmp_path, tiny_model):
    """A folder whose generation_config.json has Qwen-Instruct's sampling keys samples what the plain one does."""
    _, processor, prompts = tiny_model
    plain, _ = load(tiny_folder())
    qwen, _ = load(
        variant(
            tmp_path, "qwen_sampling", generation_config={**tiny_json("generation_config"), **QWEN_SAMPLING}
        )
    )
    assert qwen.generation_config.top_k == 1  # the file was read
    tok = processor.tokenizer
    for temperature, group in ((0.7, 4), (None, 1)):  # a rollout, then greedy evaluation
        kw = dict(num_return_sequences=group, max_new_tokens=12, temperature=temperature)
        (ref, ref_mask), (lean, _) = both(plain, tok, prompts, 5, **kw)
        (got, got_mask), (got_lean, _) = both(qwen, tok, prompts, 5, **kw)
        assert torch.equal(got, ref) and torch.equal(got_mask, ref_mask), temperature
        assert torch.equal(got_lean, ref) and torch.equal(lean, ref), temperature
    # The test can tell: generate left to the checkpoint's settings samples something else.
    torch.manual_seed(5)
    leaky = qwen.generate(
        **prompts.model_inputs(), num_return_sequences=4, max_new_tokens=12, temperature=0.7
    )
    torch.manual_seed(5)
    ours = sample_hf(qwen, tok, prompts, num_return_sequences=4, max_new_tokens=12, temperature=0.7)[0]
    assert not torch.equal(leaky[:, prompts.input_ids.shape[1] :], ours)


def test_generate_builds_only_the_suite_processors(tmp_path, tiny_model, monkeypatch):
    _, processor, prompts = tiny_model
    qwen, _ = load(
        variant(
            tmp_path, "qwen_sampling", generation_config={**tiny_json("generation_config"), **QWEN_SAMPLING}
        )
    )
    seen = []
    build = qwen._get_logits_processor

    def spy(*args, **kwargs):
        processors = build(*args, **kwargs)
        seen.append(sorted(type(p).__name__ for p in processors))
        return processors

    monkeypatch.setattr(qwen, "_get_logits_processor", spy)
    tok = processor.tokenizer
    sample_hf(qwen, tok, prompts, num_return_sequences=2, max_new_tokens=2, temperature=0.7, min_new_tokens=1)
    sample_hf(qwen, tok, prompts, num_return_sequences=1, max_new_tokens=2, temperature=None)
    # HF renders min_new_tokens twice: as itself and as min_length = prompt length + min_new_tokens.
    held_back = ["MinLengthLogitsProcessor", "MinNewTokensLengthLogitsProcessor"]
    assert seen == [
        [*held_back, "SuppressTokensLogitsProcessor", "TemperatureLogitsWarper"],
        ["MinLengthLogitsProcessor", "SuppressTokensLogitsProcessor"],  # min_length = prompt length: a no-op
    ]


def test_a_checkpoint_setting_without_a_neutral_value_is_refused(tmp_path, tiny_model):
    _, processor, prompts = tiny_model
    odd, _ = load(
        variant(tmp_path, "odd", generation_config={**tiny_json("generation_config"), "bad_words_ids": [[5]]})
    )
    with pytest.raises(ValueError, match=r"bad_words_ids.*delete these keys"):
        sample_hf(
            odd, processor.tokenizer, prompts, num_return_sequences=1, max_new_tokens=2, temperature=None
        )


# --- every EOS id ends a completion --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_eos(tmp_path_factory):
    """A model whose generation config lists <|im_end|> and <|endoftext|> (as Qwen2-VL-Instruct's does) and whose
    weights force <|endoftext|> as soon as it is allowed: hidden dimension 0 of the residual stream is a large
    constant (every embedding has it, no layer writes to it) and only <|endoftext|>'s lm_head row reads it."""
    tok = AutoTokenizer.from_pretrained(tiny_folder())
    stops = [tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")]  # also the pad token, as in Qwen's
    gen = {**tiny_json("generation_config"), "eos_token_id": stops}
    model, processor = load(variant(tmp_path_factory.mktemp("two_eos"), "m", generation_config=gen))
    lm = model.model.language_model
    with torch.no_grad():
        lm.embed_tokens.weight[:, 0] = 30.0
        for layer in lm.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[stops[1], 0] = 50.0
    return model, processor, image_prompts(processor), stops


@pytest.mark.parametrize("temperature", [None, 1.0])
def test_every_eos_id_ends_a_completion(two_eos, temperature):
    model, processor, prompts, stops = two_eos
    tok = processor.tokenizer
    assert sampling.stop_token_ids(model, tok) == stops and tok.eos_token_id == stops[0]
    group = 1 if temperature is None else 3
    kw = dict(num_return_sequences=group, max_new_tokens=10, temperature=temperature, min_new_tokens=3)
    (ids, mask), (lean_ids, lean_mask) = both(model, tok, prompts, 1, **kw)
    assert torch.equal(ids, lean_ids) and torch.equal(mask, lean_mask)
    assert ids.shape == (2 * group, 4)  # three held-back tokens, then the forced second EOS ends every row
    assert ids[:, 3].eq(stops[1]).all() and not torch.isin(ids[:, :3], torch.tensor(stops)).any()
    assert mask.sum(1).tolist() == [4] * (2 * group)


def test_lazy_stop_check_trims_to_hfs_shape(two_eos, monkeypatch):
    """With the CUDA setting (a host sync every 16 tokens) on the CPU: extra steps run, the result is the same."""
    model, processor, prompts, _ = two_eos
    monkeypatch.setitem(sampling.STOP_CHECK_EVERY, "cpu", 16)
    kw = dict(num_return_sequences=2, max_new_tokens=40, temperature=1.0, min_new_tokens=3)
    calls = []
    step = sampling._decode_step
    monkeypatch.setattr(sampling, "_decode_step", lambda *a: calls.append(1) or step(*a))
    (ids, mask), (lean_ids, lean_mask) = both(model, processor.tokenizer, prompts, 2, **kw)
    assert len(calls) == 15  # checked after token 16: every row had ended at token 4
    assert ids.shape[1] == 4 and torch.equal(ids, lean_ids) and torch.equal(mask, lean_mask)


def test_trim_keeps_the_longest_row():
    stops = torch.tensor([9, 8])
    rows = torch.tensor([[1, 9, 8, 8, 8], [1, 2, 8, 8, 8]])
    assert sampling._trim(rows, stops).tolist() == [[1, 9, 8], [1, 2, 8]]
    unended = torch.tensor([[1, 2, 3], [1, 9, 8]])
    assert sampling._trim(unended, stops).shape == (2, 3)


# --- fused weights: built once, refreshed by a weight update -------------------------------------------------


def test_fused_weights_are_reused_until_a_weight_changes(tmp_path, monkeypatch):
    model, processor = load(tiny_folder())
    prompts = image_prompts(processor)
    tok = processor.tokenizer
    builds = []
    parts = sampling._fused_parts
    monkeypatch.setattr(sampling, "_fused_parts", lambda lm: builds.append(1) or parts(lm))
    kw = dict(num_return_sequences=2, max_new_tokens=6, temperature=1.0)
    fused = sampling.fused_weights(model)
    for _ in range(2):  # repeated rollouts and evaluation reuse the same fused tensors
        sample_lean(model, tok, prompts, **kw)
    assert sampling.fused_weights(model) is fused and len(builds) == 1

    # An optimizer step (in place) refreshes them in place: same tensors, new values, HF's tokens again.
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    model.eval()
    (ids, _), (lean_ids, _) = both(model, tok, prompts, 4, **kw)
    assert torch.equal(ids, lean_ids) and len(builds) == 2
    assert sampling.fused_weights(model) is fused
    attn = model.model.language_model.layers[0].self_attn
    assert torch.equal(
        fused.layers[0].w_qkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    )

    # A replaced weight (new tensor) or new storage under the same one (`.to(device)`, `.data =`) rebuilds them.
    mlp = model.model.language_model.layers[-1].mlp
    mlp.up_proj.weight = torch.nn.Parameter(mlp.up_proj.weight.detach() * 1.5)
    rebuilt = sampling.fused_weights(model)
    assert rebuilt is not fused and len(builds) == 3
    (ids, _), (lean_ids, _) = both(model, tok, prompts, 4, **kw)
    assert torch.equal(ids, lean_ids)
    attn.o_proj.weight.data = attn.o_proj.weight.data * 2.0
    assert sampling.fused_weights(model) is not rebuilt and len(builds) == 4
    sampling.forget_fused_weights(model)
    assert sampling.fused_weights(model) is not rebuilt and len(builds) == 5


def test_the_engines_optimizer_step_refreshes_the_fused_weights():
    """The suite's own step: fused AdamW updates weights without bumping `_version`, so the engine must say the
    weights changed; otherwise every rollout after the first samples from the initial policy."""
    from rft.engine import TorchEngine

    model, processor = load(tiny_folder())
    prompts = image_prompts(processor)
    tok = processor.tokenizer
    kw = dict(num_return_sequences=1, max_new_tokens=8, temperature=None)
    model.eval()
    sample_lean(model, tok, prompts, **kw)  # builds and caches the fused weights
    engine = TorchEngine(
        model,
        device=torch.device("cpu"),
        lr=5e-2,
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_factor=lambda s: 1.0,
    )
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    engine.step()
    model.eval()
    (ids, _), (lean_ids, _) = both(model, tok, prompts, 0, **kw)
    assert torch.equal(ids, lean_ids)
    attn = model.model.language_model.layers[0].self_attn
    fused = sampling.fused_weights(model)
    assert torch.equal(
        fused.layers[0].w_qkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    )


# --- the compiled step ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_compiled_step_gives_the_eager_tokens(capsys):
    """`torch.compile` of the per-token step (Inductor's C++ backend here) gives the eager step's tokens, also
    after an optimizer step has refreshed the fused weights in place under the compiled code."""
    model, processor = load(tiny_folder())
    prompts, tok = image_prompts(processor), processor.tokenizer

    def check(seed, temperature, group):
        kw = dict(num_return_sequences=group, max_new_tokens=16, temperature=temperature)
        torch.manual_seed(seed)
        eager = sample_lean(model, tok, prompts, **kw)
        torch.manual_seed(seed)
        start = time.perf_counter()
        compiled = sample_lean(model, tok, prompts, compile=True, **kw)
        assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])
        return time.perf_counter() - start

    seconds = [check(0, None, 1), check(3, 0.7, 4)]  # the second shape compiles once more
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    opt.step()
    seconds.append(check(5, 0.7, 4))
    with capsys.disabled():
        print(f"\n[compiled lean step] first call, new shape, after a weight update: {seconds} s")


# --- bf16, and CUDA (CUDA graphs) -----------------------------------------------------------------------------


def first_divergence(a: torch.Tensor, b: torch.Tensor) -> list[int]:
    """Per row, the first column where two [N, T] token tensors differ (None where they agree throughout)."""
    T = min(a.shape[1], b.shape[1])
    differ = a[:, :T] != b[:, :T]  # [N, T]
    return [int(row.int().argmax()) if row.any() else None for row in differ]


def assert_greedy_parity_in_bf16(model, tok, prompts, compile: bool) -> None:
    """bf16 rounds differently along the two paths, so greedy tokens must agree only up to a step where HF's two
    best logits are within a few bf16 roundings of each other (a near-tie either path may break)."""
    kw = dict(num_return_sequences=1, max_new_tokens=32, temperature=None)
    (ids, _), (lean_ids, _) = both(model, tok, prompts, 0, compile=compile, **kw)
    config = sampling.hf_generation_config(model, tok, **kw)
    config.return_dict_in_generate, config.output_logits = True, True
    logits = torch.stack(model.generate(**prompts.model_inputs(), generation_config=config).logits, 1).float()
    top2 = logits.topk(2, dim=-1).values  # [N, T, 2]
    tolerance = 4 * 2**-8 * logits.abs().amax(-1)  # [N, T] four bf16 roundings at the logits' scale
    for row, at in enumerate(first_divergence(ids, lean_ids)):
        if at is not None:
            assert top2[row, at, 0] - top2[row, at, 1] <= tolerance[row, at], (row, at)
    if all(at is None for at in first_divergence(ids, lean_ids)):
        assert ids.shape == lean_ids.shape


def test_lean_matches_hf_in_bf16():
    model, processor = load(tiny_folder(), dtype="bfloat16", attn_implementation="eager")
    assert_greedy_parity_in_bf16(model, processor.tokenizer, image_prompts(processor, n=4), compile=False)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("compile", [False, True], ids=["eager", "cuda_graphs"])
def test_lean_matches_hf_on_cuda(dtype, compile):
    """fp32: token-identical to HF generate, greedy and seeded. bf16: greedy parity up to near-ties."""
    model, processor = load(tiny_folder(), dtype=dtype, attn_implementation="eager")
    model = model.cuda()
    prompts = image_prompts(processor, n=4)
    prompts = type(prompts)(**{k: v.cuda() if torch.is_tensor(v) else v for k, v in vars(prompts).items()})
    tok = processor.tokenizer
    if dtype == "bfloat16":
        assert_greedy_parity_in_bf16(model, tok, prompts, compile)
        return
    for seed, temperature, group in ((0, None, 1), (1, 0.7, 4)):
        kw = dict(num_return_sequences=group, max_new_tokens=32, temperature=temperature, compile=compile)
        for _ in range(2):  # the second call replays the recorded graphs
            (ids, mask), (lean_ids, lean_mask) = both(model, tok, prompts, seed, **kw)
            assert torch.equal(ids, lean_ids) and torch.equal(mask, lean_mask)
            assert lean_ids.device.type == "cuda"


# --- a real checkpoint's files: pixel budget and attention implementation ------------------------------------


def smart_resize(
    height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28
) -> tuple[int, int]:
    """Qwen2-VL's resize rule (qwen-vl-utils `smart_resize`): sides multiples of 28, area within the budget."""
    h, w = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return h, w


@pytest.mark.parametrize("with_size", [False, True], ids=["hub_keys", "hub_keys_and_size"])
def test_the_configured_pixel_budget_beats_the_checkpoints(tmp_path, with_size):
    """Qwen's preprocessor_config.json allows 12.8 MP; model.max_pixels=401408 must still cap a photo at 512
    merged image tokens, exactly as smart_resize computes them."""
    pre = (
        dict(QWEN_PREPROCESSOR) if with_size else {k: v for k, v in QWEN_PREPROCESSOR.items() if k != "size"}
    )
    folder = variant(tmp_path, "qwen_pre", preprocessor_config=pre)
    processor = models.load_processor(str(folder), spec(folder, min_pixels=3136, max_pixels=401408))
    assert models.pixel_budget(processor) == (3136, 401408)
    text = chat_text(processor, "What is it?", 1)
    enc = processor(text=[text], images=[Image.new("RGB", (1024, 668))], return_tensors="pt")
    h, w = smart_resize(668, 1024, 3136, 401408)
    expected = (h // 28) * (w // 28)  # one merged token per 28x28 block
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((enc["input_ids"] == image_pad).sum()) == expected == 504 <= 512
    assert enc["image_grid_thw"][0].tolist() == [1, h // 14, w // 14]


def test_flash_attention_falls_back_to_sdpa_with_one_warning(caplog, monkeypatch):
    with caplog.at_level(logging.WARNING, logger="rft.models"):
        model, _ = models.load_model(ModelConfig(**TINY_MODEL, attn_implementation="flash_attention_2"))
    assert model.config._attn_implementation == "sdpa"
    warnings = [r.getMessage() for r in caplog.records if r.name == "rft.models"]
    assert len(warnings) == 1
    assert (
        "CUDA is not available" in warnings[0]
        and "pip install flash-attn --no-build-isolation" in warnings[0]
    )
    # A CUDA node without the package.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(__import__("sys").modules, "flash_attn", None)  # import flash_attn -> ImportError
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rft.models"):
        assert models.attention_implementation("flash_attention_2") == "sdpa"
    assert "flash_attn cannot be imported" in caplog.text
    assert models.attention_implementation("eager") == "eager"
