"""GPU benchmark: one GRPO step of the suite's fast paths vs TRL's GRPOTrainer on a Qwen2-VL-2B-sized model.

    python experiments/bench_gpu.py                # one H100/H200: 2B dims, bf16, sdpa, G=8, 256 tokens
    python experiments/bench_gpu.py --dry-run      # tiny dims on CPU: checks the set-up end to end

The model is random-initialised from a config with the real Qwen2-VL-2B dims (text: hidden 1536, 28 layers,
12 heads, 2 KV heads, intermediate 8960, vocab 151,936, tied embeddings; vision: depth 32, embed 1280, 16 heads).
Only throughput matters, so the tokenizer is the suite's small trained BPE (no Qwen vocab needed): its special
tokens are wired into the config, and sampled ids beyond it decode to nothing. One prompt with one image of
448 x 896 = 401,408 pixels (512 merged image tokens), G = 8 completions of exactly 256 tokens (min = max).

Ours runs the phase functions of `rft.grpo.train` in the same order, on the GPU: `rft.sampling.sample_lean`,
`rft.rollout.score_rollout` on the same `Rollout` the loop passes between phases, group advantages,
`rft.logprobs.shared_prompt_logprobs`, grpo_loss, backward, clip, AdamW. (`grpo.train` itself keeps its inputs on the CPU; the benchmark moves them to the model's device.) TRL
runs GRPOTrainer with the same sizes, bf16, beta = 0, loss_type="grpo".

Reported per side: step time (median), rollout tokens/s (G*T / rollout seconds), peak GPU memory. For ours, the
fraction of the decode memory-bandwidth ceiling:

    bytes/step = 2 * (text-decoder params + LM head params)               (bf16 weights, each read once)
               + 2 * 2 * layers * N * kv_heads * head_dim * (P + T/2)     (K and V read, mean context length)
    ceiling    = T * bytes/step / HBM bandwidth (3.35 TB/s H100 SXM, 4.8 TB/s H200)
    fraction   = ceiling / measured rollout seconds                        (1.0 = bandwidth-bound decode)

Needs, beyond an image with torch, transformers, peft and accelerate:
    pip install hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 trl==1.16.0 datasets pillow
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration  # noqa: E402

from rft import models, tiny  # noqa: E402
from rft.config import ModelConfig  # noqa: E402
from rft.data.base import accepted_answers  # noqa: E402
from rft.data.sat import make_sat_synth  # noqa: E402
from rft.logprobs import shared_prompt_logprobs  # noqa: E402
from rft.losses import group_advantages, grpo_loss  # noqa: E402
from rft.processor import SPECIAL_TOKENS  # noqa: E402
from rft.prompts import Prompts, chat_text, encode_prompts  # noqa: E402
from rft.rewards import is_correct, is_well_formatted  # noqa: E402
from rft.rollout import Rollout, score_rollout  # noqa: E402
from rft.sampling import completion_texts, count_think_tokens, sample_lean  # noqa: E402

HBM_BYTES_PER_S = {"H200": 4.8e12, "H100": 3.35e12}  # H100 is the SXM figure; PCIe is 2.0e12
QWEN2_VL_2B = dict(
    hidden=1536,
    layers=28,
    heads=12,
    kv_heads=2,
    intermediate=8960,
    vocab=151936,
    vision_depth=32,
    vision_embed=1280,
    vision_heads=16,
    mlp_ratio=4,
    mrope=[16, 24, 24],
)
DRY_RUN = dict(
    hidden=64,
    layers=2,
    heads=4,
    kv_heads=2,
    intermediate=128,
    vocab=2048,
    vision_depth=2,
    vision_embed=64,
    vision_heads=4,
    mlp_ratio=2,
    mrope=[4, 2, 2],
)
LR = 1e-6


def model_config(dims: dict, tok) -> Qwen2VLConfig:
    """Qwen2-VL config with the given dims and the tokenizer's special-token ids."""
    ids = {name: tok.convert_tokens_to_ids(name) for name in SPECIAL_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=dims["vocab"],
            hidden_size=dims["hidden"],
            num_hidden_layers=dims["layers"],
            num_attention_heads=dims["heads"],
            num_key_value_heads=dims["kv_heads"],
            intermediate_size=dims["intermediate"],
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "mrope_section": dims["mrope"], "rope_theta": 1e6},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=dims["vision_depth"],
            embed_dim=dims["vision_embed"],
            hidden_size=dims["hidden"],
            num_heads=dims["vision_heads"],
            mlp_ratio=dims["mlp_ratio"],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_model(config, device, dtype, attn: str):
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    return model


def to_device(p: Prompts, device) -> Prompts:
    return Prompts(
        input_ids=p.input_ids.to(device),
        attention_mask=p.attention_mask.to(device),
        mm_token_type_ids=p.mm_token_type_ids.to(device),
        pixel_values=p.pixel_values.to(device),
        image_grid_thw=p.image_grid_thw.to(device),
        images_per_prompt=p.images_per_prompt,
    )


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def ours_step(model, opt, tok, prompts, sample, G: int, T: int, device) -> tuple[float, float]:
    """One GRPO step (beta=0, mu=1, one micro-batch) from the suite's phase functions. Returns (step_s, rollout_s)."""
    sync(device)
    t0 = time.perf_counter()
    # 1. Rollout.
    model.eval()
    ids, mask = sample_lean(
        model, tok, prompts, num_return_sequences=G, max_new_tokens=T, temperature=1.0, min_new_tokens=T
    )  # [G, T], [G, T]
    sync(device)
    t_rollout = time.perf_counter() - t0
    # 2-3. Rewards and advantages.
    completions = completion_texts(tok, ids.cpu(), mask.cpu())
    batch = Rollout(
        samples=[sample],
        prompts=prompts,
        group_size=G,
        prompt_index=torch.zeros(G, dtype=torch.long, device=device),  # [G]
        ids=ids,
        mask=mask,
        completions=completions,
        think_tokens=count_think_tokens(tok, completions),
    )
    score_rollout(batch, [("accuracy", 1.0), ("format", 1.0)], think=True, length_target=T)
    batch.advantages = group_advantages(torch.tensor(batch.rewards), G).to(device)  # [G]
    advantages = batch.advantages
    # 5-6. Loss, backward, optimizer step.
    model.train()
    logp = shared_prompt_logprobs(model, prompts, batch.prompt_index, ids, mask)  # [G, T]
    loss, _ = grpo_loss(
        logp,
        None,
        None,
        advantages,
        mask,
        clip_eps=0.2,
        beta=0.0,
        agg="seq-mean-token-mean",
        num_rows=G,
        num_tokens=int(mask.sum()),
        max_len=T,
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    sync(device)
    return time.perf_counter() - t0, t_rollout


def decode_bytes_per_step(config, P: int, G: int, T: int, bytes_per_param: int = 2) -> int:
    """Bytes a decode step must read: the text decoder's and LM head's weights, plus the mean K/V context."""
    t = config.text_config
    head_dim = t.hidden_size // t.num_attention_heads
    attn = t.hidden_size * (t.num_attention_heads + 2 * t.num_key_value_heads) * head_dim + t.hidden_size**2
    per_layer = attn + 3 * t.hidden_size * t.intermediate_size
    weights = (
        t.num_hidden_layers * per_layer + t.vocab_size * t.hidden_size
    )  # LM head (tied to the embedding)
    kv = 2 * t.num_hidden_layers * G * t.num_key_value_heads * head_dim * (P + T / 2)
    return int(bytes_per_param * (weights + kv))


def peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else 0.0


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def run_trl(model, processor, prompt_text, image, accepted, G, T, steps, warmup, bf16, device, out_dir):
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    class Clock(TrainerCallback):
        seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            sync(device)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.seconds.append(time.perf_counter() - self.t0)

    def reward_accuracy(completions, **kw):
        return [float(is_correct(c[0]["content"], accepted)) for c in completions]

    def reward_format(completions, **kw):
        return [float(is_well_formatted(c[0]["content"], True)) for c in completions]

    clock = Clock()
    cfg = GRPOConfig(
        output_dir=out_dir,
        use_cpu=torch.device(device).type == "cpu",
        bf16=bf16,
        per_device_train_batch_size=G,
        num_generations=G,
        max_completion_length=T,
        generation_kwargs={"min_new_tokens": T},
        learning_rate=LR,
        beta=0.0,
        temperature=1.0,
        loss_type="grpo",
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        logging_steps=10**6,
        report_to="none",
        save_strategy="no",
        max_steps=warmup + steps,
        log_completions=False,
        disable_tqdm=True,
    )
    row = {"prompt": [{"role": "user", "content": prompt_text}], "image": image}
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_accuracy, reward_format],
        args=cfg,
        train_dataset=Dataset.from_list([row] * (warmup + steps) * G),
        processing_class=processor,
        callbacks=[clock],
    )
    trainer.remove_callback(PrinterCallback)  # no end-of-train log line
    reset_peak(device)
    trainer.train()
    return clock.seconds[warmup:], peak_gb(device)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny dims on CPU, 1 step each: checks the set-up")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="measured steps per side")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-trl", action="store_true", help="ours only")
    ap.add_argument(
        "--cache", default=os.environ.get("RFT_CACHE", "~/.cache/rft-suite"), help="tokenizer cache"
    )
    args = ap.parse_args(argv)
    if args.dry_run:
        device, dtype, attn, dims, size = "cpu", torch.float32, "sdpa", DRY_RUN, (56, 56)
        G, T, steps, warmup = 2, 4, 1, 0
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device; run with --dry-run to check the set-up on CPU")
        device, dtype, attn, dims, size = "cuda", torch.bfloat16, "sdpa", QWEN2_VL_2B, (896, 448)
        G, T, steps, warmup = args.group, args.tokens, args.steps, args.warmup

    # The tokenizer and image processor of the suite's tiny model (special tokens wired into the 2B config).
    tiny_dir = tiny.build_tiny_model("tiny", 0, Path(args.cache).expanduser() / "models")
    spec = ModelConfig(
        id="tiny",
        path=str(tiny_dir),
        attn_implementation=attn,
        min_pixels=28 * 28,
        cache_dir=str(tiny_dir.parent),
    )
    processor = models.load_processor(str(tiny_dir), spec)
    tok = processor.tokenizer
    config = model_config(dims, tok)
    task = make_sat_synth(2, 1, 0, 56)
    sample = task.split("train")[0]
    image = sample.images[0].convert("RGB").resize(size, Image.BICUBIC)  # (width, height)
    prompt_text = task.prompt(sample, True)
    accepted = accepted_answers(sample)
    prompts = to_device(encode_prompts(processor, [chat_text(processor, prompt_text, 1)], [(image,)]), device)
    P = prompts.input_ids.shape[1]
    report: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dims": dims,
        "G": G,
        "T": T,
        "P": P,
        "image_tokens": int(prompts.image_grid_thw.prod() // 4),
    }

    # Ours.
    model = build_model(config, device, dtype, attn)
    report["params"] = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=LR, fused=device == "cuda")
    for _ in range(warmup):
        ours_step(model, opt, tok, prompts, sample, G, T, device)
    reset_peak(device)
    runs = [ours_step(model, opt, tok, prompts, sample, G, T, device) for _ in range(steps)]
    rollout_s = statistics.median(r[1] for r in runs)
    report["ours"] = {
        "step_s": statistics.median(r[0] for r in runs),
        "rollout_s": rollout_s,
        "rollout_tokens_per_s": G * T / rollout_s,
        "peak_gb": peak_gb(device),
    }
    nbytes = decode_bytes_per_step(config, P, G, T, torch.finfo(dtype).bits // 8)
    bw = next((v for k, v in HBM_BYTES_PER_S.items() if k in report["device"]), None)
    report["decode_bandwidth"] = {
        "bytes_per_step": nbytes,
        "hbm_bytes_per_s": bw,
        "fraction_of_ceiling": (T * nbytes / bw) / rollout_s if bw else None,
    }
    del model, opt
    reset_peak(device)

    # TRL.
    if not args.no_trl:
        model = build_model(config, device, dtype, attn)
        with tempfile.TemporaryDirectory() as out_dir:
            seconds, peak = run_trl(
                model,
                processor,
                prompt_text,
                image,
                accepted,
                G,
                T,
                steps,
                warmup,
                dtype == torch.bfloat16,
                device,
                out_dir,
            )
        report["trl"] = {
            "step_s": statistics.median(seconds),
            "peak_gb": peak,
            # TRL logs no rollout time per step; its tokens/s is G*T over the whole step (a lower bound).
            "rollout_tokens_per_s": G * T / statistics.median(seconds),
        }
        report["ratio_ours_over_trl"] = report["ours"]["step_s"] / report["trl"]["step_s"]
        del model
    print_report(report)
    return report


def print_report(r: dict) -> None:
    print(
        f"\n{r['device']}: Qwen2-VL dims {r['dims']['hidden']}x{r['dims']['layers']}, {r['params'] / 1e9:.2f}B params, "
        f"G={r['G']} x {r['T']} tokens, prompt {r['P']} tokens ({r['image_tokens']} image)"
    )
    o = r["ours"]
    print(
        f"  ours: step {o['step_s']:.3f} s, rollout {o['rollout_s']:.3f} s = {o['rollout_tokens_per_s']:.0f} tok/s, "
        f"peak {o['peak_gb']:.1f} GiB"
    )
    bw = r["decode_bandwidth"]
    if bw["fraction_of_ceiling"] is not None:
        print(
            f"  decode reads {bw['bytes_per_step'] / 1e9:.2f} GB/step; at {bw['hbm_bytes_per_s'] / 1e12:.2f} TB/s "
            f"the rollout runs at {bw['fraction_of_ceiling']:.0%} of the bandwidth ceiling"
        )
    if "trl" in r:
        t = r["trl"]
        print(
            f"  TRL:  step {t['step_s']:.3f} s ({t['rollout_tokens_per_s']:.0f} tok/s over the whole step), "
            f"peak {t['peak_gb']:.1f} GiB"
        )
        print(f"  ratio ours/TRL = {r['ratio_ours_over_trl']:.3f}")


if __name__ == "__main__":
    main()
