"""Plan, estimate, confirm and launch a study: the paper's (`make study`, every `sweeps/study_*.yaml`) or the
tiny one on CPU (`make study-tiny`, `TINY_SWEEPS`).

    python experiments/study.py --dry-run                  # the plan: jobs and estimated GPU-hours per sweep
    python experiments/study.py                            # plan, ask, then submit every sweep to SLURM
    python experiments/study.py --launcher local --yes     # or run them here, one sweep after another
    python experiments/study.py --study tiny --launcher local --parallel 2 --yes threads=1   # make study-tiny

Each sweep's grid is expanded with Hydra's compose API (as `tests/test_config.py` does), every job is validated
at its world size, and a job that an earlier sweep already runs (the thinking ablation's `acc_format` level is
a job of the RFT ladder) is dropped from the later sweep. Every job of one study run appends its row to
`<out>/results.csv`, so `make report REPORT_IN=<out>` builds both tables. The GPU-hours are an idealised
estimate from a per-job formula (`gpu_seconds`), not a measurement: the rates and their sources are below.
While the sweeps run, one line reports the whole study (`progress_line`): jobs done of all, failures, time
elapsed and an estimate of the time left, from the rows in `<out>/results.csv` (every job appends one).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from experiments.schemas import to_run_config  # noqa: E402  (importing it registers the schemas)
from rft import results  # noqa: E402
from rft.config import RFTConfig, RunConfig, SFTConfig, validate  # noqa: E402
from rft.data.draw import GLYPH_CLASSES  # noqa: E402

SWEEPS = ROOT / "sweeps"
CONF = ROOT / "conf"
SLURM = CONF / "hydra" / "launcher" / "slurm.yaml"

# --- The estimate's assumptions (seconds of one H100/H200 per token) ---------------------------------------
# No GPU figure has been measured in this repo yet, so the rates are derived from the chip:
# - dense bf16 matmuls: ~790 TFLOP/s measured for a large GEMM on an H200 (H100 SXM: 989 TFLOP/s dense on its
#   datasheet), at an assumed 40% utilisation for prefill, reference and update passes (2 FLOPs per parameter
#   and token forward, 6 forward + backward);
# - sampling is memory-bound: each decode step reads the bf16 weights once for the sequences decoded together
#   on that GPU, at an assumed 50% of the H200's ~4.3 TB/s (H100 SXM: 3.35 TB/s).
PEAK_FLOPS = 790e12
MATMUL_UTILISATION = 0.4
HBM_BYTES_PER_S = 4.3e12
HBM_UTILISATION = 0.5
# model load, DeepSpeed set-up, the final checkpoint: an assumed fixed cost per job, on each of its GPUs
JOB_OVERHEAD_S = 300.0
# parameters of the hub models (their safetensors), for FLOPs and bytes per token
PARAMS = {
    "Qwen/Qwen2-VL-2B-Instruct": 2.21e9,
    "Qwen/Qwen2-VL-7B-Instruct": 8.29e9,
    "Qwen/Qwen2.5-VL-3B-Instruct": 3.75e9,
    "Qwen/Qwen2.5-VL-7B-Instruct": 8.29e9,
}
# prompt text around the image tokens (instruction, question, options, chat template)
PROMPT_TEXT_TOKENS = 100
# an SFT target, `<answer>{label}</answer>`
SFT_TARGET_TOKENS = 16
# a Qwen2-VL image token covers 28 x 28 pixels
PIXELS_PER_IMAGE_TOKEN = 28 * 28
# test-split sizes (docs/data.md); banner is your own data, so its size is an assumption
TEST_SIZES = {"fgvc": 3333, "sat": 150, "banner": 1000}
# classes of a shots budget: FGVC-Aircraft's variants, and the glyph models of its tiny stand-in, whose
# train_size and test_size count images per class
CLASSES = {"fgvc": 100, "fgvc_synth": len(GLYPH_CLASSES)}
PER_CLASS_SIZES = {"fgvc_synth"}


@dataclass
class Job:
    """One point of a sweep's grid: its overrides, its typed config, and the GPUs it runs on."""

    sweep: str
    overrides: list[str]
    cfg: RunConfig
    world_size: int

    @property
    def gpu_seconds(self) -> float | None:
        return gpu_seconds(self.cfg, self.world_size)


@dataclass
class SweepPlan:
    """A sweep as the study runs it: its jobs, the grid values it drops as duplicates, its command line."""

    name: str
    jobs: list[Job]
    world_size: int
    params: dict[str, list[str]]
    dropped: dict[str, list[str]] = field(default_factory=dict)
    duplicates: int = 0

    @property
    def gpu_hours(self) -> float | None:
        seconds = [job.gpu_seconds for job in self.jobs]
        return None if None in seconds else sum(seconds) / 3600  # type: ignore[arg-type]

    def overrides(self) -> list[str]:
        """Grid params the study narrows (`reward=nothink,length_norm,length_norm_group`)."""
        return [
            f"{k}={','.join(v for v in self.params[k] if v not in drop)}" for k, drop in self.dropped.items()
        ]


# The tiny study's sweeps (`make study-tiny`, docs/tiny_study.md) in launch order: the base row, both
# ladders, then the thinking ablation, whose think level is a job of the ladder and so runs once.
TINY_SWEEPS = [
    "zeroshot_tiny",
    "rft_vs_sft_tiny_fgvc",
    "rft_vs_sft_tiny_sat",
    "thinking_tiny_fgvc",
    "thinking_tiny_sat",
]


def study_sweeps(study: str = "paper") -> list[str]:
    """A study's sweeps in launch order. The paper's: every `study_*.yaml`, alphabetical (the RFT ladders come
    before the thinking ablation); the tiny one: `TINY_SWEEPS`."""
    if study == "tiny":
        return list(TINY_SWEEPS)
    return sorted(p.stem for p in SWEEPS.glob("study_*.yaml"))


def slurm_gpus_per_node() -> int:
    """GPUs of one SLURM job (conf/hydra/launcher/slurm.yaml): the world size of a DeepSpeed sweep."""
    return int(yaml.safe_load(SLURM.read_text(encoding="utf-8"))["gpus_per_node"])


def expand(sweep: str) -> tuple[dict[str, list[str]], list[Job]]:
    """The grid of `sweeps/<sweep>.yaml` and one validated Job per point, composed in-process (no data read).

    Hydra composes once per distinct choice of config-group options in the grid (`reward=nothink`); the
    grid's plain values (`seed=1`, `budget.size=4`) are then set on a copy, as Hydra's override would set them
    (`tests/test_study.py` checks that both agree). A DeepSpeed sweep runs on `slurm_gpus_per_node()` ranks, a
    `dist=none` sweep on one; every job is validated at that world size, so a batch that does not split over
    the ranks fails here, before anything is submitted.
    """
    search = f"hydra.searchpath=[file://{CONF}]"
    composed: dict[tuple[str, ...], DictConfig] = {}
    with initialize_config_dir(version_base="1.3", config_dir=str(SWEEPS)):
        base = compose(config_name=sweep, overrides=[search], return_hydra_config=True)
        params = {str(k): str(v).split(",") for k, v in base.hydra.sweeper.params.items()}
        jobs = []
        for point in itertools.product(*([f"{k}={v}" for v in vals] for k, vals in params.items())):
            groups = tuple(o for o in point if (CONF / o.split("=")[0]).is_dir())
            if groups not in composed:
                composed[groups] = compose(config_name=sweep, overrides=[search, *groups])
            dcfg = copy.deepcopy(composed[groups])
            for override in point:
                if override not in groups:
                    key, value = override.split("=", 1)
                    OmegaConf.update(dcfg, key, yaml.safe_load(value), merge=False)
            cfg = to_run_config(dcfg)
            world_size = slurm_gpus_per_node() if cfg.dist.backend == "deepspeed" else 1
            validate(cfg, world_size=world_size)
            jobs.append(Job(sweep, list(point), cfg, world_size))
    return params, jobs


def identity(cfg: RunConfig) -> str:
    """What makes two jobs the same run: the whole typed config but the results table it appends to."""
    record = dataclasses.asdict(cfg)
    record.pop("results_csv")
    return json.dumps(record, sort_keys=True, default=str)


def plan(sweeps: list[str]) -> list[SweepPlan]:
    """Expand every sweep and drop the grid values whose jobs an earlier sweep already runs.

    A value is dropped only when every job that carries it is a duplicate, so the narrowed grid is still a
    product that the sweep's own command line can express (`reward=nothink,length_norm,length_norm_group`).
    """
    seen: set[str] = set()
    plans = []
    for sweep in sweeps:
        params, jobs = expand(sweep)
        dup = {id(job) for job in jobs if identity(job.cfg) in seen}
        dropped = {}
        for key, values in params.items():
            gone = [v for v in values if all(id(j) in dup for j in jobs if f"{key}={v}" in j.overrides)]
            if gone and len(gone) < len(values):
                dropped[key] = gone
        kept = [
            j for j in jobs if not any(f"{k}={v}" in j.overrides for k, vs in dropped.items() for v in vs)
        ]
        seen.update(identity(job.cfg) for job in kept)
        world = max(job.world_size for job in jobs)
        plans.append(SweepPlan(sweep, kept, world, params, dropped, duplicates=len(jobs) - len(kept)))
    return plans


# --- The estimate -------------------------------------------------------------------------------------------


def prompt_tokens(cfg: RunConfig) -> int:
    """P: image tokens at the model's pixel cap plus the prompt text, capped at the method's prompt length."""
    image = cfg.model.max_pixels // PIXELS_PER_IMAGE_TOKEN
    return min(image + PROMPT_TEXT_TOKENS, getattr(cfg.method, "max_prompt_tokens", 10**9))


def train_size(cfg: RunConfig) -> int:
    """Training examples of the budget: k shots x classes, N samples, or (full) the task's train_size."""
    if cfg.budget.kind == "shots":
        return cfg.budget.size * CLASSES.get(cfg.task.name, 1)
    if cfg.budget.kind == "samples":
        return cfg.budget.size
    return cfg.task.train_size * per_class(cfg)


def eval_size(cfg: RunConfig) -> int:
    """Questions evaluated: eval.limit, the real test split's size, or the synthetic task's test_size."""
    if cfg.eval.limit:
        return cfg.eval.limit
    return TEST_SIZES.get(cfg.task.name, cfg.task.test_size * per_class(cfg))


def per_class(cfg: RunConfig) -> int:
    """What a synthetic task's train_size and test_size multiply by: its classes, or 1 (they count images)."""
    return CLASSES[cfg.task.name] if cfg.task.name in PER_CLASS_SIZES else 1


def job_cost(cfg: RunConfig, world_size: int, fwd: float, decode) -> float:
    """One job's cost with `fwd` per token of a forward pass and `decode(batch)` per token decoded in batches of
    `batch` sequences; the formula of `gpu_seconds` (below), without the fixed set-up cost."""
    m, p = cfg.method, prompt_tokens(cfg)
    t = m.max_new_tokens
    cost = 0.0
    if isinstance(m, RFTConfig):
        c, b = m.rollout_batch_size, m.prompts_per_step
        passes = (1 if m.beta > 0 else 0) + (1 if m.mu > 1 else 0) + 3 * m.mu
        cost += m.steps * (b * p * fwd + c * t * decode(c // world_size) + (b * p + c * t) * passes * fwd)
    elif isinstance(m, SFTConfig):
        cost += m.total_steps(train_size(cfg)) * m.batch_size * (p + SFT_TARGET_TOKENS) * 3 * fwd
    before = cfg.eval.before and isinstance(m, RFTConfig | SFTConfig)  # zero-shot has no "before"
    return cost + (2 if before else 1) * eval_size(cfg) * (p * fwd + t * decode(cfg.eval.batch_size))


def gpu_seconds(cfg: RunConfig, world_size: int) -> float | None:
    """Estimated GPU-seconds of one job (None for a model outside `PARAMS`); every completion is taken at the
    full `max_new_tokens`, scaling over ranks as ideal.

        forward token  2N / (PEAK_FLOPS x MATMUL_UTILISATION)      update token: 3x that
        decode token   2N bytes / (HBM_BYTES_PER_S x HBM_UTILISATION) / sequences decoded together per GPU
        rft   steps x [B x P prefill + C x T decode + (B x P + C x T) x (reference forward + mu updates)]
        sft   steps (or ceil(epochs x n_train / batch)) x batch x (P + target) update tokens
        eval  n_test x (P prefill + T decode), at eval.batch_size sequences per GPU; twice with eval.before
    with C = rollout_batch_size completions per step, B = C / G prompts (each prompt is run once, its K/V
    shared by its G completions), P prompt tokens, T = max_new_tokens; plus JOB_OVERHEAD_S on every GPU.
    """
    n = PARAMS.get(cfg.model.id)
    if n is None:
        return None

    def decode(batch: int) -> float:
        return 2 * n / (HBM_BYTES_PER_S * HBM_UTILISATION) / max(1, batch)

    fwd = 2 * n / (PEAK_FLOPS * MATMUL_UTILISATION)
    return JOB_OVERHEAD_S * world_size + job_cost(cfg, world_size, fwd, decode)


# --- Progress of the whole study ----------------------------------------------------------------------------


def work(job: Job) -> float:
    """A job's size relative to the others, to weigh jobs done against jobs left: its GPU-seconds estimate, or,
    for a model outside `PARAMS` (the tiny CPU models), `job_cost` with every token costing 1: the tokens that
    pass through the model."""
    seconds = job.gpu_seconds
    return seconds if seconds is not None else job_cost(job.cfg, job.world_size, 1.0, lambda batch: 1.0)


def row_key(record: dict[str, object]) -> tuple[str, ...]:
    """What ties a result row to a job: the five axes and the seed, as the row writes them."""
    return tuple(str(record.get(k, "")) for k in ("task", "method", "model", "reward", "budget", "seed"))


def clock(seconds: float) -> str:
    """`1h02m`, `7m30s` or `45s`."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(jobs: list[Job], rows: list[dict[str, str]], elapsed: float) -> str:
    """The whole study in one line, from the rows of its results table (every job appends one, finished or
    failed): `study: 12/56 jobs done (1 failed), 7m30s elapsed, about 25m10s left`.

    The time left is the elapsed time scaled by the work left over the work done (`work`), so it assumes the
    rest runs at the pace so far; no estimate is given before the first job ends.
    """
    unclaimed = Counter(row_key(row) for row in rows)
    done: list[Job] = []
    left: list[Job] = []
    for job in jobs:
        key = row_key(results.axes(job.cfg))
        if unclaimed[key] > 0:
            unclaimed[key] -= 1
            done.append(job)
        else:
            left.append(job)
    # a row that matches no job (e.g. a job that failed before its config composed) stands for one job left
    unmatched = min(sum(unclaimed.values()), len(left))
    work_of_left = [work(j) for j in left]
    mean_left = sum(work_of_left) / len(left) if left else 0.0
    work_done = sum(work(j) for j in done) + unmatched * mean_left
    work_left = sum(work_of_left) - unmatched * mean_left
    n_done = len(done) + unmatched
    failed = sum(row.get("status") == "failed" for row in rows)
    line = f"study: {n_done}/{len(jobs)} jobs done"
    line += f" ({failed} failed)" if failed else ""
    line += f", {clock(elapsed)} elapsed"
    if n_done < len(jobs):
        line += (
            f", about {clock(elapsed * work_left / work_done)} left"
            if work_done > 0
            else ", time left unknown"
        )
    return line


def watch(
    wait, jobs: list[Job], table: Path, start: float, poll_s: float = 10.0, every_s: float = 60.0
) -> None:
    """Print `progress_line` until `wait(poll_s)` (which blocks up to poll_s) says every sweep has ended: when a
    job ends, every `every_s` seconds, and once at the end."""
    last, last_at = "", time.monotonic()
    while True:
        ended = wait(poll_s)
        try:
            rows = results.read_results(table)
        except results.ResultsTableError:  # the jobs themselves report a damaged table
            rows = []
        now = time.monotonic()
        line = progress_line(jobs, rows, now - start)
        if ended or line.split(",")[0] != last.split(",")[0] or now - last_at >= every_s:
            print(line, flush=True)
            last, last_at = line, now
        if ended:
            return


# --- Printing and launching ---------------------------------------------------------------------------------


def format_plan(plans: list[SweepPlan]) -> str:
    """The plan as a table: jobs, GPUs per job and estimated GPU-hours per sweep, then the totals."""
    lines = [f"{'sweep':<22} {'jobs':>5} {'GPUs/job':>8} {'GPU-h':>8}  grid"]
    for sp in plans:
        hours = "n/a" if sp.gpu_hours is None else f"{sp.gpu_hours:.1f}"
        grid = " x ".join(f"{k}={','.join(v)}" for k, v in sp.params.items())
        gone = " ".join(f"{k}={','.join(v)}" for k, v in sp.dropped.items())
        note = f"  (without {gone}: its {sp.duplicates} jobs are run by an earlier sweep)"
        lines.append(f"{sp.name:<22} {len(sp.jobs):>5} {sp.world_size:>8} {hours:>8}  {grid}")
        if sp.duplicates:
            lines.append(note)
    jobs = sum(len(sp.jobs) for sp in plans)
    known = [sp.gpu_hours for sp in plans if sp.gpu_hours is not None]
    if not known:  # the tiny study: CPU models, no GPU estimate; the progress line estimates as it runs
        lines.append(f"{'total':<22} {jobs:>5}")
        lines.append(f"{jobs} jobs on models without a GPU estimate; the time left is estimated as jobs end.")
        return "\n".join(lines)
    lines.append(f"{'total':<22} {jobs:>5} {'':>8} {sum(known):>8.1f}")
    lines.append(
        f"{jobs} jobs, about {sum(known):.0f} GPU-hours on H100/H200: an idealised estimate, not a measurement "
        f"(experiments/study.py: {PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 at {MATMUL_UTILISATION:.0%}, "
        f"{HBM_BYTES_PER_S / 1e12:.1f} TB/s at {HBM_UTILISATION:.0%} for sampling, every completion at "
        f"max_new_tokens, {JOB_OVERHEAD_S / 60:.0f} min set-up per GPU per job). Real runs are slower."
    )
    return "\n".join(lines)


def command(sp: SweepPlan, out: Path, launcher: str, extra: list[str]) -> list[str]:
    """`experiments/run.py -m` for one sweep: its rows into `<out>/results.csv`, its folders under `<out>/`."""
    cmd = [sys.executable, str(ROOT / "experiments" / "run.py"), "-m", "--config-dir", str(SWEEPS)]
    cmd += [
        "--config-name",
        sp.name,
        f"results_csv={out / 'results.csv'}",
        f"hydra.sweep.dir={out / sp.name}",
    ]
    cmd += sp.overrides()
    if launcher == "slurm":
        gpus = sp.world_size
        cmd += ["hydra/launcher=slurm", f"hydra.launcher.gpus_per_node={gpus}"]
        cmd += [f"hydra.launcher.tasks_per_node={gpus}"]
    return cmd + extra


def lanes(plans: list[SweepPlan], n: int) -> list[list[SweepPlan]]:
    """Split the sweeps over `n` lanes that run side by side, each lane's sweeps one after another: the
    largest sweep first, each to the lane with the least work so far; within a lane the study's order holds."""
    n = max(1, min(n, len(plans)))
    load, chosen = [0.0] * n, [[] for _ in range(n)]
    for sp in sorted(plans, key=lambda sp: -sum(work(j) for j in sp.jobs)):
        i = load.index(min(load))
        load[i] += sum(work(j) for j in sp.jobs)
        chosen[i].append(sp)
    order = {sp.name: k for k, sp in enumerate(plans)}
    return [sorted(lane, key=lambda sp: order[sp.name]) for lane in chosen if lane]


def launch(
    plans: list[SweepPlan],
    out: Path,
    launcher: str,
    extra: list[str],
    parallel: int = 1,
    poll_s: float = 10.0,
) -> int:
    """Run every sweep and report the whole study's progress until all have ended; returns how many failed.

    Locally the sweeps run in `parallel` lanes (one after another with 1); on SLURM all at once, since each
    submitting process waits for its jobs. Each sweep's output goes to `<out>/<sweep>.log`.
    """
    out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []

    def run_lane(lane: list[SweepPlan]) -> None:
        for sp in lane:
            log_path = out / f"{sp.name}.log"
            print(f"== {sp.name}: {len(sp.jobs)} jobs started, log {log_path}", flush=True)
            with log_path.open("w", encoding="utf-8") as log:
                cmd = command(sp, out, launcher, extra)
                code = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
            print(
                f"== {sp.name}: {'done' if code == 0 else f'failed (exit {code}), see {log_path}'}",
                flush=True,
            )
            if code != 0:
                failed.append(sp.name)

    threads = [
        threading.Thread(target=run_lane, args=(lane,), daemon=True)
        for lane in lanes(plans, parallel if launcher == "local" else len(plans))
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()

    def wait(timeout: float) -> bool:  # True once every lane has ended
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)

    watch(wait, [job for sp in plans for job in sp.jobs], out / "results.csv", start, poll_s)
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--study",
        choices=("paper", "tiny"),
        default="paper",
        help="which study (default: paper, sweeps/study_*)",
    )
    parser.add_argument(
        "--launcher", choices=("slurm", "local"), default=None, help="default: slurm (paper), local (tiny)"
    )
    parser.add_argument(
        "--parallel", type=int, default=1, help="local launcher: sweeps run side by side in this many lanes"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and the commands, launch nothing"
    )
    parser.add_argument("--yes", action="store_true", help="launch without asking")
    parser.add_argument("--sweeps", default="", help="comma-separated subset of the study's sweeps")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: outputs/study/<date>_<time> (tiny: outputs/study_tiny/...)",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra overrides for every sweep, e.g. hydra.launcher.partition=gpu"
    )
    args = parser.parse_args(argv)
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    launcher = args.launcher or ("local" if args.study == "tiny" else "slurm")

    names = study_sweeps(args.study)
    chosen = [s for s in args.sweeps.split(",") if s] or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        parser.error(f"unknown sweep(s) {', '.join(unknown)}; the study's sweeps are {', '.join(names)}")
    plans = plan([s for s in names if s in chosen])
    print(format_plan(plans))
    folder = "study_tiny" if args.study == "tiny" else "study"
    out = (args.out or ROOT / "outputs" / folder / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    if args.dry_run:
        print(f"\ncommands (launcher={launcher}, rows into {out / 'results.csv'}):")
        for sp in plans:
            print("  " + " ".join(command(sp, out, launcher, args.overrides)))
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            print("not launched: no terminal to confirm on; pass --yes (make study YES=1)", file=sys.stderr)
            return 1
        if input(f"launch {sum(len(sp.jobs) for sp in plans)} jobs ({launcher})? [y/N] ").strip() != "y":
            print("not launched")
            return 1
    failed = launch(plans, out, launcher, args.overrides, args.parallel)
    print(f"\nresults: {out / 'results.csv'}; tables and plots: make report REPORT_IN={out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
