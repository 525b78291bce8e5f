"""Checkpoint and resume tier: a run killed with SIGKILL and resumed ends bit-identical to one never killed.

Each training run is a subprocess driving `rft.pipeline.run` on the tiny model (one CPU thread, so the float
reductions are the same in every process). The interrupted run is killed right after the checkpoint of a chosen
step appears (the kill lands somewhere in the following step: mid-rollout, mid-update or mid-checkpoint-write),
resumed with resume=auto, killed again at a later step, and resumed to the end. Compared with the uninterrupted
run: the final weights (bitwise), the evaluation predictions, and every logged metric except wall-clock timings.

    python -m pytest -q tests/test_resume.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rft import checkpoint, pipeline
from rft.results import read_results
from tests.conftest import tiny_run_config

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# argv: kind run_dir resume; the config is tiny_run_config with a checkpoint after every step.
DRIVER = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tests.conftest import tiny_run_config
from rft import pipeline
from rft.config import CheckpointConfig, EvalConfig

kind, run_dir, resume = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
cfg = tiny_run_config(
    run_dir.parent,
    kind,
    checkpoint=CheckpointConfig(every=1, keep_last=100),
    resume=resume,
    threads=1,
    eval=EvalConfig(batch_size=4, limit=2),
)
if kind == "rft":
    cfg.method.steps = 6
else:
    cfg.method.epochs = 3  # 8 samples x 3 epochs / batch 4 = 6 steps, crossing two epoch boundaries
pipeline.run(cfg, run_dir)
"""
STEPS = 6


def start(kind: str, run_dir: Path, resume: str = "none") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, kind, str(run_dir), resume],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


def kill_after_checkpoint(proc: subprocess.Popen, run_dir: Path, step: int, timeout: float = 240) -> None:
    """SIGKILL `proc` as soon as the checkpoint of `step` is complete (it is then somewhere in step + 1)."""
    marker = run_dir / "checkpoints" / f"step_{step:06d}" / checkpoint.MARKER
    deadline = time.monotonic() + timeout
    while not marker.is_file():
        assert proc.poll() is None, f"exited before step {step}: {proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint for step {step} after {timeout}s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert not (run_dir / "results.json").exists(), "the kill came too late: the run had finished"


def comparable_metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(("timing/", "perf/"))} for r in rows]


@pytest.mark.parametrize("kind,kill_steps", [("rft", (1, 4)), ("sft", (2, 4))])
def test_killed_and_resumed_run_is_bit_identical(tmp_path, kind, kill_steps):
    ref_dir, run_dir = tmp_path / "ref" / "run", tmp_path / "killed" / "run"
    reference = start(kind, ref_dir)  # runs alongside the interrupted chain
    for step in kill_steps:
        kill_after_checkpoint(start(kind, run_dir, resume="auto"), run_dir, step)
    finish(start(kind, run_dir, resume="auto"))
    finish(reference)

    final = f"checkpoints/step_{STEPS:06d}/model.safetensors"
    a, b = load_file(ref_dir / final), load_file(run_dir / final)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    assert (ref_dir / "eval_predictions.jsonl").read_text() == (
        run_dir / "eval_predictions.jsonl"
    ).read_text()
    assert comparable_metrics(ref_dir) == comparable_metrics(run_dir)  # each step logged once, same values
    ref_result = json.loads((ref_dir / "results.json").read_text())
    result = json.loads((run_dir / "results.json").read_text())
    for key in ("status", "eval/accuracy", "eval/format_rate", "train/steps"):
        assert ref_result[key] == result[key], key
    assert result["resumed_from"].endswith(f"step_{kill_steps[-1]:06d}")
    # SIGKILL leaves no row; the one row of the resumed run is finished.
    assert [r["status"] for r in read_results(run_dir.parent / "results.csv")] == ["finished"]
    # No half-written folder survives under a final name; keep_last=100 kept all six.
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if checkpoint.is_complete(p))
    assert names == [f"step_{s:06d}" for s in range(1, STEPS + 1)]


CLI_TINY = [
    "logger=none",
    "method.steps=12",
    "method.rollout_batch_size=8",
    "method.group_size=4",
    "method.micro_batch_size=4",
    "task.train_size=16",
    "task.test_size=2",
    "task.image_size=56",
    "budget.size=8",
    "method.max_new_tokens=8",
    "eval.limit=2",
    "threads=1",
]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_marks_the_row_and_exits(tmp_path, signum):
    """SLURM preemption (SIGTERM) or Ctrl-C (SIGINT): finish the step, checkpoint, row `interrupted`, exit 128+n."""
    run_dir, csv = tmp_path / "run", tmp_path / "results.csv"
    args = [*CLI_TINY, f"results_csv={csv}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "experiments/run.py"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert time.monotonic() - sent < 60  # bounded: the rest of one step plus one checkpoint
    assert f"stopped by {signal.Signals(signum).name} after step" in err and "resume=auto" in err
    last_step = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert checkpoint.latest(run_dir / "checkpoints").name == f"step_{last_step:06d}" and last_step < 12
    (row,) = read_results(csv)
    assert row["status"] == "interrupted" and json.loads((run_dir / "results.json").read_text())[
        "status"
    ] == ("interrupted")
    if signum == signal.SIGTERM:  # resume to the end; a finished run is then skipped on a rerun
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, str(REPO / "experiments/run.py"), *args, "resume=auto"],
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr[-3000:]
        rows = read_results(csv)
        assert [r["status"] for r in rows] == ["interrupted", "finished"]
        assert rows[1]["resumed_from"].endswith(f"step_{last_step:06d}")
        steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
        assert steps == list(range(1, 13))


# --- a run folder belongs to one run ---------------------------------------------------------------------------


def test_a_resume_with_other_training_settings_is_refused_before_loading(tmp_path, monkeypatch):
    from rft import models
    from rft.config import CheckpointConfig, ConfigError

    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1))
    pipeline.run(cfg, tmp_path / "run")
    (tmp_path / "run" / "results.json").unlink()  # as if killed after its checkpoints
    changed = tiny_run_config(tmp_path, "rft", resume="auto")
    changed.method.lr = 5e-4
    real_load = models.load_model
    monkeypatch.setattr(
        models, "load_model", lambda *a, **k: pytest.fail("must fail before loading the model")
    )
    with pytest.raises(
        ConfigError, match="other task/method/model/reward/budget/seed settings.*resume_allow_changes"
    ):
        pipeline.run(changed, tmp_path / "run")
    monkeypatch.setattr(models, "load_model", real_load)
    changed.resume_allow_changes = True  # the explicit switch: continue under the new settings
    assert pipeline.run(changed, tmp_path / "run").status == "finished"


def test_resume_auto_on_a_finished_run_of_another_seed_is_refused(tmp_path):
    from rft.config import ConfigError

    pipeline.run(tiny_run_config(tmp_path, "sft"), tmp_path / "run")
    with pytest.raises(ConfigError, match="holds a finished run of .*'seed': 0.*not .*'seed': 1"):
        pipeline.run(tiny_run_config(tmp_path, "sft", resume="auto", seed=1), tmp_path / "run")
    same = pipeline.run(tiny_run_config(tmp_path, "sft", resume="auto"), tmp_path / "run")
    assert same.status == "finished" and same.seed == 0  # the same run is returned, not rerun


def test_two_runs_never_share_a_run_folder(tmp_path):
    from filelock import FileLock

    from rft.config import ConfigError

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with FileLock(run_dir / ".run.lock"):  # another run holds the folder
        with pytest.raises(ConfigError, match="is in use by another run"):
            pipeline.run(tiny_run_config(tmp_path, "sft"), run_dir)
    assert not (run_dir / "metrics.jsonl").exists() and not (tmp_path / "results.csv").exists()
    assert pipeline.run(tiny_run_config(tmp_path, "sft"), run_dir).status == "finished"  # released: it runs
