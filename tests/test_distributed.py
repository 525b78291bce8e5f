"""Distributed tier: DeepSpeed ZeRO-2/3 over 2 CPU ranks (gloo), LoRA, freezing, and the SLURM launcher path.

Equivalence tolerances (measured on CPU, fp32): SFT, 2 ranks x micro-batch 4 vs 1 process x 8, ZeRO-2 and
ZeRO-3: per-step loss and gradient norm agree to 1e-5 relative. GRPO with a fixed rollout: first-step loss to
1e-6 absolute (it is ~0 on-policy), gradient norm to 1e-5 relative; every parameter tensor's sum after two AdamW steps to 1e-4 (Adam's first steps amplify
rounding in near-zero gradients).

    python -m pytest -q tests/test_distributed.py
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rft import grpo, models, pipeline, sft
from rft.config import ConfigError, DistConfig, LoraConfig, RFTConfig, validate
from rft.data.budget import apply_budget
from rft.data.registry import build_task
from rft.engine import deepspeed_config
from rft.results import read_results
from rft.tracking import Tracker

REPO = Path(__file__).resolve().parents[1]
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
pytestmark = pytest.mark.slow


def launch(args: list[str], nproc: int, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, *args] if nproc == 1 else [TORCHRUN, "--nproc_per_node", str(nproc), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def worker_runs(tmp_path_factory):
    """Every worker job once: 1 process vs 2 ranks under ZeRO-2 and ZeRO-3, for SFT and fixed-rollout GRPO."""
    out = tmp_path_factory.mktemp("dist")
    jobs = {
        "sft-1": (["sft", "none", "8"], 1),
        "sft-zero2": (["sft", "zero2", "4"], 2),
        "sft-zero3": (["sft", "zero3", "4"], 2),
        "rft-1": (["rft", "none", "8", "--fixed-rollout"], 1),
        "rft-zero2": (["rft", "zero2", "4", "--fixed-rollout"], 2),
        "rft-zero3": (["rft", "zero3", "4", "--fixed-rollout"], 2),
        "rft-zero3-kl": (["rft", "zero3", "4", "--beta"], 2),
    }
    results = {}
    for name, (args, nproc) in jobs.items():
        launch([str(REPO / "tests/dist_worker.py"), str(out / f"{name}.json"), *args], nproc)
        results[name] = json.loads((out / f"{name}.json").read_text())
    return results


@pytest.mark.parametrize("job", ["sft-zero2", "sft-zero3", "rft-zero2", "rft-zero3", "rft-zero3-kl"])
def test_two_ranks_train_with_finite_loss_and_move_every_part(worker_runs, job):
    r = worker_runs[job]
    assert r["world_size"] == 2
    assert all(math.isfinite(m["train/loss"]) and m["train/grad_norm"] > 0 for m in r["metrics"])
    assert any("visual" in k for k in r["changed"]) and any("language_model" in k for k in r["changed"])


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_sft_two_ranks_match_one_process_with_double_micro_batch(worker_runs, stage):
    one, two = worker_runs["sft-1"]["metrics"], worker_runs[f"sft-{stage}"]["metrics"]
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert b["train/loss"] == pytest.approx(a["train/loss"], rel=1e-5)
        assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-5)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_grpo_first_step_agrees_between_one_and_two_ranks(worker_runs, stage):
    one, two = worker_runs["rft-1"], worker_runs[f"rft-{stage}"]
    a, b = one["metrics"][0], two["metrics"][0]
    assert b["rollout/reward_mean"] == pytest.approx(a["rollout/reward_mean"], abs=1e-6)  # the same rollout
    assert b["train/loss"] == pytest.approx(a["train/loss"], abs=1e-6)
    assert b["train/grad_norm"] == pytest.approx(a["train/grad_norm"], rel=1e-5)
    for k, v in one["fingerprint"].items():
        assert two["fingerprint"][k] == pytest.approx(v, rel=1e-4, abs=1e-4), k


@pytest.mark.parametrize("method,dist", [("rft", "zero3"), ("sft", "zero2")])
def test_cli_under_torchrun_writes_one_run_dir_and_one_row(tmp_path, tmp_path_factory, method, dist):
    csv = tmp_path / "results.csv"
    cold_cache = tmp_path_factory.mktemp("cold-model-cache")  # the tiny preset is built in this run
    proc = launch(
        [
            str(REPO / "experiments/run.py"),
            f"method={method}_tiny",
            f"dist={dist}",
            "model=tiny",
            "task=sat_synth",
            "budget=samples",
            "logger=none",
            "method.micro_batch_size=4",
            "method.steps=1",
            "method.max_new_tokens=6",
            "task.train_size=16",
            "task.test_size=4",
            "task.image_size=56",
            "budget.size=8",
            f"results_csv={csv}",
            f"hydra.run.dir={tmp_path}/run",
            f"model.cache_dir={cold_cache}",
        ]
        + (
            ["method.sampler=hf", "method.rollout_batch_size=8", "method.group_size=4"]
            if method == "rft"
            else []
        ),
        nproc=2,
    )
    rows = read_results(csv)
    assert len(rows) == 1 and rows[0]["status"] == "finished" and rows[0]["world_size"] == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.csv.lock", "run"]
    assert (tmp_path / "run/.hydra/config.yaml").is_file() and (tmp_path / "run/results.json").is_file()
    log = (tmp_path / "run/run.log").read_text()
    assert "[rank 0]" in log
    console = proc.stdout + proc.stderr  # every rank logs here; run.log is rank 0's
    assert "[rank 1]" in console
    # Rank 0 builds the cold cache; rank 1 waits, then loads it.
    assert console.count("building tiny model") == 1


def test_cli_zero3_with_kl_loads_policy_and_reference_partitioned(tmp_path):
    """ZeRO-3 with beta > 0 through the entrypoint: the policy loads already sharded (zero.Init) and the reference
    too (its own engine), so each of 2 ranks holds about half of each, never a full copy."""
    launch(
        [
            str(REPO / "experiments/run.py"),
            "method=rft_tiny",
            "dist=zero3",
            "model=tiny",
            "task=sat_synth",
            "budget=samples",
            "method.rollout_batch_size=8",
            "method.group_size=4",
            "logger=none",
            "method.beta=0.04",
            "method.sampler=hf",
            "method.micro_batch_size=4",
            "method.steps=1",
            "method.max_new_tokens=6",
            "task.train_size=16",
            "task.test_size=4",
            "task.image_size=56",
            "budget.size=8",
            f"results_csv={tmp_path}/results.csv",
            f"hydra.run.dir={tmp_path}/run",
        ],
        nproc=2,
    )
    assert read_results(tmp_path / "results.csv")[0]["status"] == "finished"
    log = (tmp_path / "run/run.log").read_text()
    for what in ("policy on cpu", "reference policy"):
        held, total = map(int, re.search(rf"{what}: (\d+) of (\d+) parameters on this rank", log).groups())
        assert 0.4 < held / total < 0.6, (what, held, total)


def test_deepspeed_json_is_derived_from_the_typed_config():
    ds = deepspeed_config(
        stage=3,
        offload_optimizer=True,
        offload_params=True,
        micro_batch_size=4,
        grad_accum_steps=2,
        world_size=8,
        max_grad_norm=1.0,
        dtype="bfloat16",
    )
    assert ds["train_batch_size"] == 64 and ds["gradient_accumulation_steps"] == 2
    assert ds["bf16"]["enabled"] and not ds["fp16"]["enabled"] and ds["gradient_clipping"] == 1.0
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"


def test_world_size_rules_have_fixes(tiny_cfg):
    cfg = tiny_cfg("rft", method=RFTConfig(rollout_batch_size=8, group_size=4, micro_batch_size=4))
    with pytest.raises(ConfigError, match="pass dist=zero2 or dist=zero3"):
        validate(cfg, world_size=2)
    cfg.dist = DistConfig(name="zero2", backend="deepspeed")
    validate(cfg, world_size=2)
    with pytest.raises(ConfigError, match="divisible by group_size x world_size"):
        validate(cfg, world_size=4)


def _loop(cfg, tmp_path):
    task = build_task(cfg.task, seed=cfg.seed)
    train = apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed)
    model, processor = models.load_model(cfg.model)
    tracker = Tracker(
        tmp_path, enabled=True, backend="none", project="p", name="t", mode="disabled", config={}, axes={}
    )
    return task, train, model, processor, tracker


@pytest.mark.parametrize("kind", ["rft", "sft"])
def test_lora_trains_only_the_adapter(tiny_cfg, tmp_path, kind):
    cfg = tiny_cfg(kind)
    cfg.model.lora = LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0)
    if kind == "rft":
        cfg.method.beta = 0.04  # the reference is the same model with its adapter disabled
        cfg.method.sampler = "hf"
    task, train, model, processor, tracker = _loop(cfg, tmp_path)
    assert models.is_lora(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (grpo if kind == "rft" else sft).train(cfg, task, train, model, processor, tracker)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all("lora_" in k for k in changed)
    if kind == "rft":
        last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
        assert "timing/ref_logprobs_s" in last and last["policy/kl"] >= 0


def test_freeze_vision_leaves_the_vision_tower_bit_identical(tiny_cfg, tmp_path):
    cfg = tiny_cfg("sft")
    cfg.model.freeze_vision = True
    task, train, model, processor, tracker = _loop(cfg, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sft.train(cfg, task, train, model, processor, tracker)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if ".visual." in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if "language_model" in k)


def test_gradient_checkpointing_gives_the_same_update(tiny_cfg, tmp_path):
    results = []
    for ckpt in (False, True):
        cfg = tiny_cfg("sft")
        cfg.model.gradient_checkpointing = ckpt
        task, train, model, processor, tracker = _loop(cfg, tmp_path / str(ckpt))
        assert model.is_activation_checkpointing == ckpt  # really on (and really off)
        pipeline.seed_everything(0)
        sft.train(cfg, task, train, model, processor, tracker)
        results.append(model.state_dict())
    a, b = results
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_submitit_local_launcher_runs_a_two_point_multirun(tmp_path):
    csv = tmp_path / "results.csv"
    launch(
        [
            str(REPO / "experiments/run.py"),
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "model=tiny",
            "task=sat_synth",
            "budget=samples",
            "method.rollout_batch_size=8",
            "method.group_size=4",
            "method.micro_batch_size=8",
            "budget.size=2,4",
            "logger=none",
            "method.steps=1",
            "method.max_new_tokens=6",
            "task.train_size=8",
            "task.test_size=2",
            "task.image_size=56",
            f"results_csv={csv}",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        nproc=1,
    )
    rows = read_results(csv)
    assert sorted(r["budget"] for r in rows) == ["samples:2", "samples:4"]
    assert all(r["status"] == "finished" for r in rows)


def test_lora_adapter_merges_into_a_standalone_model(tiny_cfg, tmp_path):
    from experiments.merge_lora import merge

    cfg = tiny_cfg("sft")
    cfg.model.lora = LoraConfig(enabled=True, r=4, alpha=8, dropout=0.0)
    task, train, model, processor, tracker = _loop(cfg, tmp_path)
    sft.train(cfg, task, train, model, processor, tracker)
    model.save_pretrained(tmp_path / "adapter")
    merged_dir = merge(tmp_path / "adapter", tmp_path / "merged")
    merged, _ = models.load_model(
        dataclasses.replace(cfg.model, builtin=False, path=str(merged_dir), lora=LoraConfig())
    )
    assert not models.is_lora(merged)
    ids = torch.tensor([[1, 2, 3, 4]])
    model.eval()
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, merged(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_zero2_two_rank_resume_is_bit_identical(tmp_path):
    """Issue 7 x issue 3: a 2-rank ZeRO-2 run resumed from its step-2 checkpoint ends bitwise equal."""
    from safetensors.torch import load_file

    common = [
        str(REPO / "experiments/run.py"),
        "dist=zero2",
        "logger=none",
        "method.micro_batch_size=4",
        "method.steps=4",
        "method.max_new_tokens=8",
        "task.train_size=16",
        "task.test_size=2",
        "task.image_size=56",
        "budget.size=8",
        "checkpoint.every=2",
        "checkpoint.keep_last=3",
        f"results_csv={tmp_path}/results.csv",
    ]
    launch([*common, f"hydra.run.dir={tmp_path}/A"], nproc=2)
    launch([*common, f"hydra.run.dir={tmp_path}/B", f"resume={tmp_path}/A/checkpoints/step_000002"], nproc=2)
    a = load_file(tmp_path / "A/checkpoints/step_000004/model.safetensors")
    b = load_file(tmp_path / "B/checkpoints/step_000004/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_with_the_lean_sampler_is_refused(tiny_cfg):
    cfg = tiny_cfg("rft")
    cfg.model.lora = LoraConfig(enabled=True)
    cfg.method.sampler = "lean"
    with pytest.raises(ConfigError, match="pass method.sampler=hf"):
        validate(cfg)


def test_zero3_reference_model_gives_a_growing_kl(worker_runs):
    """beta > 0 under ZeRO-3: the reference is a frozen copy of the start, so KL is 0 then > 0; it is sharded like
    the policy (its own DeepSpeed engine), so each of the 2 ranks holds half of it, not a full copy."""
    run = worker_runs["rft-zero3-kl"]
    kl = [m["policy/kl"] for m in run["metrics"]]
    assert kl[0] == pytest.approx(0.0, abs=1e-7) and kl[-1] > 0
    assert run["reference"]["local_fraction"] == pytest.approx(0.5, abs=0.05)
    assert run["reference"]["requires_grad"] == 0.0
