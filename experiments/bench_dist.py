"""Scale-out benchmark: per-rank peak memory (RSS) and GRPO step time of the ~19M tiny model under dist=none
(one process) and ZeRO-2 / ZeRO-3 with 2 ranks on CPU (gloo).

    python experiments/bench_dist.py [--steps 6] [--out outputs/bench_dist]      # or: make bench-dist

Each configuration runs in fresh processes; every rank reports its own peak RSS, the parameter elements it
holds, and the median step time after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def worker(mode: str, steps: int, out: Path) -> None:
    from rft import distributed, grpo, models
    from rft.config import (
        BudgetConfig,
        DistConfig,
        LoggerConfig,
        ModelConfig,
        RewardConfig,
        RewardTerm,
        RFTConfig,
        RunConfig,
        TaskConfig,
    )
    from rft.data.budget import apply_budget
    from rft.data.registry import build_task
    from rft.rewards import REWARDS
    from rft.tracking import Tracker

    # Format-only reward varies across a random model's completions often enough for a non-zero update.
    REWARDS.setdefault(
        "bench_letters", lambda x: [sum(c.isalpha() for c in t) / max(len(t), 1) for t in x.completions]
    )
    world = distributed.world_size()
    cfg = RunConfig(
        task=TaskConfig(name="sat_synth", train_size=32, test_size=4, image_size=56),
        method=RFTConfig(
            steps=steps,
            rollout_batch_size=8 * world,
            group_size=8,
            micro_batch_size=8,
            lr=1e-5,
            beta=0.0,
            max_new_tokens=64,
            samples_every=10**6,
            sampler="hf",
        ),
        model=ModelConfig(
            id="tiny_20m",
            cache_dir=os.environ.get("RFT_CACHE", "~/.cache/rft-suite") + "/models",
            min_pixels=784,
            max_pixels=56 * 56,
        ),
        reward=RewardConfig(name="bench", terms=[RewardTerm("bench_letters")]),
        budget=BudgetConfig(kind="samples", size=16),
        logger=LoggerConfig(backend="none"),
        dist=DistConfig(
            name=mode,
            backend="none" if mode == "none" else "deepspeed",
            zero_stage=3 if mode == "zero3" else 2,
        ),
    )
    distributed.init(cfg.dist.backend, distributed.resolve_device(cfg.device))
    task = build_task(cfg.task, seed=0)
    train = apply_budget(task.split("train"), "samples", 16, 0)
    model, processor = models.load_model(cfg.model)
    rank = distributed.rank()
    run_dir = out / f"{mode}-rank{rank}"
    tracker = Tracker(
        run_dir, enabled=True, backend="none", project="b", name="b", mode="disabled", config={}, axes={}
    )
    _, engine = grpo.train(cfg, task, train, model, processor, tracker)
    held = sum(
        p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in engine.module.parameters()
    )
    step_s = [json.loads(x)["perf/step_s"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    report = {
        "mode": mode,
        "rank": rank,
        "world": world,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "param_elements_held": held,
        "median_step_s": statistics.median(step_s),
    }
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "outputs/bench_dist")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.steps, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in ("none", "zero2", "zero3"):
        launcher = [sys.executable] if mode == "none" else [torchrun, "--nproc_per_node", "2"]
        cmd = [*launcher, __file__, "--worker", mode, "--steps", str(args.steps), "--out", str(args.out)]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
    print(f"{'mode':<7} {'rank':>4} {'peak RSS MB':>12} {'param elems held':>17} {'median step s':>14}")
    for f in sorted(
        args.out.glob("*-rank*.json"), key=lambda p: ("none", "zero2", "zero3").index(p.stem.split("-")[0])
    ):
        r = json.loads(f.read_text())
        print(
            f"{r['mode']:<7} {r['rank']:>4} {r['peak_rss_mb']:>12.0f} {r['param_elements_held']:>17,} {r['median_step_s']:>14.3f}"
        )


if __name__ == "__main__":
    main()
