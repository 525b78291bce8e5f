"""The offline stand-in of Qwen2-VL-2B-Instruct / Qwen2.5-VL-3B-Instruct (`experiments/standin.py`).

Checks that the folder has the hub layout and values, that transformers reads it as the hub repos are read, and
that it loads through the suite's real path (`rft.models.load_model`) in bf16 with tied embeddings. The
`test_measure_*` tests print what the suite does today with a real checkpoint's files; they assert nothing
about it (the findings belong to the GPU issue). The forward tests use a reduced text width (256) to stay fast.
"""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from experiments.standin import (
    CHAT_TEMPLATE,
    KINDS,
    MROPE_SECTION,
    build_standin,
    hub_config,
    image_tokens,
    model_config,
)
from rft.config import ModelConfig
from rft.models import load_model

WIDTH = 256  # text width of the forward tests: 2 heads of the real head_dim 128, 1 KV head
HUB_FILES = {
    "chat_template.json",
    "config.json",
    "generation_config.json",
    "merges.txt",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
}
IMAGE_PAD, IM_END, ENDOFTEXT = 151655, 151645, 151643


@pytest.fixture(scope="module", params=KINDS)
def standin(request, tmp_path_factory):
    """(kind, folder) of a 2-layer, 2-vision-block stand-in at text width 256, built once per kind."""
    kind = request.param
    return kind, build_standin(tmp_path_factory.mktemp(kind), kind, hidden=WIDTH)


def _load(folder, **kw):
    return load_model(ModelConfig(id="standin", builtin=False, path=str(folder), dtype="bfloat16", **kw))


def test_folder_has_the_hub_layout(standin):
    kind, folder = standin
    assert {p.name for p in folder.iterdir()} == HUB_FILES
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    names = set(index["weight_map"])
    assert "lm_head.weight" not in names  # tied: the hub shards do not store it
    assert "model.embed_tokens.weight" in names and any(n.startswith("visual.blocks.") for n in names)
    assert not any(n.startswith("model.language_model.") for n in names)  # hub (4.x) tensor names
    with safe_open(folder / "model-00001-of-00002.safetensors", "pt") as f:
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    config = json.loads((folder / "config.json").read_text())
    assert config["rope_scaling"] == {"type": "mrope", "mrope_section": MROPE_SECTION}
    assert config["torch_dtype"] == "bfloat16" and config["tie_word_embeddings"] is True
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    assert (pre["min_pixels"], pre["max_pixels"], pre["image_processor_type"]) == (
        3136,
        12845056,
        "Qwen2VLImageProcessor",
    )
    assert json.loads((folder / "chat_template.json").read_text()) == {"chat_template": CHAT_TEMPLATE}


@pytest.mark.parametrize(
    "kind, text, vision",
    [
        (
            "qwen2vl_2b",
            (1536, 28, 12, 2, 8960, 32768),
            dict(depth=32, embed_dim=1280, num_heads=16, mlp_ratio=4, hidden_size=1536),
        ),
        (
            "qwen25vl_3b",
            (2048, 36, 16, 2, 11008, 128000),
            dict(
                depth=32,
                hidden_size=1280,
                intermediate_size=3420,
                out_hidden_size=2048,
                num_heads=16,
                window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31],
            ),
        ),
    ],
)
def test_full_size_config_has_the_real_values(kind, text, vision):
    layers = text[1]
    cfg = model_config(hub_config(kind, layers=layers, vision_depth=32, hidden=None, dtype=torch.bfloat16))
    t = cfg.text_config
    assert (
        t.hidden_size,
        t.num_hidden_layers,
        t.num_attention_heads,
        t.num_key_value_heads,
        t.intermediate_size,
        t.max_position_embeddings,
    ) == text
    assert (t.vocab_size, t.rms_norm_eps, cfg.tie_word_embeddings) == (151936, 1e-6, True)
    assert t.rope_parameters["mrope_section"] == MROPE_SECTION and t.rope_parameters["rope_theta"] == 1e6
    for key, value in vision.items():
        assert getattr(cfg.vision_config, key) == value, key
    ids = (cfg.image_token_id, cfg.video_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id)
    assert ids == (151655, 151656, 151652, 151653)


def test_reduced_depth_clips_the_full_attention_blocks():
    hub = hub_config("qwen25vl_3b", layers=2, vision_depth=10, hidden=256, dtype=torch.bfloat16)
    assert hub["vision_config"]["fullatt_block_indexes"] == [7, 9]
    assert (
        hub["num_attention_heads"],
        hub["num_key_value_heads"],
        hub["vision_config"]["out_hidden_size"],
    ) == (
        2,
        1,
        256,
    )
    with pytest.raises(ValueError, match="multiple of the real head_dim"):
        hub_config("qwen2vl_2b", layers=2, vision_depth=2, hidden=200, dtype=torch.bfloat16)


def test_autoconfig_reads_the_hub_config(standin):
    from transformers import AutoConfig

    kind, folder = standin
    read = AutoConfig.from_pretrained(folder)
    built = model_config(json.loads((folder / "config.json").read_text()))
    assert type(read) is type(built)
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
    ):
        assert getattr(read.text_config, key) == getattr(built.text_config, key), key
    assert read.text_config.rope_parameters["mrope_section"] == MROPE_SECTION
    assert read.text_config.rope_parameters["rope_theta"] == 1e6
    assert read.tie_word_embeddings is True and read.image_token_id == IMAGE_PAD
    assert read.vision_config.depth == 2
    if kind == "qwen25vl_3b":
        assert read.vision_config.fullatt_block_indexes == [1]


def test_tokenizer_has_the_real_ids(standin):
    import quicktok
    from transformers import AutoTokenizer

    kind, folder = standin
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) == {"qwen2vl_2b": 151657, "qwen25vl_3b": 151665}[kind]
    assert tok.convert_tokens_to_ids(["<|image_pad|>", "<|im_end|>", "<|vision_start|>"]) == [
        IMAGE_PAD,
        IM_END,
        151652,
    ]
    assert (tok.eos_token_id, tok.pad_token_id, tok.bos_token) == (IM_END, ENDOFTEXT, None)
    assert tok("Hello, world!")["input_ids"] == [9707, 11, 1879, 0]
    # An independent BPE implementation of the same ranks (quicktok's own encoder) agrees.
    reference = quicktok.get_encoding("qwen3")
    for text in (
        "Hello, world!",
        " 12345 apples\n\n\tindent",
        "ümlaut 日本語 🙂",
        "def f(x):\n    return x**2",
    ):
        assert tok(text)["input_ids"] == reference.encode(text), text


def test_chat_template_renders_the_real_special_tokens(standin):
    from transformers import AutoTokenizer

    _, folder = standin
    tok = AutoTokenizer.from_pretrained(folder)
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = tok.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>What is it?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    ids = tok(text)["input_ids"]
    assert ids.count(IMAGE_PAD) == 1 and ids[-5:] == [
        IM_END,
        198,
        151644,
        77091,
        198,
    ]  # "\n" 198, "assistant" 77091
    two = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "?"}]}]
    with_ids = tok.apply_chat_template(two, tokenize=False, add_vision_id=True)
    assert "Picture 1: <|vision_start|>" in with_ids and "Picture 2: <|vision_start|>" in with_ids
    own_system = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert "helpful assistant" not in tok.apply_chat_template(own_system, tokenize=False)


def test_generation_config_is_the_hubs(standin):
    from transformers import GenerationConfig

    _, folder = standin
    gen = GenerationConfig.from_pretrained(folder)
    assert gen.eos_token_id == [IM_END, ENDOFTEXT]
    assert (gen.bos_token_id, gen.pad_token_id, gen.do_sample) == (ENDOFTEXT, ENDOFTEXT, True)
    assert (gen.repetition_penalty, gen.temperature, gen.top_p, gen.top_k) == (1.05, 0.1, 0.001, 1)


@pytest.mark.slow
def test_loads_through_the_suite_and_runs_a_forward_with_an_image(standin):
    _, folder = standin
    model, processor = _load(folder)
    assert model.dtype == torch.bfloat16
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    # Every tensor of the hub-named shards landed in the model (nothing was silently re-initialised).
    state = model.state_dict()
    for shard in folder.glob("*.safetensors"):
        with safe_open(shard, "pt") as f:
            for name in f.keys():
                ours = "model.language_model." + name[6:] if name.startswith("model.") else "model." + name
                assert torch.equal(f.get_tensor(name), state[ours]), name
    turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    text = processor.apply_chat_template(turn, tokenize=False, add_generation_prompt=True)
    enc = processor(text=[text], images=[Image.new("RGB", (56, 84), (200, 40, 90))], return_tensors="pt")
    assert int((enc["input_ids"] == IMAGE_PAD).sum()) == image_tokens(enc["image_grid_thw"][0])
    model.eval()
    with torch.no_grad():
        logits = model(**enc).logits  # [1, P, V]
    assert logits.shape == (1, enc["input_ids"].shape[1], 151936)
    assert torch.isfinite(logits.float()).all()


@pytest.mark.slow
def test_the_suite_pixel_budget_wins_over_the_checkpoint(standin):
    """Qwen's preprocessor_config.json says max_pixels 12,845,056; model.max_pixels=401408 must win: a 1024x668
    photo gets grid [1, 36, 56] = 504 merged tokens (it got 888 before the fix), and the row records the budget."""
    from rft.models import pixel_budget

    _, folder = standin
    _, processor = _load(folder, min_pixels=3136, max_pixels=401408)
    enc = processor.image_processor(images=[Image.new("RGB", (1024, 668))], return_tensors="pt")
    grid = enc["image_grid_thw"][0]
    assert grid.tolist() == [1, 36, 56] and image_tokens(grid) == 504
    assert pixel_budget(processor) == (3136, 401408)


@pytest.mark.slow
def test_sample_hf_uses_the_suite_settings_not_the_checkpoints(standin):
    """The checkpoint's repetition_penalty 1.05, top_k 1, top_p 0.001 and temperature 0.1 never reach sampling;
    both EOS ids of its generation config stop a completion."""
    from rft.prompts import chat_text, encode_prompts
    from rft.sampling import sample_hf

    _, folder = standin
    model, processor = _load(folder)
    model.eval()
    seen = []
    build = model._get_logits_processor

    def spy(generation_config, *args, **kwargs):
        processors = build(generation_config, *args, **kwargs)
        seen.append((generation_config, [type(p).__name__ for p in processors]))
        return processors

    model._get_logits_processor = spy
    prompts = encode_prompts(processor, [chat_text(processor, "Hi", 1)], [(Image.new("RGB", (56, 56)),)])
    for temperature, group in ((1.0, 2), (None, 1)):  # a rollout group, then greedy evaluation (rft.evaluate)
        sample_hf(
            model,
            processor.tokenizer,
            prompts,
            num_return_sequences=group,
            max_new_tokens=3,
            temperature=temperature,
        )
    for gen, names in seen:
        assert "RepetitionPenaltyLogitsProcessor" not in names, names
        assert not any(n in names for n in ("TopKLogitsWarper", "TopPLogitsWarper")), names
        assert set(gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]) == {
            151645,
            151643,
        }
    rollout_gen, _ = seen[0]
    assert rollout_gen.do_sample and rollout_gen.temperature == 1.0
