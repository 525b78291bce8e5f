"""Smoke tier: a few steps of each method on the tiny model; parameters change, losses are finite, and every
file of the output contract exists. Also the CLI: a run and a budget multirun (one result row per job).

    python -m pytest -q tests/test_smoke.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rft import grpo, models, pipeline, sft
from rft.config import LoggerConfig
from rft.data.budget import BudgetError, apply_budget
from rft.data.registry import build_task
from rft.results import read_results
from rft.tracking import Tracker

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def loop_inputs(cfg, tmp_path):
    task = build_task(
        cfg.task.name,
        data_seed=0,
        image_size=cfg.task.image_size,
        train_size=cfg.task.train_size,
        test_size=cfg.task.test_size,
    )
    train = apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed)
    model, processor = models.load_model(cfg.model)
    tracker = Tracker(
        tmp_path,
        enabled=True,
        backend="none",
        project="p",
        entity=None,
        group=None,
        name="t",
        tags=[],
        mode="disabled",
        config={},
        axes={},
    )
    return task, train, model, processor, tracker


@pytest.mark.parametrize("method", ["rft", "sft"])
def test_loop_changes_parameters_with_finite_loss(tiny_cfg, tmp_path, method):
    cfg = tiny_cfg(method)
    task, train, model, processor, tracker = loop_inputs(cfg, tmp_path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = grpo if method == "rft" else sft
    loop.train(cfg, task, train, model, processor, tracker)
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any("visual" in k for k in changed) and any("language_model" in k for k in changed)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines and all(math.isfinite(x["train/loss"]) for x in lines)
    assert all(x["timing/update_s"] > 0 for x in lines)


def test_grpo_logs_progress_lines_that_match_its_metrics(tiny_cfg, tmp_path, caplog):
    """A log line at every tenth of the run (here every step of 2): the mean reward of the steps since the last."""
    cfg = tiny_cfg("rft")
    task, train, model, processor, tracker = loop_inputs(cfg, tmp_path)
    with caplog.at_level("INFO", logger="rft.grpo"):
        grpo.train(cfg, task, train, model, processor, tracker)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    metrics = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == cfg.method.steps == len(metrics)
    for k, (line, m) in enumerate(zip(lines, metrics, strict=True), start=1):
        assert line.startswith(
            f"step {k}/{cfg.method.steps}: reward {m['rollout/reward_mean']:.2f} (accuracy "
        )
        assert f"{m['rollout/completion_tokens']:.1f} completion tokens" in line


def test_progress_text_averages_the_window():
    window = [
        {
            "rollout/reward_mean": r,
            "reward/accuracy": a,
            "rollout/completion_tokens": 10.0,
            "perf/step_s": 0.5,
        }
        for r, a in ((1.0, 0.0), (2.0, 1.0))
    ]
    assert grpo.progress_text(20, 100, window) == (
        "step 20/100: reward 1.50 (accuracy 0.50), 10.0 completion tokens, 0.50 s/step"
    )


def test_sft_steps_override_epochs(tiny_cfg, tmp_path):
    """method.steps sets the optimizer steps however small the train set: the stream wraps into new epochs."""
    from rft.config import SFTConfig

    cfg = tiny_cfg("sft", method=SFTConfig(epochs=1, steps=5, batch_size=4, micro_batch_size=2, lr=1e-3))
    task, train, model, processor, tracker = loop_inputs(cfg, tmp_path)
    assert len(train) == 8 and cfg.method.total_steps(len(train)) == 5  # epochs alone: 2 steps
    sft.train(cfg, task, train, model, processor, tracker)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4, 5] and lines[-1]["train/epoch"] >= 2


def test_grpo_with_kl_and_mu_runs_every_phase(tiny_cfg, tmp_path):
    cfg = tiny_cfg("rft")
    cfg.method.beta, cfg.method.mu, cfg.method.loss_agg = 0.04, 2, "token-mean"
    task, train, model, processor, tracker = loop_inputs(cfg, tmp_path)
    grpo.train(cfg, task, train, model, processor, tracker)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    for key in (
        "timing/rollout_s",
        "timing/reward_s",
        "timing/ref_logprobs_s",
        "timing/old_logprobs_s",
        "timing/update_s",
        "policy/kl",
        "policy/clip_frac",
        "reward/accuracy",
        "reward/format",
        "rollout/completion_tokens",
        "perf/tokens_per_s",
    ):
        assert key in last, key
    assert last["policy/kl"] >= 0


@pytest.mark.parametrize("method", ["rft", "sft", "zeroshot"])
def test_pipeline_writes_the_output_contract(tiny_cfg, tmp_path, method):
    from rft.config import ZeroShotConfig

    cfg = (
        tiny_cfg(method) if method != "zeroshot" else tiny_cfg("rft", method=ZeroShotConfig(max_new_tokens=8))
    )
    run_dir = tmp_path / "run"
    record = pipeline.run(cfg, run_dir, config_yaml="seed: 0\n")
    assert record.status == "finished" and 0.0 <= record.metrics["eval/accuracy"] <= 1.0
    for name in ("metrics.jsonl", "results.json", "eval_predictions.jsonl", "config.yaml"):
        assert (run_dir / name).is_file() or (method == "zeroshot" and name == "metrics.jsonl"), name
    if method == "rft":
        assert sorted(p.name for p in (run_dir / "samples").iterdir()) == [
            "step_000001.jsonl",
            "step_000002.jsonl",
        ]
        row = json.loads((run_dir / "samples/step_000001.jsonl").read_text().splitlines()[0])
        assert {"prompt", "completion", "reward/accuracy", "reward/format", "advantage"} <= set(row)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == method and results["versions"]["torch"].startswith("2.13")
    assert results["min_pixels"] == cfg.model.min_pixels and "git_commit" in results
    rows = read_results(Path(cfg.results_csv))
    assert len(rows) == 1 and rows[0]["method"] == method and rows[0]["status"] == "finished"


def test_wandb_offline_run_is_created_with_axes(tiny_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = tiny_cfg("rft", logger=LoggerConfig(backend="wandb", mode="auto", group="g1", tags=["smoke"]))
    pipeline.run(cfg, tmp_path / "run")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    tables = list(runs[0].glob("files/media/table/completions_*.table.json"))
    assert len(tables) == 2  # samples_every=1, 2 steps
    assert (
        "image" in json.loads(tables[0].read_text())["columns"]
    )  # offline, the pixels live in the .wandb log


def test_failure_after_start_records_a_failed_row(tiny_cfg, tmp_path, monkeypatch):
    cfg = tiny_cfg("rft")

    def boom(*a, **k):
        raise RuntimeError("planted")

    monkeypatch.setattr(grpo, "train", boom)
    with pytest.raises(RuntimeError, match="planted"):
        pipeline.run(cfg, tmp_path / "run")
    (row,) = read_results(Path(cfg.results_csv))
    assert row["status"] == "failed" and "planted" in row["error"]


def test_budget_larger_than_data_fails_before_any_row(tiny_cfg, tmp_path):
    from rft.config import BudgetConfig

    cfg = tiny_cfg("rft", budget=BudgetConfig(kind="samples", size=999))
    with pytest.raises(BudgetError, match="larger than the train pool"):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists() and not (tmp_path / "run").exists()


def cli(*args, cwd=REPO, timeout=300):
    return subprocess.run(
        [sys.executable, str(REPO / "experiments/run.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


TINY_CLI = [
    "model=tiny",
    "task=sat_synth",
    "budget=samples",
    "method.rollout_batch_size=8",
    "method.group_size=4",
    "method.micro_batch_size=8",
    "logger=none",
    "method.steps=2",
    "task.train_size=16",
    "task.test_size=2",
    "task.image_size=56",
    "budget.size=8",
    "method.max_new_tokens=8",
]


def test_cli_multirun_over_budgets_writes_one_row_per_job(tmp_path):
    csv = tmp_path / "results.csv"
    proc = cli(
        "-m",
        "budget.size=2,4",
        *TINY_CLI[:-2],
        "method.max_new_tokens=8",
        f"results_csv={csv}",
        f"hydra.sweep.dir={tmp_path}/sweep",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_results(csv)
    assert sorted(r["budget"] for r in rows) == ["samples:2", "samples:4"]
    for r in rows:
        run_dir = Path(r["run_dir"])
        assert (run_dir / ".hydra/config.yaml").is_file() and (run_dir / "run.log").is_file()
        assert "grpo" in (run_dir / "run.log").read_text().lower() or (run_dir / "metrics.jsonl").is_file()


def test_eval_before_scores_the_base_model_in_the_same_row(tiny_cfg, tmp_path):
    """eval.before=true: the trained run's eval_before/* equal a zero-shot run's eval/* on the same model."""
    from rft.config import EvalConfig, ZeroShotConfig

    trained = pipeline.run(tiny_cfg("rft", eval=EvalConfig(batch_size=4, before=True)), tmp_path / "rft")
    base = pipeline.run(tiny_cfg("rft", method=ZeroShotConfig(max_new_tokens=12)), tmp_path / "zs")
    keys = ("accuracy", "format_rate", "completion_tokens", "think_tokens", "n")
    assert {k: trained.metrics[f"eval_before/{k}"] for k in keys} == {
        k: base.metrics[f"eval/{k}"] for k in keys
    }
    assert trained.metrics["eval_before/completion_tokens"] > 0 and "eval/accuracy" in trained.metrics
    assert not [k for k in base.metrics if k.startswith("eval_before/")]  # nothing to compare for zero-shot
    rows = read_results(Path(tiny_cfg("rft").results_csv))
    assert [r["eval_before/n"] for r in rows] == ["4.0", ""]

    def completions(path: Path) -> list[str]:
        return [json.loads(line)["completion"] for line in path.read_text().splitlines()]

    before = completions(tmp_path / "rft/eval_before_predictions.jsonl")
    assert before == completions(tmp_path / "zs/eval_predictions.jsonl")
    assert before != completions(tmp_path / "rft/eval_predictions.jsonl")  # training moved the model
