"""One prepared check of the real GPU path, end to end, on a full-size random-weight Qwen2-VL-2B stand-in.

    python experiments/gpu_check.py               # one H100/H200, no internet, about 5 minutes
    python experiments/gpu_check.py --dry-run     # the same stages on CPU at tiny size (tests/test_gpu_check.py)

The model is `experiments.standin.build_standin(..., "qwen2vl_2b", layers=28, vision_depth=32)`: the real 2B
architecture, tokenizer and processor, random bf16 weights. Every stage composes its config from `conf/` with
Hydra's compose API, converts it with `experiments.schemas.to_run_config` and calls `rft.pipeline.run`:
`grpo` (dist=none, G=8 x 256 tokens, one 896x448 FGVC-like image = 401,408 pixels, beta 0.04), `grpo_zero3`
(the same with dist=zero3, this script under `torchrun --nproc_per_node 1`), `sft`, `eval` (zero-shot, a few
samples) and `resume` (SIGTERM after the second-last step, then `resume=auto` to the end). Per stage it records the status, the
median `perf/step_s` and `perf/tokens_per_s`, the peak memory, and the devices of every parameter and of every
tensor handed to the model (forward pre-hooks installed by a wrapped `rft.models.load_model`); for GRPO also the
fraction of the decode memory-bandwidth ceiling (`experiments.bench_gpu.decode_bytes_per_step`). It writes one
JSON (`--out`), prints it, and exits 1 on any failure. docs/performance.md ("GPU check") says how to run it.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DS_BUILD_OPS", "0")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from PIL import Image  # noqa: E402

import rft.models  # noqa: E402
import rft.pipeline  # noqa: E402
from experiments.bench_gpu import HBM_BYTES_PER_S, decode_bytes_per_step  # noqa: E402
from experiments.schemas import to_run_config  # noqa: E402
from experiments.standin import cached_standin  # noqa: E402
from rft.checkpoint import Interrupted  # noqa: E402
from rft.prompts import chat_text, encode_prompts  # noqa: E402

STAGES = ("grpo", "grpo_zero3", "sft", "eval", "resume")
# The two sizes. `image` is (width, height) of every task image after resizing; 896 x 448 is exactly the
# suite's max_pixels (401,408 = 512 merged image tokens), so the processor keeps it as it is.
GPU = dict(
    device="cuda",
    dtype="bfloat16",
    layers=28,
    vision_depth=32,
    hidden=None,
    G=8,
    T=256,
    image=(896, 448),
    steps=3,
    sft_batch=8,
    eval_limit=2,
    threads=0,
)
DRY = dict(
    device="cpu",
    dtype="float32",
    layers=2,
    vision_depth=1,
    hidden=128,
    G=2,
    T=4,
    image=(112, 56),
    steps=2,
    sft_batch=2,
    eval_limit=1,
    threads=1,
)

log = logging.getLogger("gpu_check")


def say(msg: str) -> None:
    print(f"[gpu-check] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------------


def stage_overrides(stage: str, size: dict, model_dir: Path, work: Path) -> list[str]:
    """The Hydra overrides of one stage (the zero3 and resume stages add theirs on top of `grpo`'s)."""
    G, T, n = size["G"], size["T"], size["steps"]
    common = [
        "task=fgvc_synth",
        "task.train_size=2",  # 2 per class x 16 classes: the pool the budget draws from
        "task.test_size=1",
        "task.image_size=112",  # rendered small, then resized to size["image"] (resized_task)
        "model=qwen2vl_2b",
        f"model.path={model_dir}",
        f"model.dtype={size['dtype']}",
        "reward=acc_format",
        "logger=none",
        f"device={size['device']}",
        f"threads={size['threads']}",
        f"results_csv={work / stage / 'results.csv'}",
        f"name=gpu_check-{stage}",
        "eval.limit=1",
        "eval.batch_size=1",
    ]
    grpo = [
        "method=rft",
        f"method.steps={n}",
        f"method.group_size={G}",
        f"method.rollout_batch_size={G}",
        f"method.micro_batch_size={G}",
        f"method.max_new_tokens={T}",
        f"method.min_new_tokens={T}",  # exactly T tokens per completion: a fixed amount of decode work
        "method.beta=0.04",  # the reference pass runs
        "method.samples_every=1",
        "budget=samples",
        f"budget.size={n}",
    ]
    if stage == "grpo":
        return common + grpo + ["dist=none"]
    if stage == "grpo_zero3":
        return common + grpo + ["dist=zero3"]
    if stage == "resume":
        return common + grpo + ["dist=none", "checkpoint.every=1"]
    if stage == "sft":
        b = size["sft_batch"]
        return common + [
            "method=sft",
            "method.epochs=1",
            f"method.batch_size={b}",
            f"method.micro_batch_size={b}",
            f"method.max_new_tokens={T}",
            "budget=samples",
            f"budget.size={b * n}",  # one epoch = `steps` steps
            "dist=none",
        ]
    if stage == "eval":
        limit = size["eval_limit"]
        common = [o for o in common if not o.startswith("eval.")]
        return common + [
            "method=zeroshot",
            f"method.max_new_tokens={T}",
            f"eval.limit={limit}",
            f"eval.batch_size={limit}",
            "dist=none",
        ]
    raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")


def compose_run_config(overrides: list[str]):
    """(typed RunConfig, resolved YAML) of `conf/config.yaml` with `overrides`, as experiments/run.py composes it."""
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        dcfg = compose(config_name="config", overrides=overrides)
    return to_run_config(dcfg), OmegaConf.to_yaml(dcfg, resolve=True)


# ---------------------------------------------------------------------------------------------------------------
# Instrumentation
# ---------------------------------------------------------------------------------------------------------------


def _tensors(obj, depth: int = 0):
    """Every tensor in (nested) args and kwargs: tensors, lists, tuples, dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 4 and isinstance(obj, list | tuple):
        for x in obj:
            yield from _tensors(x, depth + 1)
    elif depth < 4 and isinstance(obj, dict):
        for x in obj.values():
            yield from _tensors(x, depth + 1)


def _param_devices(module: torch.nn.Module) -> set[str]:
    """Devices of every parameter and buffer; a ZeRO-3 shard (`ds_tensor`) counts with its own device."""
    found = {str(t.device) for t in (*module.parameters(), *module.buffers())}
    found |= {str(p.ds_tensor.device) for p in module.parameters() if hasattr(p, "ds_tensor")}
    return found


class Probe:
    """Devices seen by one stage: of every parameter of every model loaded, of every tensor handed to it.

    Installed by wrapping `rft.models.load_model` (the pipeline's one way to load a policy or a reference), with
    forward pre-hooks on the model, its vision tower and its language model: the entry points the loops call
    (`model(...)`, `model.model.get_image_features`). The lean sampler's decode loop reads the layer weights
    directly, so its inputs are the prefill's outputs and the weights, both covered. The hook is a closure, so
    the GRPO loop's `copy.deepcopy` reference shares it.
    """

    def __init__(self) -> None:
        self.inputs: set[str] = set()
        self.params: set[str] = set()
        self.calls = 0
        self.loaded: list = []  # (model, processor) of every load_model call
        self._scanned: set[int] = set()
        self._handles: list = []

    def hook_fn(self):
        def pre_hook(module, args, kwargs):
            self.calls += 1
            for t in _tensors((args, kwargs)):
                self.inputs.add(str(t.device))
            if id(module) not in self._scanned:  # the first call: every parameter, as placed for compute
                self._scanned.add(id(module))
                self.params |= _param_devices(module)
            return None

        return pre_hook

    def install(self, model) -> None:
        base = rft.models.unwrap(model)
        hook = self.hook_fn()
        inner = getattr(base, "model", None)
        for m in (base, getattr(inner, "visual", None), getattr(inner, "language_model", None)):
            if m is not None:
                self._handles.append(m.register_forward_pre_hook(hook, with_kwargs=True))

    def finish(self) -> None:
        """Read the parameters' final devices, drop the hooks and every reference to the models."""
        for model, _ in self.loaded:
            self.params |= _param_devices(model)
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.loaded.clear()


def resized_task(build, size: tuple[int, int], seen: list):
    """`rft.pipeline.build_task` with every image resized to `size` (width, height); the task lands in `seen`."""

    def build_resized(*args, **kwargs):
        task = build(*args, **kwargs)
        task.splits = {
            name: [
                dataclasses.replace(
                    s, images=tuple(im.convert("RGB").resize(size, Image.BICUBIC) for im in s.images)
                )
                for s in samples
            ]
            for name, samples in task.splits.items()
        }
        seen.append(task)
        return task

    return build_resized


def stopping_tracker(base, stop_after: int | None):
    """`rft.pipeline.Tracker`, sending this process SIGTERM once step `stop_after` is logged (None: never)."""

    class StopAfter(base):
        def log(self, step, metrics):
            super().log(step, metrics)
            if stop_after is not None and step == stop_after:
                os.kill(os.getpid(), signal.SIGTERM)  # the loop finishes the step, saves, raises Interrupted

    return StopAfter


@contextlib.contextmanager
def instrumented(probe: Probe, image: tuple[int, int], tasks: list, stop_after: int | None):
    load, build, tracker = rft.models.load_model, rft.pipeline.build_task, rft.pipeline.Tracker

    def load_and_probe(*args, **kwargs):
        model, processor = load(*args, **kwargs)
        probe.install(model)
        probe.loaded.append((model, processor))
        return model, processor

    rft.models.load_model = load_and_probe
    rft.pipeline.build_task = resized_task(build, image, tasks)
    rft.pipeline.Tracker = stopping_tracker(tracker, stop_after)
    try:
        yield
    finally:
        rft.models.load_model, rft.pipeline.build_task, rft.pipeline.Tracker = load, build, tracker


# ---------------------------------------------------------------------------------------------------------------
# One stage
# ---------------------------------------------------------------------------------------------------------------


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]  # nan is "nan"


def _num(x) -> float:
    return float(x) if isinstance(x, int | float | str) else float("nan")


def _median(rows: list[dict], key: str) -> float | None:
    values = [_num(r[key]) for r in rows if key in r]
    return statistics.median(values) if values else None


def peak_memory_gb(rows: list[dict], device: str) -> tuple[float, str]:
    """(peak GB, its source): `perf/peak_mem_gb` on CUDA, else this process's peak RSS."""
    logged = [_num(r["perf/peak_mem_gb"]) for r in rows if "perf/peak_mem_gb" in r]
    if device.startswith("cuda"):
        cuda = torch.cuda.max_memory_allocated() / 2**30
        return max([*logged, cuda]), "cuda max_memory_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu max RSS of the process"


def run_pipeline(overrides: list[str], run_dir: Path, probe: Probe, image, tasks, stop_after=None):
    """Compose, convert, and run `rft.pipeline.run` once under the probe; logs go to run_dir/run.log."""
    cfg, yaml_text = compose_run_config(overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        with instrumented(probe, image, tasks, stop_after):
            return rft.pipeline.run(cfg, run_dir, config_yaml=yaml_text)
    finally:
        root.removeHandler(handler)
        handler.close()


def run_stage(stage: str, overrides: list[str], run_dir: Path, expected: str, size: dict) -> dict:
    """Run one stage in this process; returns its report entry (never raises for a failing run)."""
    gc.collect()
    if expected.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    probe, tasks, problems = Probe(), [], []
    t0 = time.perf_counter()
    error = None
    try:
        if stage == "resume":  # SIGTERM once the second-last step is logged, then resume=auto to the end
            stop_after = size["steps"] - 1
            try:
                run_pipeline(overrides, run_dir, probe, size["image"], tasks, stop_after=stop_after)
                problems.append(f"the run was not interrupted after step {stop_after}")
            except Interrupted:
                pass
            first = json.loads((run_dir / "results.json").read_text())
            if first["status"] != "interrupted":
                problems.append(f"after SIGTERM results.json says {first['status']!r}, not 'interrupted'")
            run_pipeline([*overrides, "resume=auto"], run_dir, probe, size["image"], tasks)
        else:
            run_pipeline(overrides, run_dir, probe, size["image"], tasks)
    except BaseException as err:  # noqa: BLE001 - a failing stage is a result, not a crash of the check
        if isinstance(err, KeyboardInterrupt):
            raise
        error = f"{type(err).__name__}: {err}"
        log.exception("stage %s failed", stage)
    wall = time.perf_counter() - t0
    rows = read_metrics(run_dir / "metrics.jsonl")
    result = (
        json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").is_file() else {}
    )
    peak, peak_source = peak_memory_gb(rows, expected)
    prompt = prompt_shape(probe, tasks)
    probe.finish()
    entry = {
        "status": "passed",
        "error": error,
        "run_dir": str(run_dir),
        "run_status": result.get("status"),
        "wall_s": round(wall, 2),
        "steps_logged": [int(r["step"]) for r in rows],
        "step_s_median": _median(rows, "perf/step_s"),
        "tokens_per_s_median": _median(rows, "perf/tokens_per_s"),
        "rollout_s_median": _median(rows, "timing/rollout_s"),
        "peak_mem_gb": peak,
        "peak_mem_source": peak_source,
        "losses": [_num(r["train/loss"]) for r in rows if "train/loss" in r],
        "eval": {k: v for k, v in result.items() if k.startswith("eval/")},
        "eval_s": result.get("eval_s"),
        "param_devices": sorted(probe.params),
        "input_devices": sorted(probe.inputs),
        "forward_calls": probe.calls,
        **prompt,
    }
    if error:
        problems.append(error)
    if entry["run_status"] != "finished":
        problems.append(f"results.json status is {entry['run_status']!r}, not 'finished'")
    if any(not math.isfinite(x) for x in entry["losses"]):
        problems.append(f"non-finite loss: {entry['losses']}")
    for kind in ("param", "input"):
        devices = entry[f"{kind}_devices"]
        if devices != [expected]:
            problems.append(f"{kind} devices {devices}, expected only {expected!r}")
    if stage != "eval":
        want = list(range(1, size["steps"] + 1))
        if entry["steps_logged"] != want:
            problems.append(f"metrics.jsonl logged steps {entry['steps_logged']}, expected {want}")
    if stage == "resume":
        problems += resume_problems(run_dir, size["steps"], size["steps"] - 1)
    entry["problems"] = problems
    entry["status"] = "failed" if problems else "passed"
    return entry


def prompt_shape(probe: Probe, tasks: list) -> dict:
    """P (prompt tokens), image pixels and image tokens of the first train prompt, through the run's processor."""
    if not probe.loaded or not tasks:
        return {}
    processor, task = probe.loaded[0][1], tasks[0]
    sample = task.split("train")[0]
    text = chat_text(processor, task.prompt(sample, True), len(sample.images))
    prompts = encode_prompts(processor, [text], [sample.images])
    grid = prompts.image_grid_thw[0]
    patch = processor.image_processor.patch_size
    merge = processor.image_processor.merge_size
    return {
        "prompt_tokens": int(prompts.input_ids.shape[1]),
        "image_pixels": int(grid.prod()) * patch * patch // int(grid[0]),
        "image_tokens": int(grid.prod()) // merge**2,
    }


def resume_problems(run_dir: Path, steps: int, stop_after: int) -> list[str]:
    """The resumed run reached `steps` from the checkpoint of step `stop_after`, and left one finished row."""
    problems = []
    result = json.loads((run_dir / "results.json").read_text())
    if not result.get("resumed_from", "") or f"step_{stop_after:06d}" not in str(result.get("resumed_from")):
        problems.append(
            f"resumed_from is {result.get('resumed_from')!r}, not the step-{stop_after} checkpoint"
        )
    if result.get("train/steps") != float(steps):
        problems.append(f"train/steps is {result.get('train/steps')}, expected {steps}")
    with open(run_dir.parent / "results.csv") as f:  # the stage's own results_csv
        statuses = [r["status"] for r in csv.DictReader(f) if r.get("run_dir") == str(run_dir)]
    if sorted(statuses) != ["finished", "interrupted"]:
        problems.append(
            f"results.csv rows of the run have statuses {statuses}, expected interrupted + finished"
        )
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The ZeRO-3 stage: this script again, under torchrun
# ---------------------------------------------------------------------------------------------------------------


def run_torchrun_stage(stage: str, spec: dict, work: Path, timeout: float) -> dict:
    spec_path, out_path = work / stage / "spec.json", work / stage / "stage.json"
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.unlink(missing_ok=True)
    spec_path.write_text(json.dumps({**spec, "out": str(out_path)}))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "1",
        str(Path(__file__).resolve()),
        "--worker",
        str(spec_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, spec["size"]["threads"]))}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        (work / stage / "torchrun.log").write_text(proc.stdout + proc.stderr)
        tail, rc = (proc.stdout + proc.stderr)[-3000:], proc.returncode
    except subprocess.TimeoutExpired as err:
        tail, rc = f"timed out after {timeout:.0f} s: {str(err.stderr or '')[-2000:]}", None
    if out_path.is_file():
        entry = json.loads(out_path.read_text())
    else:
        entry = {"status": "failed", "problems": [f"torchrun exited {rc} without a stage report"]}
    entry["launcher"] = "torchrun --standalone --nproc_per_node 1"
    entry["launcher_wall_s"] = round(time.perf_counter() - t0, 2)
    if rc != 0:
        entry["status"] = "failed"
        entry.setdefault("problems", []).append(f"torchrun exit status {rc}; output tail: {tail}")
    return entry


def worker(spec_path: str) -> None:
    """Under torchrun: run one stage in-process and write its entry to spec["out"]."""
    from rft import distributed

    spec = json.loads(Path(spec_path).read_text())
    entry = run_stage(spec["stage"], spec["overrides"], Path(spec["run_dir"]), spec["expected"], spec["size"])
    if distributed.rank() == 0:
        Path(spec["out"]).write_text(json.dumps(entry, default=str))
    distributed.shutdown()


# ---------------------------------------------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------------------------------------------


def bandwidth(entry: dict, model_dir: Path, size: dict, device_name: str) -> dict:
    """Fraction of the decode memory-bandwidth ceiling the rollout reached (bench_gpu's formula)."""
    from transformers import AutoConfig

    if not entry.get("rollout_s_median") or "prompt_tokens" not in entry:
        return {"bytes_per_step": None, "hbm_bytes_per_s": None, "fraction_of_ceiling": None}
    config = AutoConfig.from_pretrained(model_dir)
    width = 2 if size["dtype"] == "bfloat16" else 4
    G, T = size["G"], size["T"]
    nbytes = decode_bytes_per_step(config, entry["prompt_tokens"], G, T, width)
    bw = next((v for k, v in HBM_BYTES_PER_S.items() if k in device_name), None)
    return {
        "bytes_per_step": nbytes,
        "hbm_bytes_per_s": bw,
        "ceiling_s": T * nbytes / bw if bw else None,
        "rollout_s": entry["rollout_s_median"],
        "fraction_of_ceiling": (T * nbytes / bw) / entry["rollout_s_median"] if bw else None,
    }


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda}
    for name in ("transformers", "deepspeed", "peft", "accelerate", "hydra-core", "quicktok-v1"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def check(dry_run: bool, out: Path, work: Path, stages: list[str], stage_timeout: float) -> dict:
    size = DRY if dry_run else GPU
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device; run with --dry-run to check the stages on CPU")
    t0 = time.perf_counter()
    expected = "cpu" if dry_run else "cuda:0"
    device_name = "cpu" if dry_run else torch.cuda.get_device_name(0)
    work.mkdir(parents=True, exist_ok=True)
    say(f"building the stand-in ({size['layers']} layers, vision depth {size['vision_depth']}) in {work}")
    model_dir, build_s = cached_standin(
        work,
        layers=size["layers"],
        vision_depth=size["vision_depth"],
        hidden=size["hidden"],
        dtype=getattr(torch, size["dtype"]),
        device=size["device"],
    )
    report: dict = {
        "ok": False,
        "mode": "dry-run" if dry_run else "gpu",
        "device": device_name,
        "expected_device": expected,
        "versions": versions(),
        "model": {
            "kind": "qwen2vl_2b",
            "path": str(model_dir),
            "build_s": round(build_s, 2),
            **{k: size[k] for k in ("layers", "vision_depth", "hidden", "dtype")},
        },
        "settings": {k: size[k] for k in ("G", "T", "steps")} | {"image": "x".join(map(str, size["image"]))},
        "stages": {},
    }
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    for stage in stages:
        say(f"stage {stage} ...")
        run_dir = work / stage / stamp
        overrides = stage_overrides(stage, size, model_dir, work)
        if stage == "grpo_zero3":
            spec = dict(stage=stage, overrides=overrides, run_dir=str(run_dir), expected=expected, size=size)
            entry = run_torchrun_stage(stage, spec, work, stage_timeout)
        else:
            entry = run_stage(stage, overrides, run_dir, expected, size)
        if stage in ("grpo", "grpo_zero3") and entry["status"] == "passed":
            entry["decode_bandwidth"] = bandwidth(entry, model_dir, size, device_name)
        report["stages"][stage] = entry
        say(f"stage {stage}: {entry['status']} {'; '.join(map(str, entry.get('problems', [])))[:500]}")
    first = next(iter(report["stages"].values()), {})
    report["settings"].update({k: first.get(k) for k in ("prompt_tokens", "image_pixels", "image_tokens")})
    report["failures"] = [f"{s}: {p}" for s, e in report["stages"].items() for p in e.get("problems", [])]
    report["ok"] = bool(report["stages"]) and not report["failures"]
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="the same stages on CPU at tiny size")
    ap.add_argument("--out", default=str(ROOT / "outputs/gpu_check/report.json"), help="the report JSON")
    ap.add_argument("--work", default=None, help="stand-in and run folders (default: next to --out)")
    ap.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}"
    )
    ap.add_argument("--stage-timeout", type=float, default=420.0, help="seconds for the torchrun stage")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # internal: one stage under torchrun
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0
    stages = [s for s in args.stages.split(",") if s]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise SystemExit(f"unknown stages {unknown}; stages are {', '.join(STAGES)}")
    out = Path(args.out)
    work = Path(args.work) if args.work else out.parent / ("dry_run" if args.dry_run else "gpu")
    # Everything the stages print (DeepSpeed logs to stdout) goes to stderr: stdout carries the JSON alone.
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        report = check(args.dry_run, out, work, stages, args.stage_timeout)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
    print(json.dumps(report, indent=2, default=str), flush=True)
    say(f"{'OK' if report['ok'] else 'FAILED'}: {out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
