"""Benchmark one GRPO step of the suite against TRL's GRPOTrainer, on the same model folder and data, side by side.

    python experiments/bench.py                 # the issue's setting: 1 prompt x G=8 x 64 tokens, 56x56, beta=0
    python experiments/bench.py --levers        # the worth of each optimisation, each measured in isolation
    python experiments/bench.py --grid          # ours vs TRL over G x completion length x pixels (markdown rows)

Both sides get the identical model folder (`tiny_20m`, built by rft.tiny.build_tiny_model), the same sat_synth
prompt text and image, fp32, the same lr, beta = 0, torch threads = 2, and min_new_tokens = max_new_tokens, so
every completion has exactly T tokens on both sides. The steps are interleaved: W warm-up steps each, then rounds
of k steps ours / k steps TRL, so a noisy neighbour on the machine hits both. Ours is `rft.grpo.train` itself,
timed by its own perf/step_s and timing/* metrics; TRL's step is timed from `on_step_begin` to `on_step_end` (it
covers generation, scoring, loss, backward and the optimizer step, like perf/step_s). The naive floor is one HF
generate for the G sequences plus one forward+backward+AdamW over them, measured in the same run.

TRL is a benchmark-only dependency (`pip install -e .[bench]`); `rft/` never imports it.
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

from rft import grpo, models, tiny  # noqa: E402
from rft.config import (  # noqa: E402
    LoggerConfig,
    ModelConfig,
    RewardConfig,
    RFTConfig,
    RunConfig,
    TaskConfig,
)
from rft.data.base import Sample, Task, accepted_answers  # noqa: E402
from rft.data.sat import make_sat_synth  # noqa: E402
from rft.logprobs import completion_logprobs, naive_logprobs, shared_prompt_logprobs  # noqa: E402
from rft.prompts import Prompts, chat_text, encode_prompts, suppressed_token_ids  # noqa: E402
from rft.rewards import is_correct, is_well_formatted  # noqa: E402
from rft.sampling import completion_mask, sample_lean  # noqa: E402

LR = 1e-5


# ---------------------------------------------------------------------------------------------------------------
# Shared set-up
# ---------------------------------------------------------------------------------------------------------------


def model_spec(cache: Path, preset: str = "tiny_20m") -> ModelConfig:
    folder = tiny.build_tiny_model(preset, 0, cache)
    return ModelConfig(id=preset, path=str(folder), min_pixels=28 * 28, cache_dir=str(cache))


def bench_sample(image_size: int) -> tuple[Task, Sample]:
    """The one sat_synth row both sides train on (its image is image_size x image_size)."""
    task = make_sat_synth(4, 1, 0, image_size)
    return task, task.split("train")[0]


def encoded_prompt(processor, task: Task, sample: Sample) -> Prompts:
    text = chat_text(processor, task.prompt(sample, True), len(sample.images))
    return encode_prompts(processor, [text], [sample.images])


def run_config(G: int, T: int, steps: int, **method) -> RunConfig:
    """Our GRPO config of the benchmark: B=1 prompt x G, T tokens exactly, beta=0, mu=1, one micro-batch."""
    m = RFTConfig(
        steps=steps,
        rollout_batch_size=G,
        group_size=G,
        micro_batch_size=G,
        lr=LR,
        beta=0.0,
        mu=1,
        max_new_tokens=T,
        min_new_tokens=T,
        samples_every=10**6,
        **method,
    )
    return RunConfig(
        task=TaskConfig(name="sat_synth"),
        method=m,
        model=ModelConfig(),
        reward=RewardConfig(),
        logger=LoggerConfig(backend="none"),
    )


class StepLog:
    """Stands in for rft.tracking.Tracker: keeps every step's metrics and calls `after_step(step)`."""

    def __init__(self, after_step=None):
        self.metrics: list[dict[str, float]] = []
        self.after_step = after_step

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.metrics.append(dict(metrics))
        if self.after_step is not None:
            self.after_step(step)

    def log_samples(self, step, rows, images=None) -> None:
        pass


# ---------------------------------------------------------------------------------------------------------------
# TRL side
# ---------------------------------------------------------------------------------------------------------------


def make_trl(model, processor, task, sample, G: int, T: int, out_dir: str):
    """A GRPOTrainer on one repeated sat_synth row, configured like ours (returns trainer, per-step clock)."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.seconds.append(time.perf_counter() - self.t0)

    accepted = accepted_answers(sample)

    def reward_accuracy(completions, **kw):
        return [float(is_correct(c[0]["content"], accepted)) for c in completions]

    def reward_format(completions, **kw):
        return [float(is_well_formatted(c[0]["content"], True)) for c in completions]

    row = {"prompt": [{"role": "user", "content": task.prompt(sample, True)}], "image": sample.images[0]}
    cfg = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=G,
        num_generations=G,
        max_completion_length=T,
        generation_kwargs={"min_new_tokens": T},
        learning_rate=LR,
        beta=0.0,
        temperature=1.0,
        loss_type="grpo",
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=1.0,
        logging_steps=10**6,
        report_to="none",
        save_strategy="no",
        max_steps=1,
        log_completions=False,
        dataloader_num_workers=0,
    )
    clock = Clock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_accuracy, reward_format],
        args=cfg,
        train_dataset=Dataset.from_list([row] * 64),
        processing_class=processor,
        callbacks=[clock],
    )
    trainer.remove_callback(ProgressCallback)  # no per-call progress bars or end-of-train log lines
    trainer.remove_callback(PrinterCallback)
    return trainer, clock


def trl_steps(trainer, clock, k: int) -> list[float]:
    """Run k TRL steps (one `train()` call; the optimizer persists across calls) and return their seconds."""
    trainer.args.max_steps = k
    clock.seconds = []
    trainer.train()
    return list(clock.seconds)


# ---------------------------------------------------------------------------------------------------------------
# Naive paths: the floor, and the references the levers are measured against
# ---------------------------------------------------------------------------------------------------------------


def hf_generate(model, tok, prompts, G, T, cache_implementation=None):
    with torch.no_grad():
        return model.generate(
            **prompts.model_inputs(),
            do_sample=True,
            temperature=1.0,
            top_p=None,
            top_k=None,
            num_return_sequences=G,
            max_new_tokens=T,
            min_new_tokens=T,
            pad_token_id=tok.pad_token_id,
            suppress_tokens=suppressed_token_ids(tok),
            cache_implementation=cache_implementation,
        )


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def floor_once(model, processor, prompts, opt, G: int, T: int) -> tuple[float, float]:
    """(seconds of one HF generate of G x T, seconds of one naive fwd+bwd+AdamW over those G sequences)."""
    tok = processor.tokenizer
    model.eval()
    t_gen = time.perf_counter()
    out = hf_generate(model, tok, prompts, G, T)
    t_gen = time.perf_counter() - t_gen
    ids = out[:, prompts.input_ids.shape[1] :]  # [G, T]
    mask = completion_mask(ids, tok)
    model.train()
    t_upd = time.perf_counter()
    logp = naive_logprobs(model, prompts, torch.zeros(G, dtype=torch.long), ids, mask)  # [G, T]
    (-(logp.sum(1) / mask.sum(1).clamp(min=1)).mean()).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return t_gen, time.perf_counter() - t_upd


# ---------------------------------------------------------------------------------------------------------------
# Modes
# ---------------------------------------------------------------------------------------------------------------


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def head_to_head(spec, G: int, T: int, image: int, warmup: int, rounds: int, k: int, floor: bool) -> dict:
    """Interleaved A/B: W warm-up steps each, then `rounds` x (k ours, k TRL[, 1 floor]). Returns medians."""
    task, sample = bench_sample(image)
    ours_model, ours_proc = models.load_model(spec)
    trl_model, trl_proc = models.load_model(spec)
    floor_model, floor_proc = models.load_model(spec) if floor else (None, None)
    prompts = encoded_prompt(ours_proc, task, sample)
    trl_times, floors = [], []
    with tempfile.TemporaryDirectory() as out_dir:
        trainer, clock = make_trl(trl_model, trl_proc, task, sample, G, T, out_dir)
        opt = torch.optim.AdamW(floor_model.parameters(), lr=LR) if floor else None

        def after_step(step: int) -> None:
            if step < warmup or (step - warmup) % k:
                return
            if step == warmup:
                trl_steps(trainer, clock, warmup)  # TRL's warm-up, then alternate
                if floor:
                    floor_once(floor_model, floor_proc, prompts, opt, G, T)
                return
            trl_times.extend(trl_steps(trainer, clock, k))
            if floor:
                floors.append(floor_once(floor_model, floor_proc, prompts, opt, G, T))

        logger = StepLog(after_step)
        cfg = run_config(G, T, warmup + rounds * k)
        grpo.train(cfg, task, [sample], ours_model, ours_proc, logger)
    measured = logger.metrics[warmup:]
    phases = sorted({key for m in measured for key in m if key.startswith("timing/")})
    result = {
        "preset": spec.id,
        "G": G,
        "T": T,
        "image": image,
        "P": prompts.input_ids.shape[1],
        "steps_each": len(measured),
        "ours_s": med([m["perf/step_s"] for m in measured]),
        "trl_s": med(trl_times),
        "ours_all": [round(m["perf/step_s"], 3) for m in measured],
        "trl_all": [round(t, 3) for t in trl_times],
        "phases": {p: med([m.get(p, 0.0) for m in measured]) for p in phases},
        "completion_tokens": med([m["rollout/completion_tokens"] for m in measured]),
    }
    if floor:
        result["floor_generate_s"] = med([f[0] for f in floors])
        result["floor_update_s"] = med([f[1] for f in floors])
    return result


def print_head_to_head(r: dict) -> None:
    print(
        f"\nGRPO step, {r['preset']}, 1 prompt x G={r['G']} x {r['T']} new tokens (min=max), {r['image']}x{r['image']} "
        f"image, prompt {r['P']} tokens, beta=0, fp32, {torch.get_num_threads()} threads; "
        f"{r['steps_each']} measured steps each, interleaved"
    )
    print(f"  ours  median {r['ours_s']:.3f} s/step   {r['ours_all']}")
    print(f"  TRL   median {r['trl_s']:.3f} s/step   {r['trl_all']}")
    print(f"  ratio ours/TRL = {r['ours_s'] / r['trl_s']:.3f}")
    print("  our phases (median s): " + ", ".join(f"{k[7:-2]} {v:.3f}" for k, v in r["phases"].items()))
    if "floor_generate_s" in r:
        fl = r["floor_generate_s"] + r["floor_update_s"]
        print(
            f"  naive floor {fl:.3f} s = HF generate {r['floor_generate_s']:.3f} + naive fwd+bwd+AdamW "
            f"{r['floor_update_s']:.3f}   (ours/floor = {r['ours_s'] / fl:.3f})"
        )
    print(f"  completion tokens per row (ours, median): {r['completion_tokens']:.0f}")


def levers(spec, G: int, T: int, image: int, reps: int) -> None:
    """Each optimisation against its straightforward counterpart, interleaved, same inputs (median seconds)."""
    task, sample = bench_sample(image)
    model, processor = models.load_model(spec)
    tok = processor.tokenizer
    prompts = encoded_prompt(processor, task, sample)
    pidx = torch.zeros(G, dtype=torch.long)

    def report(title: str, cases: dict) -> dict[str, float]:
        times = {name: [] for name in cases}
        for fn in cases.values():  # warm-up
            fn()
        for _ in range(reps):
            for name, fn in cases.items():
                times[name].append(timed(fn))
        meds = {name: med(ts) for name, ts in times.items()}
        base = next(iter(meds.values()))
        print(f"\n{title}")
        for name, s in meds.items():
            print(f"  {name:<46} {s:.4f} s   x{base / s:.2f} vs first")
        return meds

    model.eval()
    torch.manual_seed(0)
    report(
        f"rollout: {G} x {T} tokens, min_new_tokens = max",
        {
            "HF generate (dynamic cache)": lambda: hf_generate(model, tok, prompts, G, T),
            "HF generate, cache_implementation=static": lambda: hf_generate(
                model, tok, prompts, G, T, "static"
            ),
            "lean sampler (rft.sampling.sample_lean)": lambda: sample_lean(
                model,
                tok,
                prompts,
                num_return_sequences=G,
                max_new_tokens=T,
                temperature=1.0,
                min_new_tokens=T,
            ),
        },
    )
    ids, mask = sample_lean(
        model, tok, prompts, num_return_sequences=G, max_new_tokens=T, temperature=1.0, min_new_tokens=T
    )
    model.train()

    def fwd_bwd(fn):
        def run():
            logp = fn(model, prompts, pidx, ids, mask)
            logp.sum().backward()
            model.zero_grad(set_to_none=True)

        return run

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn(model, prompts, pidx, ids, mask)

        return run

    paths = {
        "naive: G image copies, all logits": lambda *a: naive_logprobs(*a, keep_all_logits=True),
        "naive + logits_to_keep": naive_logprobs,
        "vision once (completion_logprobs)": completion_logprobs,
        "vision once + shared prompt K/V": shared_prompt_logprobs,
    }
    report(f"log-prob forward+backward over {G} rows (the update)", {k: fwd_bwd(f) for k, f in paths.items()})
    report(
        f"log-prob forward only, no grad (a ref / old-logprob pass) over {G} rows",
        {k: no_grad(f) for k, f in paths.items()},
    )

    # Optimizer step variants over the same gradients.
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {
        "AdamW for-loop (foreach=False)": torch.optim.AdamW(params, lr=1e-9, foreach=False),
        "AdamW foreach": torch.optim.AdamW(params, lr=1e-9, foreach=True),
        "AdamW fused": torch.optim.AdamW(params, lr=1e-9, fused=True),
    }
    report(
        "AdamW step (17M parameters) + clip_grad_norm_",
        {
            name: (lambda o=o: (torch.nn.utils.clip_grad_norm_(params, 1.0), o.step()))
            for name, o in opts.items()
        },
    )
    model.zero_grad(set_to_none=True)

    # Whole steps: the old code path (HF generate + full-copy forward) vs the defaults, and thread counts.
    task_, sample_ = bench_sample(image)

    def whole(threads: int, **method):
        def run():
            old = torch.get_num_threads()
            torch.set_num_threads(threads)
            m, p = models.load_model(spec)
            log = StepLog()
            grpo.train(run_config(G, T, 3, **method), task_, [sample_], m, p, log)
            torch.set_num_threads(old)
            return med([x["perf/step_s"] for x in log.metrics[1:]])

        return run

    cases = {
        "sampler=hf, share_prompt=false (before)": whole(2, sampler="hf", share_prompt=False),
        "sampler=lean, share_prompt=false": whole(2, sampler="lean", share_prompt=False),
        "sampler=hf, share_prompt=true": whole(2, sampler="hf", share_prompt=True),
        "sampler=lean, share_prompt=true (defaults)": whole(2),
        "defaults, 1 thread": whole(1),
    }
    steps = {name: [] for name in cases}
    for _ in range(max(1, reps // 3)):
        for name, fn in cases.items():
            steps[name].append(fn())
    print("\nwhole GRPO step (median of steps 2-3 of short runs, repeated; s/step)")
    base = med(next(iter(steps.values())))
    for name, ts in steps.items():
        print(f"  {name:<46} {med(ts):.4f} s   x{base / med(ts):.2f} vs first")


GRID = [(G, T, image) for image in (56, 112) for T in (32, 64, 128) for G in (4, 8, 16)]
# One axis at a time around the headline point (G=8, T=64, 56x56), plus the largest corner: 7 of the 18 points.
CROSS = [(4, 64, 56), (8, 64, 56), (16, 64, 56), (8, 32, 56), (8, 128, 56), (8, 64, 112), (16, 128, 112)]


def plot_scaling(rows: list[dict], path: Path) -> None:
    """Ours vs TRL step time along each axis around the headline point (G=8, T=64, 56x56), one panel per axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {"G": 8, "T": 64, "image": 56}
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, axis in zip(axes, ("G", "T", "image"), strict=True):
        line = sorted(
            (r for r in rows if all(r[a] == base[a] for a in base if a != axis)), key=lambda r: r[axis]
        )
        xs = [r[axis] for r in line]
        ax.plot(xs, [r["ours_s"] for r in line], "o-", label="ours")
        ax.plot(xs, [r["trl_s"] for r in line], "s-", label="TRL GRPOTrainer")
        ax.set_xlabel(
            {"G": "G (completions per prompt)", "T": "new tokens", "image": "image side (px)"}[axis]
        )
        ax.set_ylabel("s / step")
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("GRPO step time, tiny_20m on 2 CPU cores (other axes at G=8, T=64, 56x56)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def grid(
    spec, points: list[tuple[int, int, int]], warmup: int, rounds: int, k: int, plot: Path | None = None
) -> None:
    """Ours vs TRL at each (G, T, image side) point, as markdown table rows (and a PNG when `plot` is set)."""
    rows = []
    print(
        "\n| G | T | image | prompt tokens | ours s/step | TRL s/step | ours/TRL | ours rollout | ours update |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for G, T, image in points:
        r = head_to_head(spec, G, T, image, warmup, rounds, k, floor=False)
        ph = r["phases"]
        print(
            f"| {G} | {T} | {image}x{image} | {r['P']} | {r['ours_s']:.3f} | {r['trl_s']:.3f} | "
            f"{r['ours_s'] / r['trl_s']:.2f} | {ph.get('timing/rollout_s', 0):.3f} | "
            f"{ph.get('timing/update_s', 0):.3f} |",
            flush=True,
        )
        rows.append({"G": G, "T": T, "image": image, "ours_s": r["ours_s"], "trl_s": r["trl_s"]})
    if plot is not None:
        plot_scaling(rows, plot)
        print(f"plot: {plot}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--levers", action="store_true", help="measure each optimisation in isolation")
    ap.add_argument("--grid", action="store_true", help="ours vs TRL over G x T x pixels (18 points)")
    ap.add_argument("--cross", action="store_true", help="ours vs TRL, one axis at a time (7 points)")
    ap.add_argument("--plot", type=Path, default=None, help="with --grid/--cross: also save a PNG here")
    ap.add_argument("--group", type=int, default=8, help="G, completions per prompt")
    ap.add_argument("--tokens", type=int, default=64, help="new tokens per completion (min = max)")
    ap.add_argument("--image", type=int, default=56, help="image side in pixels")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps per side")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds")
    ap.add_argument("--k", type=int, default=3, help="steps per side per round")
    ap.add_argument("--reps", type=int, default=7, help="repetitions per lever")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    ap.add_argument("--preset", default="tiny_20m", help="built-in model preset (tiny for a quick check)")
    ap.add_argument("--cache", default=os.environ.get("RFT_CACHE", "~/.cache/rft-suite"), help="model cache")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    spec = model_spec(Path(args.cache).expanduser() / "models", args.preset)
    if args.levers:
        levers(spec, args.group, args.tokens, args.image, args.reps)
    elif args.grid or args.cross:
        grid(spec, GRID if args.grid else CROSS, args.warmup, args.rounds, args.k, args.plot)
    else:
        r = head_to_head(
            spec, args.group, args.tokens, args.image, args.warmup, args.rounds, args.k, floor=True
        )
        print_head_to_head(r)


if __name__ == "__main__":
    main()
