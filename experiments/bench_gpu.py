"""GPU benchmark: the suite's real GRPO step (`rft.grpo.train`) vs TRL 1.16's GRPOTrainer on a Qwen2-VL-2B stand-in.

    python experiments/bench_gpu.py                # one H100/H200: full 2B stand-in, bf16, sdpa, G=8 x 256 tokens
    python experiments/bench_gpu.py --dry-run      # a tiny stand-in on CPU: checks the set-up end to end

Both sides load the same folder (`experiments.standin.cached_standin`: the real 2B architecture, tokenizer and
processor, random bf16 weights), one prompt with a 896 x 448 = 401,408-pixel image, G = 8 completions of exactly
256 tokens, beta 0, mu 1, lr 1e-6. Ours is `grpo.train` itself, timed by its own `perf/step_s` and
`timing/rollout_s` after `--warmup` steps; TRL from `on_step_begin` to `on_step_end`. Reported per side: median
step time, rollout tokens/s, peak GPU memory, and for ours the fraction of the decode bandwidth ceiling (formula in
docs/performance.md). Needs `trl==1.16.0` and `datasets` (`make gpu-wheels` carries them to an offline GPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
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

from experiments.standin import cached_standin  # noqa: E402
from rft import distributed, grpo, models  # noqa: E402
from rft.config import LoggerConfig, ModelConfig, RFTConfig, RunConfig, TaskConfig  # noqa: E402
from rft.data.base import accepted_answers  # noqa: E402
from rft.data.registry import build_task  # noqa: E402
from rft.prompts import chat_text, encode_prompts  # noqa: E402
from rft.rewards import is_correct, is_well_formatted  # noqa: E402

HBM_BYTES_PER_S = {"H200": 4.8e12, "H100": 3.35e12}  # H100 is the SXM figure; PCIe is 2.0e12
LR = 1e-6
# The stand-in's sizes: the full Qwen2-VL-2B, and a tiny one for the CPU dry run.
FULL = dict(layers=28, vision_depth=32, hidden=None, dtype=torch.bfloat16, image=(896, 448))
DRY = dict(layers=2, vision_depth=1, hidden=128, dtype=torch.float32, image=(112, 56))


class StepRecorder:
    """The tracker handed to `grpo.train`: keeps every step's metrics and the wall clock at each log call."""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def log(self, step: int, metrics) -> None:
        self.steps.append({"step": step, "wall": time.perf_counter(), **metrics})

    def log_samples(self, step: int, rows, images=None) -> None:
        pass


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else 0.0


def reset_peak(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def decode_bytes_per_step(config, P: int, G: int, T: int, bytes_per_param: int = 2) -> int:
    """Bytes a decode step must read: the text decoder's and LM head's weights, plus the mean K/V context."""
    t = config.text_config
    head_dim = t.hidden_size // t.num_attention_heads
    attn = t.hidden_size * (t.num_attention_heads + 2 * t.num_key_value_heads) * head_dim + t.hidden_size**2
    per_layer = attn + 3 * t.hidden_size * t.intermediate_size
    # Every layer plus the LM head (tied to the embedding, read once).
    weights = t.num_hidden_layers * per_layer + t.vocab_size * t.hidden_size
    kv = 2 * t.num_hidden_layers * G * t.num_key_value_heads * head_dim * (P + T / 2)
    return int(bytes_per_param * (weights + kv))


def run_config(model_dir: Path, dtype: torch.dtype, device: str, G: int, T: int, steps: int) -> RunConfig:
    """The typed config of our side: one prompt x G completions of exactly T tokens per step, beta 0, mu 1."""
    return RunConfig(
        task=TaskConfig(name="fgvc_synth", train_size=1, test_size=1, image_size=112),
        method=RFTConfig(
            steps=steps,
            group_size=G,
            rollout_batch_size=G,
            micro_batch_size=G,
            max_new_tokens=T,
            min_new_tokens=T,
            lr=LR,
            beta=0.0,
            samples_every=10**6,
        ),
        model=ModelConfig(
            id="qwen2vl_2b-standin",
            builtin=False,
            path=str(model_dir),
            dtype=str(dtype).removeprefix("torch."),
            attn_implementation="sdpa",
        ),
        logger=LoggerConfig(backend="none"),
        device=device,
    )


def run_ours(cfg: RunConfig, task, sample, warmup: int) -> dict:
    """`rft.grpo.train` for warmup + measured steps; the measured steps' medians."""
    device = distributed.resolve_device(cfg.device)  # the run's one device decision, as the pipeline makes it
    model, processor = models.load_model(cfg.model)
    model.to(device)
    recorder = StepRecorder()
    reset_peak(device)
    grpo.train(cfg, task, [sample], model, processor, recorder, None, device=device)
    measured = recorder.steps[warmup:]
    rollout_s = statistics.median(s["timing/rollout_s"] for s in measured)
    walls = [b["wall"] - a["wall"] for a, b in zip(recorder.steps[warmup - 1 :], measured, strict=False)]
    out = {
        "step_s": statistics.median(s["perf/step_s"] for s in measured),
        "step_s_all": [round(s["perf/step_s"], 4) for s in recorder.steps],
        "wall_between_steps_s": statistics.median(walls) if warmup > 0 and walls else None,
        "rollout_s": rollout_s,
        "update_s": statistics.median(s["timing/update_s"] for s in measured),
        "rollout_tokens_per_s": statistics.median(s["perf/tokens_per_s"] for s in measured),
        "completion_tokens": statistics.median(s["rollout/completion_tokens"] for s in measured),
        "loss": [s["train/loss"] for s in recorder.steps],
        "peak_gb": max(s.get("perf/peak_mem_gb", 0.0) for s in recorder.steps),
    }
    del model
    return out


def run_trl(model, processor, prompt_text, image, accepted, G, T, steps, warmup, bf16, device, out_dir):
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

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
    ap.add_argument("--dry-run", action="store_true", help="a tiny stand-in on CPU: checks the set-up")
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="measured steps per side")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--no-trl", action="store_true", help="ours only")
    ap.add_argument("--work", default=str(ROOT / "outputs/bench_gpu"), help="where the stand-in is built")
    ap.add_argument(
        "--out",
        default=None,
        help="also write the report as JSON here: the study's estimate takes it as its calibration "
        "(make study DRY_RUN=1 STUDY_ARGS='--calibration <file>', docs/protocol.md)",
    )
    args = ap.parse_args(argv)
    if args.dry_run:
        device, size = "cpu", DRY
        G, T, steps, warmup = 2, 4, 1, 1
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device; run with --dry-run to check the set-up on CPU")
        device, size = "cuda", FULL
        G, T, steps, warmup = args.group, args.tokens, args.steps, args.warmup
    dtype = size["dtype"]
    model_dir, build_s = cached_standin(
        Path(args.work),
        layers=size["layers"],
        vision_depth=size["vision_depth"],
        hidden=size["hidden"],
        dtype=dtype,
        device=device,
    )
    cfg = run_config(model_dir, dtype, device, G, T, warmup + steps)
    task = build_task(cfg.task)
    sample = task.split("train")[0]
    image = sample.images[0].convert("RGB").resize(size["image"], Image.BICUBIC)  # (width, height)
    sample = dataclasses.replace(sample, images=(image,))
    processor = models.load_processor(str(model_dir), cfg.model)
    prompt_text = task.prompt(sample, True)
    prompts = encode_prompts(processor, [chat_text(processor, prompt_text, 1)], [(image,)])
    P = prompts.input_ids.shape[1]
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    report: dict = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": {
            "path": str(model_dir),
            "build_s": round(build_s, 2),
            **{k: str(v) for k, v in size.items()},
        },
        "G": G,
        "T": T,
        "P": P,
        "image_tokens": int(prompts.image_grid_thw.prod() // 4),
        "warmup": warmup,
        "steps": steps,
    }

    # Ours: the real loop.
    report["ours"] = run_ours(cfg, task, sample, warmup)
    nbytes = decode_bytes_per_step(config, P, G, T, torch.finfo(dtype).bits // 8)
    bw = next((v for k, v in HBM_BYTES_PER_S.items() if k in report["device"]), None)
    rollout_s = report["ours"]["rollout_s"]
    report["decode_bandwidth"] = {
        "bytes_per_step": nbytes,
        "hbm_bytes_per_s": bw,
        "fraction_of_ceiling": (T * nbytes / bw) / rollout_s if bw else None,
    }
    reset_peak(device)

    # TRL.
    if not args.no_trl:
        model, _ = models.load_model(cfg.model)
        model.to(device)
        with tempfile.TemporaryDirectory() as out_dir:
            seconds, peak = run_trl(
                model,
                processor,
                prompt_text,
                image,
                accepted_answers(sample),
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
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def print_report(r: dict) -> None:
    print(
        f"\n{r['device']}: Qwen2-VL-2B stand-in ({r['model']['layers']} layers, hidden {r['model']['hidden']}), "
        f"G={r['G']} x {r['T']} tokens, prompt {r['P']} tokens ({r['image_tokens']} image), "
        f"{r['warmup']} warm-up + {r['steps']} measured steps"
    )
    o = r["ours"]
    print(
        f"  ours (rft.grpo.train): step {o['step_s']:.3f} s, rollout {o['rollout_s']:.3f} s = "
        f"{o['rollout_tokens_per_s']:.0f} tok/s, update {o['update_s']:.3f} s, peak {o['peak_gb']:.1f} GiB"
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
