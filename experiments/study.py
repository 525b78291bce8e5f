"""Plan, estimate, confirm and launch a study: the paper's (`make study`, every `sweeps/study_*.yaml`) or the
tiny one on CPU (`make study-tiny`, `TINY_SWEEPS`).

    python experiments/study.py --dry-run                  # the plan: jobs, GPU-hours per sweep, resolvable differences
    python experiments/study.py --dry-run schedule.max_steps=400   # the plan with that override on every job
    python experiments/study.py --dry-run --calibration bench.json   # the estimate's high end from a measured step
    python experiments/study.py                            # plan, ask, then submit every sweep to SLURM
    python experiments/study.py --launcher local --yes     # or run them here, one sweep after another
    python experiments/study.py --study tiny --launcher local --parallel 2 --yes threads=1   # make study-tiny

Each sweep's grid is composed in-process with Hydra's compose API, with the extra overrides and the launcher its
jobs will get, and validated at each job's world size: a misspelt or invalid override fails the plan (exit 2, one
message) before anything runs. A job an earlier sweep already runs is dropped from the later one. The plan prints
each sweep's GPU-hours as a range, not a measurement (`gpu_seconds` over the schedule's steps and grid
evaluations; low: idealised rates, high: published GRPO step times or `--calibration`; sources in
docs/protocol.md, "The GPU-hour estimate"), then the smallest difference between two cells the seeds and test
questions resolve (`rft.report.power`). Every job appends its row to `<out>/results.csv`, which `make report
REPORT_IN=<out>` reads and one progress line for the whole study follows (`progress_line`).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import functools
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
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig, OmegaConf, open_dict  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from experiments.schemas import to_run_config  # noqa: E402  (importing it registers the schemas)
from rft import results, schedule  # noqa: E402
from rft.config import ConfigError, RFTConfig, RunConfig, SFTConfig, validate  # noqa: E402
from rft.data.draw import GLYPH_CLASSES  # noqa: E402
from rft.report import power  # noqa: E402

SWEEPS = ROOT / "sweeps"
CONF = ROOT / "conf"
SLURM = CONF / "hydra" / "launcher" / "slurm.yaml"

# --- The estimate's assumptions (docs/protocol.md, "The GPU-hour estimate") ---------------------------------
# Low end, idealised rates of one H100/H200, derived from the chip:
# - dense bf16 matmuls: ~790 TFLOP/s measured for a large GEMM on an H200 (H100 SXM: 989 TFLOP/s dense on its
#   datasheet), at an assumed 40% utilisation for prefill, reference and update passes (2 FLOPs per parameter
#   and token forward, 6 forward + backward);
# - sampling is memory-bound: each decode step reads the bf16 weights once for the sequences decoded together
#   on that GPU, at an assumed 50% of the H200's ~4.3 TB/s (H100 SXM: 3.35 TB/s).
PEAK_FLOPS = 790e12
MATMUL_UTILISATION = 0.4
HBM_BYTES_PER_S = 4.3e12
HBM_UTILISATION = 0.5
# High end, the update's utilisation that EasyR1 publishes for Qwen2.5-VL-3B GRPO on 8 H100s ("Actor MFU" 8.1%,
# https://github.com/hiyouga/EasyR1/blob/main/assets/baselines.md, v0.3.2); its decode step is in PUBLISHED_STEPS
PUBLISHED_MFU = 0.081
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
# val-split sizes, where a schedule grid selects its length (docs/data.md); banner's is an assumption too
VAL_SIZES = {"fgvc": 3333, "sat": 4001, "banner": 1000}
ASSUMED_SIZES = {"banner"}
# classes of a shots budget: FGVC-Aircraft's variants, and the glyph models of its tiny stand-in, whose
# train_size and test_size count images per class
CLASSES = {"fgvc": 100, "fgvc_synth": len(GLYPH_CLASSES)}
PER_CLASS_SIZES = {"fgvc_synth"}


class PlanError(Exception):
    """A study that cannot be planned as asked (an extra override that does not compose or validate, an
    unreadable calibration); `main` prints the message and exits 2 before anything runs."""


@dataclass
class Job:
    """One point of a sweep's grid: its overrides, its typed config, and the GPUs it runs on."""

    sweep: str
    overrides: list[str]
    cfg: RunConfig
    world_size: int

    @property
    def gpu_seconds(self) -> float | None:
        """The low end of its estimate (idealised rates)."""
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

    def gpu_hours(self, rates: Rates | None = None) -> float | None:
        """GPU-hours of its jobs at `rates` (default: idealised); None for a model outside `PARAMS`."""
        seconds = [gpu_seconds(job.cfg, job.world_size, rates or IDEALISED) for job in self.jobs]
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


SEARCH = f"hydra.searchpath=[file://{CONF}]"


def launcher_overrides(launcher: str | None) -> list[str]:
    """What selects the launcher in every job's compose: `hydra/launcher=slurm` checks `hydra.launcher.*`
    overrides against conf/hydra/launcher/slurm.yaml; none (or local): Hydra's basic launcher."""
    return ["hydra/launcher=slurm"] if launcher == "slurm" else []


def grid_extras(params: dict[str, list[str]], extra: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Apply the extra overrides to a sweep's grid as Hydra's basic sweeper does: one that names a grid key, or
    sweeps (`seed=0,1`), replaces that key's values; the rest are set on every job (returned)."""
    params, plain = dict(params), []
    for override in OverridesParser.create().parse_overrides(list(extra)):
        key = override.key_or_group
        if override.is_sweep_override():
            params[key] = list(override.sweep_string_iterator())
        elif key in params:
            params[key] = [override.get_value_element_as_str()]
        else:
            plain.append(override.input_line)
    return params, plain


def expand(
    sweep: str, extra: list[str] | tuple[str, ...] = (), launcher: str | None = None
) -> tuple[dict[str, list[str]], list[Job]]:
    """The grid of `sweeps/<sweep>.yaml` with the `extra` overrides, and one validated Job per point, composed
    in-process (no data read).

    Hydra composes once per distinct choice of config-group options in the grid (`reward=nothink`), with the
    extras and the `launcher`'s choice; the grid's plain values (`seed=1`, `budget.size=4`) are then set on a
    copy, as Hydra's override would set them (`tests/test_study.py` checks that both agree). A DeepSpeed sweep
    runs on the launcher's `gpus_per_node` ranks (conf/hydra/launcher/slurm.yaml, or an extra
    `hydra.launcher.gpus_per_node`), a `dist=none` sweep on one; every job is validated at that world size, so a
    batch that does not split over the ranks fails here, before anything is submitted. An extra that does not
    compose or validate raises `PlanError`, naming it (`culprits`).
    """
    extra, chosen = list(extra), launcher_overrides(launcher)
    composed: dict[tuple[str, ...], DictConfig] = {}
    point: tuple[str, ...] = ()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(SWEEPS)):
            _, plain = grid_extras({}, extra)  # the extras but their sweeps (`seed=0,1`)
            base = compose(config_name=sweep, overrides=[SEARCH, *chosen, *plain], return_hydra_config=True)
            own = {str(k): str(v).split(",") for k, v in base.hydra.sweeper.params.items()}
            params, plain = grid_extras(own, extra)
            gpus = int(base.hydra.launcher.gpus_per_node) if launcher == "slurm" else slurm_gpus_per_node()
            jobs = []
            for point in itertools.product(*([f"{k}={v}" for v in vals] for k, vals in params.items())):
                groups = tuple(o for o in point if (CONF / o.split("=")[0]).is_dir())
                if groups not in composed:
                    composed[groups] = compose(
                        config_name=sweep, overrides=[SEARCH, *chosen, *plain, *groups]
                    )
                dcfg = copy.deepcopy(composed[groups])
                for override in point:
                    if override not in groups:
                        key, value = override.split("=", 1)
                        OmegaConf.update(dcfg, key, yaml.safe_load(value), merge=False)
                cfg = to_run_config(dcfg)
                world_size = gpus if cfg.dist.backend == "deepspeed" else 1
                validate(cfg, world_size=world_size)
                jobs.append(Job(sweep, list(point), cfg, world_size))
    except (HydraException, OmegaConfBaseException, ConfigError) as err:
        if not extra:  # the sweep itself is broken: not the plan's to explain
            raise
        raise PlanError(plan_error(sweep, extra, launcher, list(point), err)) from err
    return params, jobs


def composes(sweep: str, overrides: list[str], launcher: str | None) -> bool:
    """Whether one job of `sweep` with exactly `overrides` (no sweeps) composes and validates, with Hydra
    composing every override (the slow path of `expand`)."""
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(SWEEPS)):
            dcfg = compose(
                config_name=sweep,
                overrides=[SEARCH, *launcher_overrides(launcher), *overrides],
                return_hydra_config=True,
            )
        gpus = int(dcfg.hydra.launcher.gpus_per_node) if launcher == "slurm" else slurm_gpus_per_node()
        with open_dict(dcfg):
            del dcfg["hydra"]
        cfg = to_run_config(dcfg)
        validate(cfg, world_size=gpus if cfg.dist.backend == "deepspeed" else 1)
    except (HydraException, OmegaConfBaseException, ConfigError):
        return False
    return True


def culprits(sweep: str, extra: list[str], launcher: str | None, point: list[str]) -> list[str]:
    """The extra overrides that fail on their own at `point` (each value of a sweep tried alone); all of them
    when none fails alone (they fail together)."""
    bad = []
    for override in extra:
        try:
            (parsed,) = OverridesParser.create().parse_overrides([override])
        except HydraException:
            bad.append(override)
            continue
        key = parsed.key_or_group
        rest = [o for o in point if o.split("=", 1)[0] != key]
        values = list(parsed.sweep_string_iterator()) if parsed.is_sweep_override() else None
        tries = [override] if values is None else [f"{key}={v}" for v in values]
        if not all(composes(sweep, [*rest, t], launcher) for t in tries):
            bad.append(override)
    return bad or list(extra)


def reason(err: BaseException) -> str:
    """The first line of an error and of its cause: Hydra's `Could not override 'method.stpes'.` and
    OmegaConf's `Key 'stpes' not in 'RFTConfig'`."""
    lines = [str(e).strip().splitlines()[0] for e in (err, err.__cause__) if e is not None and str(e).strip()]
    return " ".join(dict.fromkeys(lines))


def plan_error(
    sweep: str, extra: list[str], launcher: str | None, point: list[str], err: BaseException
) -> str:
    """One message for an extra override the plan cannot take: which override, where, why, and the fix."""
    bad = culprits(sweep, extra, launcher, point)
    where = f"sweep {sweep}" + (f" at {' '.join(point)}" if point else "")
    if not all(o.lstrip("+~").startswith("hydra.") for o in bad):
        fix = (
            f"the keys and their types are in rft/config.py; `python experiments/run.py --config-dir sweeps "
            f"--config-name {sweep} --cfg job` prints every key of a job; --sweeps plans the sweeps it fits"
        )
    elif launcher == "slurm":
        fix = "hydra.launcher.* keys are those of conf/hydra/launcher/slurm.yaml, hydra-submitit-launcher's SlurmQueueConf"
    else:
        fix = "the local launcher is Hydra's basic one, without SLURM's hydra.launcher.* keys: --launcher slurm takes them"
    return (
        f"the override{'s' if len(bad) > 1 else ''} {' '.join(bad)} "
        f"{'do' if len(bad) > 1 else 'does'} not fit {where}: {reason(err)}.\n"
        f"Nothing was launched. Fix or drop {'them' if len(bad) > 1 else 'it'} and plan again ({fix})."
    )


def identity(cfg: RunConfig) -> str:
    """What makes two jobs the same run: the whole typed config but the results table it appends to."""
    record = dataclasses.asdict(cfg)
    record.pop("results_csv")
    return json.dumps(record, sort_keys=True, default=str)


def plan(
    sweeps: list[str], extra: list[str] | tuple[str, ...] = (), launcher: str | None = None
) -> list[SweepPlan]:
    """Expand every sweep with the extra overrides and the launcher (`expand`) and drop the grid values whose
    jobs an earlier sweep already runs.

    A value is dropped only when every job that carries it is a duplicate, so the narrowed grid is still a
    product that the sweep's own command line can express (`reward=nothink,length_norm,length_norm_group`).
    """
    seen: set[str] = set()
    plans = []
    for sweep in sweeps:
        params, jobs = expand(sweep, extra, launcher)
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


@dataclass(frozen=True)
class Rates:
    """Seconds of one GPU per parameter of the model (x N for N parameters): `fwd` per token of a forward pass
    (an update token costs 3x: forward + backward) and `decode_step` per decode step, which costs the same however
    many sequences the GPU decodes together (it reads the weights once, or waits on its kernel launches), so a
    sampled token costs decode_step / sequences decoded together, counting at most `together` of them (the
    most a timed step shared; None: no limit). `basis` says where they come from."""

    fwd: float
    decode_step: float
    together: int | None
    basis: str

    def decode(self, n_params: float, batch: int) -> float:
        """Seconds per sampled token of an n_params model, `batch` sequences decoded together on a GPU."""
        shared = batch if self.together is None else min(batch, self.together)
        return n_params * self.decode_step / max(1, shared)


IDEALISED = Rates(
    fwd=2 / (PEAK_FLOPS * MATMUL_UTILISATION),
    decode_step=2 / (HBM_BYTES_PER_S * HBM_UTILISATION),
    together=None,
    basis=(
        f"idealised rates, {PEAK_FLOPS / 1e12:.0f} TFLOP/s bf16 at {MATMUL_UTILISATION:.0%} and "
        f"{HBM_BYTES_PER_S / 1e12:.1f} TB/s at {HBM_UTILISATION:.0%} for sampling"
    ),
)


@dataclass(frozen=True)
class StepTime:
    """A GRPO step someone timed: `seconds` per step of `model`, each GPU running `decode_steps` decode steps in
    it (its generate calls x their completion budget) of `together` sequences each; `what` and `url` say which
    run and where it is reported."""

    what: str
    url: str
    model: str
    seconds: float
    decode_steps: int
    together: int

    @property
    def decode_step(self) -> float:
        """Seconds per decode step per parameter, the whole step counted as decoding (its prefill, reference
        and update passes too, which the estimate then counts again: an upper figure)."""
        return self.seconds / self.decode_steps / PARAMS[self.model]


# Published step times of the lineage's trainer: TRL 0.14's GRPOTrainer (R1-V's fork, which Visual-RFT and VLM-R1
# build on), HF generate, one generate call of 1 prompt x G completions of up to 256 tokens (TRL 0.14's
# max_completion_length) per GPU, 2 calls per step: 16 prompts per step on 8 GPUs (docs/protocol.md).
PUBLISHED_STEPS = (
    StepTime(
        "R1-V: Qwen2-VL-2B, G 8, 100 steps in 30 min, 18 s per step",
        "https://github.com/Deep-Agent/R1-V",
        "Qwen/Qwen2-VL-2B-Instruct",
        seconds=18.0,
        decode_steps=2 * 256,
        together=8,
    ),
    StepTime(
        "VLM-R1: Qwen2.5-VL-3B, G 7, ZeRO-3, 25-30 s per step",
        "https://github.com/om-ai-lab/VLM-R1/issues/30",
        "Qwen/Qwen2.5-VL-3B-Instruct",
        seconds=30.0,
        decode_steps=2 * 256,
        together=7,
    ),
)


def published_rates() -> Rates:
    """The high end until a step is measured: the slowest decode step per parameter of `PUBLISHED_STEPS`
    (A100 times, taken as they are for an H100/H200), shared by no more sequences than that run decoded
    together, and updates at `PUBLISHED_MFU`."""
    slowest = max(PUBLISHED_STEPS, key=lambda s: s.decode_step)
    return Rates(
        fwd=2 / (PEAK_FLOPS * PUBLISHED_MFU),
        decode_step=slowest.decode_step,
        together=slowest.together,
        basis=(
            "published GRPO step times, 16 prompts x G 7-8 x 256 tokens on 8 A100s ("
            + "; ".join(s.what for s in PUBLISHED_STEPS)
            + f"), updates at {PUBLISHED_MFU:.1%} MFU (EasyR1, Qwen2.5-VL-3B on 8 H100s)"
        ),
    )


def calibrated_rates(path: Path) -> Rates:
    """The high end from a measured GRPO step (`--calibration <json>`): one GPU decoding one prompt's `G`
    completions of `T` tokens together, as `make bench-gpu` times it (experiments/bench_gpu.py).

    The JSON object has `G`, `T` and `step_s` (seconds per step), and optionally `model` (a hub id of `PARAMS`;
    default Qwen2-VL-2B, the bench's stand-in), `rollout_s`, `update_s` and `P` (prompt tokens), and `device`; or
    it is bench_gpu's report, whose `ours` holds the times. With rollout_s, update_s and P: decode step =
    rollout_s / T and forward = update_s / (3 (P + G T)) per token (the bench's update: beta 0, mu 1); with step_s
    alone, the whole step counts as T decode steps and updates run at `PUBLISHED_MFU`. A decode step is shared by
    at most the G sequences the bench decoded together.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        times = data.get("ours", data)
        model = data["model"] if isinstance(data.get("model"), str) else "Qwen/Qwen2-VL-2B-Instruct"
        if model not in PARAMS:
            raise ValueError(f"model {model!r} is not one of {', '.join(PARAMS)}")
        n, g, t, step_s = PARAMS[model], int(data["G"]), int(data["T"]), float(times["step_s"])
        if min(g, t, step_s) <= 0:
            raise ValueError(f"G, T and step_s must be positive, got {g}, {t}, {step_s}")
        if "rollout_s" in times and "update_s" in times and "P" in data:
            decode = float(times["rollout_s"]) / t / n
            fwd = float(times["update_s"]) / (3 * (int(data["P"]) + g * t)) / n
        else:
            decode, fwd = step_s / t / n, 2 / (PEAK_FLOPS * PUBLISHED_MFU)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise PlanError(
            f"--calibration {path}: {type(err).__name__}: {err}. Pass a JSON object with G, T and step_s "
            "(optionally model, rollout_s, update_s, P, device), or experiments/bench_gpu.py's report."
        ) from err
    device = data.get("device", "a GPU")
    basis = f"a measured GRPO step ({path}: {step_s:.2f} s at G {g} x T {t}, {model}, {device})"
    return Rates(fwd, decode, g, basis)


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


def val_size(cfg: RunConfig) -> int:
    """Questions a grid point is selected on: schedule.select_limit, at most the val split (real tasks:
    `VAL_SIZES`; a synthetic task renders val at its test_size)."""
    full = VAL_SIZES.get(cfg.task.name, cfg.task.test_size * per_class(cfg))
    return min(cfg.schedule.select_limit, full) if cfg.schedule.select_limit else full


def per_class(cfg: RunConfig) -> int:
    """What a synthetic task's train_size and test_size multiply by: its classes, or 1 (they count images)."""
    return CLASSES[cfg.task.name] if cfg.task.name in PER_CLASS_SIZES else 1


def questions_scored(cfg: RunConfig) -> int:
    """Questions a job scores (rft/pipeline.py): the final evaluation on the test split; again before training
    with eval.before (trained methods); under a schedule grid, at every point the selection split (`val_size`)
    and at every point but the last (whose test score is the final evaluation's) the test split."""
    trains = isinstance(cfg.method, RFTConfig | SFTConfig)
    points = len(schedule.grid(cfg, train_size(cfg))) if trains and cfg.schedule.epochs else 0
    test = eval_size(cfg) * (1 + int(trains and cfg.eval.before) + max(0, points - 1))
    return test + (points * val_size(cfg) if cfg.schedule.select_split else 0)


def job_cost(cfg: RunConfig, world_size: int, fwd: float, decode) -> float:
    """One job's cost with `fwd` per token of a forward pass and `decode(batch)` per token decoded in batches of
    `batch` sequences; the formula of `gpu_seconds` (below), without the fixed set-up cost."""
    m, p = cfg.method, prompt_tokens(cfg)
    t = m.max_new_tokens
    steps = schedule.total_steps(cfg, train_size(cfg))
    cost = 0.0
    if isinstance(m, RFTConfig):
        c, b = m.rollout_batch_size, m.prompts_per_step
        passes = (1 if m.beta > 0 else 0) + (1 if m.mu > 1 else 0) + 3 * m.mu
        cost += steps * (b * p * fwd + c * t * decode(c // world_size) + (b * p + c * t) * passes * fwd)
    elif isinstance(m, SFTConfig):
        cost += steps * m.batch_size * (p + SFT_TARGET_TOKENS) * 3 * fwd
    return cost + questions_scored(cfg) * (p * fwd + t * decode(cfg.eval.batch_size))


def gpu_seconds(cfg: RunConfig, world_size: int, rates: Rates = IDEALISED) -> float | None:
    """Estimated GPU-seconds of one job at `rates` (None for a model outside `PARAMS`); every completion is
    taken at the full `max_new_tokens`, scaling over ranks as ideal.

        forward token  N x rates.fwd                                       update token: 3x that
        decode token   N x rates.decode_step / sequences decoded together on a GPU (at most rates.together)
        rft   steps x [B x P prefill + C x T decode + (B x P + C x T) x (reference forward + mu updates)]
        sft   steps x batch x (P + target) update tokens
        eval  questions_scored x (P prefill + T decode), at eval.batch_size sequences per GPU
    with steps = `rft.schedule.total_steps` (the grid's last point, or the method's own length), C =
    rollout_batch_size completions per step, B = C / G prompts (each prompt is run once, its K/V shared by its
    G completions), P prompt tokens, T = max_new_tokens; plus JOB_OVERHEAD_S on every GPU.
    """
    n = PARAMS.get(cfg.model.id)
    if n is None:
        return None
    decode = functools.partial(rates.decode, n)
    return JOB_OVERHEAD_S * world_size + job_cost(cfg, world_size, n * rates.fwd, decode)


# --- What the study can resolve -------------------------------------------------------------------------------


@dataclass
class Comparison:
    """One task's cells that the report sets side by side (`what`), the fewest seeds of any of them and the test
    questions each run is scored on."""

    task: str
    what: list[str]
    seeds: int
    questions: int


def comparisons(jobs: list[Job]) -> list[Comparison]:
    """Per task, what the report compares: RFT vs SFT (their `acc_format` cells) at every budget both run, and
    the thinking levels (RFT's rewards) at every budget that runs more than one."""
    cells: dict[tuple[str, str, str, str], set[int]] = {}
    questions: dict[str, int] = {}
    for job in jobs:
        a = results.axes(job.cfg)
        cells.setdefault((a["task"], a["method"], a["reward"], a["budget"]), set()).add(job.cfg.seed)
        questions[str(a["task"])] = eval_size(job.cfg)
    out = []
    for task in questions:
        budgets = sorted({b for (t, _, _, b) in cells if t == task}, key=lambda b: (len(b), b))
        ladder = [b for b in budgets if all((task, m, "acc_format", b) in cells for m in ("rft", "sft"))]
        levels = {b: [r for (t, m, r, bb) in cells if (t, m, bb) == (task, "rft", b)] for b in budgets}
        ablation = [b for b in budgets if len(levels[b]) > 1]
        compared = [(task, m, "acc_format", b) for b in ladder for m in ("rft", "sft")]
        compared += [(task, "rft", r, b) for b in ablation for r in levels[b]]
        if not compared:
            continue
        what = [f"rft vs sft at {len(ladder)} budget{'s' * (len(ladder) > 1)}"] if ladder else []
        what += [f"{len(levels[b])} thinking levels at {b}" for b in ablation]
        out.append(Comparison(task, what, min(len(cells[c]) for c in compared), questions[task]))
    return out


def format_power(found: list[Comparison]) -> str:
    """The resolvable difference of every comparison (`rft.report.power.mde`), before anything runs."""
    lines = [
        f"resolvable difference between two cell means ({power.POWER:.0%} power, two-sided {power.ALPHA:.0%} t "
        f"test over the seeds; accuracy 50%, between-seed sd {100 * power.SEED_SD:.1f} points assumed; "
        "rft/report/power.py):"
    ]
    for c in found:
        if c.seeds < 2:
            lines.append(f"  {c.task:<12} {c.seeds} seed: no test over seeds; {'; '.join(c.what)}")
            continue
        size = f"{c.seeds} seeds x {c.questions:,} test questions" + (
            " (assumed)" if c.task in ASSUMED_SIZES else ""
        )
        mde, alone = (100 * power.mde(c.questions, c.seeds, seed_sd=sd) for sd in (power.SEED_SD, 0.0))
        lines.append(
            f"  {c.task:<12} {size:<44} ≥ {mde:4.1f} points (questions alone: ≥ {alone:.1f})   "
            + "; ".join(c.what)
        )
    return "\n".join(lines)


# --- Progress of the whole study ----------------------------------------------------------------------------


def work(job: Job) -> float:
    """A job's size relative to the others, to weigh jobs done against jobs left: its GPU-seconds at the low end
    of the estimate (idealised rates; any consistent weight would do), or,
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


def hours_range(low: float | None, high: float | None) -> str:
    """`12.6–150.2` GPU-hours, or `n/a` without an estimate."""
    return "n/a" if low is None or high is None else f"{low:.1f}–{high:.1f}"


def decode_ms(rates: Rates, model: str) -> str:
    """A decode step of `model` at `rates`: `Qwen2-VL-2B-Instruct decode step 35.2 ms`."""
    return f"a {model.split('/')[-1]} decode step {1000 * rates.decode_step * PARAMS[model]:.1f} ms"


def format_plan(plans: list[SweepPlan], high: Rates | None = None) -> str:
    """The plan as a table: jobs, GPUs per job and the GPU-hour range per sweep (low: `IDEALISED`; high: `high`,
    by default `published_rates()`), the totals with the range's basis, then what the study can resolve."""
    high = high or published_rates()
    lines = [f"{'sweep':<22} {'jobs':>5} {'GPUs/job':>8} {'GPU-h':>12}  grid"]
    for sp in plans:
        hours = hours_range(sp.gpu_hours(), sp.gpu_hours(high))
        grid = " x ".join(f"{k}={','.join(v)}" for k, v in sp.params.items())
        gone = " ".join(f"{k}={','.join(v)}" for k, v in sp.dropped.items())
        note = f"  (without {gone}: its {sp.duplicates} jobs are run by an earlier sweep)"
        lines.append(f"{sp.name:<22} {len(sp.jobs):>5} {sp.world_size:>8} {hours:>12}  {grid}")
        if sp.duplicates:
            lines.append(note)
    jobs = [job for sp in plans for job in sp.jobs]
    resolvable = format_power(comparisons(jobs))
    known = [sp for sp in plans if sp.gpu_hours() is not None]
    if not known:  # the tiny study: CPU models, no GPU estimate; the progress line estimates as it runs
        lines.append(f"{'total':<22} {len(jobs):>5}")
        lines.append(
            f"{len(jobs)} jobs on models without a GPU estimate; the time left is estimated as jobs end."
        )
        return "\n".join([*lines, "", resolvable])
    low, top = (sum(sp.gpu_hours(r) for sp in known) for r in (IDEALISED, high))  # type: ignore[misc]
    model = next(job.cfg.model.id for sp in known for job in sp.jobs)
    lines.append(f"{'total':<22} {len(jobs):>5} {'':>8} {hours_range(low, top):>12}")
    lines += [
        f"{len(jobs)} jobs, about {low:,.0f}–{top:,.0f} GPU-hours on H100/H200: an estimate, not a measurement.",
        f"  low:  {IDEALISED.basis}; {decode_ms(IDEALISED, model)}.",
        f"  high: {high.basis}; {decode_ms(high, model)}.",
        f"  both: the schedule's steps, val and test scored at every grid point, every completion at "
        f'max_new_tokens, {JOB_OVERHEAD_S / 60:.0f} min set-up per GPU per job (docs/protocol.md, "The GPU-hour '
        'estimate"); --calibration <json> takes the high end from a measured step (make bench-gpu).',
    ]
    return "\n".join([*lines, "", resolvable])


def command(sp: SweepPlan, out: Path, launcher: str, extra: list[str]) -> list[str]:
    """`experiments/run.py -m` for one sweep: its rows into `<out>/results.csv`, its folders under `<out>/`.
    An extra override of a grid key the study narrows is already in the narrowed grid (`SweepPlan.overrides`)."""
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
    return cmd + [o for o in extra if o.lstrip("+~").split("=", 1)[0] not in sp.dropped]


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
        "--calibration",
        type=Path,
        default=None,
        help="JSON of a measured GRPO step (G, T, step_s; make bench-gpu): the estimate's high end",
    )
    parser.add_argument(
        "overrides", nargs="*", help="extra overrides for every job, e.g. hydra.launcher.partition=gpu"
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
    try:  # every job composed with the overrides and the launcher it will get: a bad one stops here
        high = calibrated_rates(args.calibration) if args.calibration else published_rates()
        plans = plan([s for s in names if s in chosen], args.overrides, launcher)
    except PlanError as err:
        print(f"study: {err}", file=sys.stderr)
        return 2
    print(format_plan(plans, high))
    folder = "study_tiny" if args.study == "tiny" else "study"
    out = (args.out or ROOT / "outputs" / folder / time.strftime("%Y-%m-%d_%H-%M-%S")).resolve()
    if out.exists() and not out.is_dir():
        print(
            f"study: --out {out} is a file; name a folder (new, or a study's to add rows to)", file=sys.stderr
        )
        return 2
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
    summary = outcome([job for sp in plans for job in sp.jobs], out / "results.csv")
    if summary:
        print(summary, file=sys.stderr)
    return 1 if failed or summary else 0


def outcome(jobs: list[Job], table: Path) -> str:
    """ "" when every job wrote a finished row; else one message naming the failed jobs and how many wrote no row
    (a sweep runs on past a failed job, so its own exit code says nothing of them)."""
    try:
        rows = results.read_results(table)
    except results.ResultsTableError as err:
        return f"study: cannot read the study's results table: {err}"
    failed = [r for r in rows if r.get("status") != "finished"]
    missing = len(jobs) - len(rows)
    parts = []
    if failed:
        names = ", ".join(f"{r.get('run_id', '?')} ({r.get('status')})" for r in failed[:10])
        more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
        parts.append(
            f"{len(failed)} of {len(jobs)} jobs did not finish: {names}{more}; their errors are in the "
            f"table's error column and the sweeps' logs"
        )
    if missing > 0:
        parts.append(f"{missing} of {len(jobs)} jobs wrote no row; see the sweeps' logs in {table.parent}")
    return "study: " + "; ".join(parts) if parts else ""


if __name__ == "__main__":
    sys.exit(main())
