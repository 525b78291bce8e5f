"""Bad-input tier: the cases of docs/bad_inputs.md not already covered by the config, data and model tests.

Each case fails with one message that names the problem and the fix, before the model loads where possible, and
leaves no partial result file or row (a failure after training started leaves one clean `failed` row).

    python -m pytest -q tests/test_bad_inputs.py
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from rft import checkpoint, grpo, models, pipeline, results, sft
from rft.config import BudgetConfig, CheckpointConfig, ConfigError, ModelConfig, RunConfig, validate
from rft.data.base import DataError
from rft.data.budget import BudgetError, PromptStream
from rft.engine import TorchEngine
from rft.results import ResultRow, ResultsTableError, append_result_row, read_results
from tests.conftest import TINY_MODEL, tiny_run_config

REPO = Path(__file__).resolve().parents[1]


def no_model_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(models, "load_model", refuse)


# ---------------------------------------------------------------------------------------------------------------
# Config rules that need the world size, and the new checkpoint / resume keys
# ---------------------------------------------------------------------------------------------------------------


def test_rollout_batch_not_divisible_by_group_times_world(tmp_path):
    cfg = tiny_run_config(tmp_path, "rft")  # 8 completions, G = 4
    cfg.dist.backend = "deepspeed"
    with pytest.raises(ConfigError, match=r"divisible by group_size x world_size \(4 x 4\)"):
        validate(cfg, world_size=4)


def test_sft_batch_not_divisible_by_world(tmp_path):
    cfg = tiny_run_config(tmp_path, "sft")  # batch 4, micro-batch 2
    cfg.dist.backend = "deepspeed"
    with pytest.raises(ConfigError, match="must split into 3 ranks x whole micro-batches of 2"):
        validate(cfg, world_size=3)


def test_dist_none_with_several_processes(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = tiny_run_config(tmp_path, "rft")
    with pytest.raises(ConfigError, match="2 processes were launched but dist=none"):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "fields,needle",
    [
        (dict(every=-1), "checkpoint.every must be >= 0"),
        (dict(keep_last=0), "checkpoint.keep_last must be >= 1"),
    ],
)
def test_checkpoint_keys_are_checked(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        CheckpointConfig(**fields)


def test_resume_path_without_a_checkpoint(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    cfg = tiny_run_config(tmp_path, "rft", resume=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="holds no complete checkpoint"):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists()


def test_unfinished_checkpoint_folders_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 1)
    (root / "step_000002").mkdir()  # no meta.json: unfinished
    fake_checkpoint(root, 3).rename(root / "step_000003.tmp-123")  # still a tmp folder
    assert checkpoint.latest(root).name == "step_000001"


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def test_empty_budget():
    with pytest.raises(ConfigError, match="budget.size must be > 0, got 0"):
        BudgetConfig(kind="samples", size=0)
    with pytest.raises(BudgetError, match="the training set is empty"):
        PromptStream([], seed=0)


def test_corrupt_image_in_the_middle_of_a_split(tmp_path, monkeypatch):
    from tests.test_datasets import fgvc, image_bytes, smoke_config, write_fgvc

    no_model_load(monkeypatch)
    root = write_fgvc(tmp_path)
    ids = (root / "data" / "images_variant_test.txt").read_text().split("\n")
    victim = ids[len(ids) // 2].split()[0]
    full = image_bytes("JPEG", banner=True)
    (root / "data" / "images" / f"{victim}.jpg").write_bytes(full[: len(full) - 200])  # header intact
    cfg = smoke_config(fgvc(root), "sft", tmp_path)
    cfg.eval.limit = 0  # the whole split, so the image in the middle is reached
    with pytest.raises(DataError, match=f"image .*{victim}.jpg is corrupt .*re-download or replace it"):
        pipeline.run(cfg, tmp_path / "run")
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------------
# Model: trust_remote_code
# ---------------------------------------------------------------------------------------------------------------


def test_trust_remote_code_is_off_by_default_and_loud_when_on(caplog):

    assert ModelConfig().trust_remote_code is False
    spec = ModelConfig(trust_remote_code=True, **TINY_MODEL)
    with caplog.at_level(logging.WARNING, logger="rft.models"):
        models.load_model(spec)
    assert (
        "!!! model.trust_remote_code=true: code shipped with tiny will run on this machine !!!" in caplog.text
    )


# ---------------------------------------------------------------------------------------------------------------
# Environment: output locations, full disk
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["run_dir", "results_csv"])
def test_output_location_not_writable(tmp_path, monkeypatch, where):
    no_model_load(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be created under a file (chmod does not stop root)
    run_dir = blocker / "run" if where == "run_dir" else tmp_path / "run"
    csv = tmp_path / "results.csv" if where == "run_dir" else blocker / "results.csv"
    cfg = tiny_run_config(tmp_path, "rft", results_csv=str(csv))
    with pytest.raises(
        ConfigError, match=r"cannot write to .*a-file.*: (Not a directory|File exists)\. Choose a writable"
    ):
        pipeline.run(cfg, run_dir)
    assert not (tmp_path / "results.csv").exists()


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1, keep_last=1))
    cfg.method.steps = 3
    real_save, calls = checkpoint.save_weights, []

    def save_then_fill_disk(module, path):
        calls.append(path)
        if len(calls) == 2:  # step 2: half the files are written, then the disk is full
            (path / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(module, path)

    monkeypatch.setattr(checkpoint, "save_weights", save_then_fill_disk)
    with pytest.raises(checkpoint.CheckpointError) as err:
        pipeline.run(cfg, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    assert (
        f"could not write the checkpoint for step 2 to {root}/step_000002: No space left on device. "
        f"the previous checkpoint {root}/step_000001 is intact" in str(err.value)
    )
    assert sorted(p.name for p in root.iterdir()) == ["step_000001"]  # no tmp folder left behind
    assert checkpoint.is_complete(root / "step_000001")
    (row,) = read_results(Path(cfg.results_csv))
    assert row["status"] == "failed" and row["last_checkpoint"].endswith("step_000001")


# ---------------------------------------------------------------------------------------------------------------
# Runtime: non-finite loss or gradient, zero-variance rewards
# ---------------------------------------------------------------------------------------------------------------


def poison(monkeypatch, module, name, at_call: int, make_nan):
    real, calls = getattr(module, name), []

    def wrapped(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        return make_nan(out) if len(calls) == at_call else out

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("method", ["rft", "sft"])
def test_nan_loss_names_the_step_and_the_term_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, method
):
    cfg = tiny_run_config(tmp_path, method, checkpoint=CheckpointConfig(every=1, keep_last=5))
    if method == "rft":  # 2 micro-batches per step: the 5th loss call is in step 3
        cfg.method.steps = 4
        poison(
            monkeypatch,
            grpo,
            "grpo_loss",
            5,
            lambda out: (out[0] * math.nan, {**out[1], "policy/pg_loss": math.nan}),
        )
        needle = r"non-finite GRPO loss at step 3: pg_loss=nan, kl_loss=0\.0\. Lower method\.lr"
    else:  # 8 samples / batch 4 = 2 steps per epoch, 2 micro-batches per step: the 5th call is in step 3
        cfg.method.epochs = 2
        poison(monkeypatch, sft, "sft_loss", 5, lambda out: out * math.nan)
        needle = r"non-finite SFT loss at step 3; lower method\.lr"
    with pytest.raises(FloatingPointError, match=needle) as err:
        pipeline.run(cfg, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    assert f"The last good checkpoint is {root}/step_000002" in str(err.value)
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_000001", "step_000002"]
    (row,) = read_results(Path(cfg.results_csv))
    assert row["status"] == "failed" and "step 3" in row["error"]


def test_nan_gradient_names_the_step(tmp_path, monkeypatch):
    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1))
    poison(monkeypatch, TorchEngine, "step", 2, lambda out: math.inf)
    with pytest.raises(
        FloatingPointError, match="non-finite gradient norm at step 2 although the loss terms"
    ):
        pipeline.run(cfg, tmp_path / "run")
    assert checkpoint.latest(tmp_path / "run" / "checkpoints").name == "step_000001"


def test_zero_variance_rewards_warn_once_with_the_cause(tmp_path, monkeypatch, caplog):
    from rft.config import RewardConfig

    monkeypatch.setattr(grpo, "ZERO_STD_PATIENCE", 2)
    # The tiny random model never writes the format, and 6 new tokens cannot close an answer: all rewards are 0.
    cfg = tiny_run_config(tmp_path, "rft", reward=RewardConfig())
    cfg.method.steps, cfg.method.max_new_tokens = 4, 6
    with caplog.at_level(logging.WARNING, logger="rft.grpo"):
        pipeline.run(cfg, tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if "identical rewards" in r.getMessage()]
    assert len(warnings) == 1
    assert "completions are truncated at method.max_new_tokens=6" in warnings[0]


def test_zero_variance_cause_reads_the_reward_stats():
    base = {"rollout/clipped_ratio": 0.0, "reward/format": 0.0, "reward/accuracy": 0.0}
    assert "the format never matched" in grpo.zero_std_warning(base, ["accuracy", "format"], 64)
    assert "truncated" in grpo.zero_std_warning({**base, "rollout/clipped_ratio": 0.9}, ["format"], 64)
    assert "was ever correct" in grpo.zero_std_warning(
        {**base, "reward/format": 1.0}, ["accuracy", "format"], 64
    )


# ---------------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------------

SECRET = "hf_PLANTEDsecret0123456789abcdef"
OVERRIDE_SECRET = "sk-PLANTEDoverride0123456789"


def leaks(run_dir: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in run_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_secrets_never_reach_the_run_directory(tmp_path):
    """Tokens in the environment, and one passed on the command line, appear in no file of the run."""
    env = {**os.environ, "WANDB_API_KEY": SECRET, "HF_TOKEN": SECRET, "WANDB_MODE": "offline"}
    run_dir = tmp_path / "run"
    common = [f"results_csv={tmp_path}/results.csv", "logger.mode=offline"]
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments/run.py"),
            "logger=wandb",
            f"logger.tags=[{SECRET}]",  # a config-ish value equal to a token
            "method.steps=1",
            "task.train_size=8",
            "task.test_size=2",
            "task.image_size=56",
            "budget.size=4",
            "method.rollout_batch_size=4",
            "method.group_size=2",
            "method.micro_batch_size=4",
            "method.max_new_tokens=4",
            "threads=1",
            *common,
            f"hydra.run.dir={run_dir}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        and (run_dir / ".hydra/overrides.yaml").is_file()
    )
    assert not leaks(run_dir, SECRET) and SECRET not in proc.stdout + proc.stderr
    assert SECRET not in (tmp_path / "results.csv").read_text()

    # A secret-named override (rejected as an unknown key) is masked in the .hydra/ files Hydra already wrote.
    bad_dir = tmp_path / "bad"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments/run.py"),
            f"+logger.api_key={OVERRIDE_SECRET}",
            *common,
            f"hydra.run.dir={bad_dir}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "unknown key logger.api_key" in proc.stderr
    assert (bad_dir / ".hydra/overrides.yaml").is_file() and not leaks(bad_dir, OVERRIDE_SECRET)


def test_redact_override_masks_secret_keys_and_known_tokens(monkeypatch):
    sys.path.insert(0, str(REPO))
    from experiments.run import redact_override

    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert redact_override("+logger.api_key=abc") == "+logger.api_key=***"
    assert redact_override(f"logger.tags=[{SECRET}]") == "logger.tags=[***]"
    assert redact_override("hf_token=short") == "hf_token=***"
    assert redact_override("method.lr=0.1") == "method.lr=0.1"


def test_run_config_has_no_secret_fields():
    """Nothing in the schema is meant to hold a secret: tokens come from the environment only."""
    import dataclasses

    from rft.redaction import redact

    tree = dataclasses.asdict(RunConfig(method="zeroshot"))
    assert redact(tree) == tree


def test_training_state_loads_with_weights_only(tmp_path):
    """RNG states are stored as tensors and plain containers, so torch.load(weights_only=True) accepts them."""
    import random

    torch.save(checkpoint.rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), torch.rand(3))
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), torch.rand(3))
    assert expected[0] == again[0] and torch.equal(expected[1], again[1])
    torch.save({"evil": Path("/")}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "evil.pt", weights_only=True)


# ---------------------------------------------------------------------------------------------------------------
# The results table: a row is never lost, and never lies
# ---------------------------------------------------------------------------------------------------------------

ROW = dict(
    run_id="r1", status="finished", task="sat_synth", run_dir="/runs/r1", finished_at="2026-01-01T00:00:00"
)


def test_results_table_that_is_a_folder_or_not_utf8_is_named(tmp_path):
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(ResultsTableError, match=r"folder\.csv is a folder, not a table; pass results_csv="):
        append_result_row(tmp_path / "folder.csv", ResultRow(**ROW))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("run_id,status,note\nold,finished,caf\xe9\n".encode("latin-1"))
    with pytest.raises(
        ResultsTableError, match=r"is not UTF-8 text \(byte \d+ cannot be decoded\); convert it"
    ):
        append_result_row(latin, ResultRow(**ROW))
    assert latin.read_bytes().endswith(b"caf\xe9\n")  # untouched


def test_results_table_lock_held_elsewhere_times_out_with_a_message(tmp_path):
    csv = tmp_path / "results.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from filelock import FileLock; import time; lock = FileLock({str(csv)!r} + '.lock'); lock.acquire(); print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        with pytest.raises(
            ResultsTableError, match=r"stayed locked for 0 s: another process holds .*results\.csv\.lock"
        ):
            append_result_row(csv, ResultRow(**ROW), timeout=0.3)
    finally:
        holder.kill()
        holder.wait()
    append_result_row(csv, ResultRow(**ROW), timeout=5)  # the lock dies with its holder
    assert len(read_results(csv)) == 1


def test_results_table_disk_full_leaves_the_table_unchanged(tmp_path, monkeypatch):
    csv = tmp_path / "results.csv"
    append_result_row(csv, ResultRow(**ROW))
    before = csv.read_text()

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results, "atomic_write_text", full)
    with pytest.raises(
        ResultsTableError, match="could not write the results table .*: No space left on device"
    ):
        append_result_row(csv, ResultRow(**{**ROW, "run_id": "r2"}))
    assert csv.read_text() == before


def test_results_table_symlink_is_written_through(tmp_path):
    target = tmp_path / "shared" / "table.csv"
    target.parent.mkdir()
    append_result_row(target, ResultRow(**ROW))
    link = tmp_path / "results.csv"
    link.symlink_to(target)
    append_result_row(link, ResultRow(**{**ROW, "run_id": "r2"}))
    assert link.is_symlink() and [r["run_id"] for r in read_results(target)] == ["r1", "r2"]


def test_a_row_that_missed_the_table_is_added_once_by_resume(tmp_path, monkeypatch):
    run_dir, csv = tmp_path / "run", tmp_path / "results.csv"
    run_dir.mkdir()
    (tmp_path / "results.csv").mkdir()  # the append fails
    with pytest.raises(ResultsTableError):
        results.record_result(run_dir, csv, ResultRow(**ROW), extra={"versions": {}})
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["status"] == "finished" and saved["row_written"] is False
    csv.rmdir()  # fixed
    assert results.append_missing_row(run_dir, csv).run_id == "r1"
    assert results.append_missing_row(run_dir, csv) is None  # row_written: true now
    assert json.loads((run_dir / "results.json").read_text())["row_written"] is True
    results.mark_row_missing(run_dir)  # killed between the append and the rewrite: no second row
    results.append_missing_row(run_dir, csv)
    assert [r["run_id"] for r in read_results(csv)] == ["r1"]


def test_finished_run_whose_row_failed_is_not_skipped_by_resume(tmp_path, monkeypatch):
    """End to end on the tiny model: the append fails after training (full disk), results.json says so, and the
    entrypoint's resume=auto path adds the row instead of skipping the run for good."""
    sys.path.insert(0, str(REPO))
    from experiments import run as entry

    cfg = tiny_run_config(tmp_path, "rft")
    cfg.method.steps = 1
    run_dir = tmp_path / "run"
    real = results.atomic_write_text

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(results, "atomic_write_text", full)
    with pytest.raises(ResultsTableError) as err:
        pipeline.run(cfg, run_dir)
    monkeypatch.setattr(results, "atomic_write_text", real)
    with pytest.raises(SystemExit):
        entry.fail(err.value, cfg, None, run_dir, multirun=False)  # what the command line does
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved["status"] == "finished" and saved["row_written"] is False
    assert not Path(cfg.results_csv).exists()
    cfg.resume = "auto"
    row = entry.run_checked(cfg, OmegaConf.create({}), run_dir)
    assert row.status == "finished"
    assert [r["status"] for r in read_results(Path(cfg.results_csv))] == ["finished"]


# ---------------------------------------------------------------------------------------------------------------
# Damaged checkpoints, torn metrics, leftovers of a kill
# ---------------------------------------------------------------------------------------------------------------


def fake_checkpoint(root: Path, step: int, manifest: bool = True) -> Path:
    path = root / f"step_{step:06d}"
    (path / "rng").mkdir(parents=True)
    for name, data in (
        ("model.safetensors", b"w" * 64),
        ("trainer_state.pt", b"t" * 32),
        ("rng/rank_00000.pt", b"r" * 8),
    ):
        (path / name).write_bytes(data)
    files = {p.relative_to(path).as_posix(): p.stat().st_size for p in path.rglob("*") if p.is_file()}
    meta = {"step": step, "config_hash": "", **({"files": files} if manifest else {})}
    (path / checkpoint.MARKER).write_text(json.dumps(meta))
    return path


@pytest.mark.parametrize(
    "damage,why",
    [
        (lambda p: (p / "model.safetensors").unlink(), "model.safetensors is missing"),
        (
            lambda p: (p / "trainer_state.pt").write_bytes(b"t"),
            r"trainer_state.pt is truncated \(1 bytes, 32 expected\)",
        ),
        (lambda p: (p / checkpoint.MARKER).write_text(""), "meta.json is unreadable or not JSON"),
    ],
    ids=["missing-file", "truncated-file", "empty-meta"],
)
@pytest.mark.parametrize("manifest", [True, False], ids=["listed", "legacy"])
def test_damaged_newest_checkpoint_falls_back_to_the_older_one(tmp_path, caplog, damage, why, manifest):
    root = tmp_path / "run" / "checkpoints"
    fake_checkpoint(root, 1, manifest)
    newest = fake_checkpoint(root, 2, manifest)
    if manifest or "truncated" not in why:
        damage(newest)
    else:  # without the list of sizes only an empty file shows
        (newest / "trainer_state.pt").write_bytes(b"")
        why = r"trainer_state.pt is truncated \(0 bytes, non-empty expected\)"
    if not manifest and "missing" in why:
        why = r"it has no weights"
    assert re.search(why, checkpoint.damage(newest))
    assert checkpoint.latest(root).name == "step_000001"
    with caplog.at_level(logging.WARNING, logger="rft.checkpoint"):
        assert checkpoint.resolve_resume("auto", tmp_path / "run").name == "step_000001"
    assert "skipping the damaged checkpoint" in caplog.text and "step_000002" in caplog.text
    with pytest.raises(ConfigError, match=r"is damaged: .*Pass resume=.*step_000001"):
        checkpoint.resolve_resume(str(newest), tmp_path / "run")


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path):
    root = tmp_path / "run" / "checkpoints"
    (fake_checkpoint(root, 1) / "model.safetensors").unlink()
    with pytest.raises(
        ConfigError, match="every checkpoint in .* is damaged .*step_000001: model.safetensors is missing"
    ):
        checkpoint.resolve_resume("auto", tmp_path / "run")


def test_restore_of_a_corrupt_checkpoint_names_it_and_the_fallback(tmp_path):
    root = tmp_path / "checkpoints"
    fake_checkpoint(root, 1)
    newest = fake_checkpoint(root, 2)

    class Engine:
        rank = 0

        def load_state(self, path):
            raise RuntimeError("PytorchStreamReader failed reading zip archive")

    ckpt = checkpoint.Checkpointer(root, resume_from=newest)
    with pytest.raises(
        checkpoint.CheckpointError,
        match=r"could not restore the checkpoint .*step_000002: RuntimeError: .*mv .* rerun with resume=auto to continue from .*step_000001",
    ):
        ckpt.restore(Engine(), stream=None)


def test_torn_last_metrics_line_is_dropped_on_resume(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train/loss": 1.0}\n{"step": 2, "train/loss": 0.5}\n{"step": 3, "train/lo')
    with caplog.at_level(logging.WARNING, logger="rft.checkpoint"):
        checkpoint.truncate_metrics(path, step=2)
    assert path.read_text() == '{"step": 1, "train/loss": 1.0}\n{"step": 2, "train/loss": 0.5}\n'
    assert "metrics.jsonl:3 is not a JSON object" in caplog.text


def test_checkpoint_folders_of_killed_processes_are_removed(tmp_path):
    root = tmp_path / "checkpoints"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    for pid in (int(dead.stdout), os.getpid(), 1):  # dead, this process, alive (init)
        (root / f"step_000003.tmp-{pid}").mkdir(parents=True)
    removed = checkpoint.remove_unfinished(root, keep_pid=os.getpid())
    assert [p.name for p in removed] == [f"step_000003.tmp-{int(dead.stdout)}"]
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f"step_000003.tmp-{os.getpid()}", "step_000003.tmp-1"]
    )


def test_resume_survives_a_damaged_newest_checkpoint_a_torn_metrics_line_and_a_leftover(tmp_path):
    """End to end: a run killed after its step-3 checkpoint, whose step-3 weights were then truncated, whose
    metrics.jsonl ends in half a line, and which left a `.tmp-<pid>` folder, resumes from step 2 and finishes."""
    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1, keep_last=5), threads=1)
    cfg.method.steps = 3
    run_dir = tmp_path / "run"
    pipeline.run(cfg, run_dir)
    root = run_dir / "checkpoints"
    (run_dir / "results.json").unlink()  # as if killed after the last checkpoint
    Path(cfg.results_csv).unlink()
    weights = root / "step_000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "train/lo')
    (root / "step_000003.tmp-999999999").mkdir()
    cfg.resume = "auto"
    row = pipeline.run(cfg, run_dir)
    assert row.status == "finished" and row.resumed_from.endswith("step_000002")
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert not list(root.glob("*.tmp-*"))
    assert checkpoint.damage(root / "step_000003") is None  # written again, intact


def test_model_cache_folders_are_readable_by_everyone(tmp_path: Path) -> None:
    """`tiny.building` (every tiny preset and tiny_base) leaves 0755 folders and 0644 files, not mkdtemp's 0700."""
    from rft import tiny

    out = tmp_path / "model"
    with tiny.building(out) as tmp:
        assert tmp.stat().st_mode & 0o777 == 0o700  # what mkdtemp gives
        (tmp / "sub").mkdir(mode=0o700)
        (tmp / "sub" / "weights.bin").write_bytes(b"x")
        (tmp / "config.json").write_text("{}")
        (tmp / "config.json").chmod(0o600)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")]}
    assert modes == {".": 0o755, "sub": 0o755, "sub/weights.bin": 0o644, "config.json": 0o644}


def test_a_training_checkpoint_loads_as_model_path(tmp_path: Path) -> None:
    """docs/training.md: `model.path=run_dir/checkpoints/step_N` works; the checkpoint holds the processor."""
    from safetensors.torch import load_file

    cfg = tiny_run_config(tmp_path, method=dataclasses.replace(tiny_run_config(tmp_path).method, steps=1))
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, limit=1))
    pipeline.run(cfg, tmp_path / "run")
    step = tmp_path / "run" / "checkpoints" / "step_000001"
    model, processor = models.load_model(dataclasses.replace(cfg.model, path=str(step)))
    saved = load_file(step / "model.safetensors")
    name, value = next(iter(model.state_dict().items()))
    assert any(torch.equal(value, saved[k]) for k in saved if k.endswith(name.split(".", 1)[-1]))
    assert processor.tokenizer.decode(processor.tokenizer("<answer>left</answer>")["input_ids"]) == (
        "<answer>left</answer>"
    )
    assert models.pixel_budget(processor) == (cfg.model.min_pixels, cfg.model.max_pixels)
    assert checkpoint.damage(step) is None  # the processor files are listed in meta.json like the rest
    for f in [*step.glob("tokenizer*"), step / "vocab.json"]:  # a checkpoint written before this change
        f.unlink(missing_ok=True)
    with pytest.raises(
        models.ModelLoadError, match=r"step_000001 has no tokenizer files .* Copy the tokenizer"
    ):
        models.load_model(dataclasses.replace(cfg.model, path=str(step)))


def test_prompt_longer_than_max_prompt_tokens_fails_before_training(tmp_path: Path) -> None:
    from rft import rollout
    from rft.data.registry import build_task

    cfg = tiny_run_config(tmp_path)
    _, processor = models.load_model(cfg.model)
    task = build_task(cfg.task, seed=0, splits=("train",))
    sample = task.split("train")[0]
    n = rollout.prompt_tokens(processor, task, sample, think=True)
    encoded = rollout.encode_samples(processor, task, [sample], think=True)
    assert n == int(encoded.attention_mask.sum())  # the estimate is the encoded length
    rollout.check_prompt_lengths(processor, task, [sample], True, n)
    method = dataclasses.replace(cfg.method, max_prompt_tokens=n - 1)
    with pytest.raises(ConfigError, match=rf"sample 'train-\d+' is \d+ tokens .* method.max_prompt_tokens={n - 1}; "
                       "raise method.max_prompt_tokens or lower model.max_pixels"):  # fmt: skip
        pipeline.run(dataclasses.replace(cfg, method=method), tmp_path / "run")
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "run" / "results.json").exists()


def test_non_finite_max_grad_norm_is_rejected_by_the_schema() -> None:
    from rft.config import RFTConfig, SFTConfig

    for schema in (RFTConfig, SFTConfig):
        with pytest.raises(
            ConfigError, match="method.max_grad_norm must be finite, got nan; pass a finite number"
        ):
            schema(max_grad_norm=float("nan"))


# ---------------------------------------------------------------------------------------------------------------
# Round three: the values, files, folders and overrides nobody had listed (docs/bad_inputs.md rows 86-)
# ---------------------------------------------------------------------------------------------------------------


def _configs():
    from rft.config import EvalConfig, LoggerConfig, RFTConfig, TaskConfig

    return {
        "rollout_batch_size=0": (
            lambda: RFTConfig(rollout_batch_size=0, group_size=4, micro_batch_size=4),
            "method.rollout_batch_size must be > 0, got 0; e.g. method.rollout_batch_size=16",
        ),
        "threads=-1": (
            lambda: RunConfig(threads=-1),
            r"threads must be >= 0 \(0 = torch's default\), got -1",
        ),
        "train_size=-1": (lambda: TaskConfig(train_size=-1), "task.train_size must be > 0, got -1"),
        "test_size=0": (lambda: TaskConfig(test_size=0), "task.test_size must be > 0, got 0"),
        "image_size=0": (lambda: TaskConfig(image_size=0), "task.image_size must be >= 28 pixels, got 0"),
        "first_n=-1": (lambda: TaskConfig(first_n=-1), r"task.first_n must be >= 0 \(0 = all rows\), got -1"),
        "eval.batch_size=0": (lambda: EvalConfig(batch_size=0), "eval.batch_size must be > 0, got 0"),
        "eval.limit=-1": (
            lambda: EvalConfig(limit=-1),
            r"eval.limit must be >= 0 \(0 = full split\), got -1",
        ),
        "steps=0": (lambda: RFTConfig(steps=0), "method.steps must be > 0, got 0"),
        "temperature=0": (lambda: RFTConfig(temperature=0.0), "method.temperature must be > 0, got 0.0"),
        "clip_eps<0": (lambda: RFTConfig(clip_eps=-0.1), "method.clip_eps must be > 0, got -0.1"),
        "device=tpu": (lambda: RunConfig(device="tpu"), "device='tpu' is not one of auto, cpu, cuda, cuda:N"),
        "logger.backend=foo": (
            lambda: LoggerConfig(backend="foo"),
            "logger.backend='foo' must be wandb or none",
        ),
        "min_pixels=0": (
            lambda: ModelConfig(min_pixels=0),
            r"model.min_pixels \(0\) must be > 0 and <= model.max_pixels",
        ),
    }


@pytest.mark.parametrize("case", list(_configs()))
def test_round_three_config_values(case):
    make, needle = _configs()[case]
    with pytest.raises(ConfigError, match=needle):
        make()


@pytest.mark.parametrize(
    "override,needle",
    [
        ("task=fgvc_synthh", "Could not find 'task/fgvc_synthh'"),
        ("method=", "Could not find 'method/'"),
        ("mehtod.lr=1", "Could not override 'mehtod.lr'"),
        ("method.lr=", "Error merging override method.lr="),
        ("method.group_size=2.5", "Error merging override method.group_size=2.5"),
        ("seed=abc", "Error merging override seed=abc"),
        ("logger.tags=notalist", "Error merging override logger.tags=notalist"),
        ("dist=zero9", "Could not find 'dist/zero9'"),
    ],
)
def test_round_three_command_line_typos_fail_at_compose(override, needle):
    from hydra import compose, initialize_config_dir

    import experiments.schemas  # noqa: F401  (registers the schemas in Hydra's ConfigStore)

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        with pytest.raises(Exception, match=re.escape(needle)):
            compose("config", overrides=[override])


def test_unknown_eval_split_is_a_data_error_before_the_model_loads(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    cfg = tiny_run_config(tmp_path, "rft")
    cfg.eval.split = "dev"
    with pytest.raises(DataError, match=r"has no split 'dev'; it has \['test', 'train'\]: pass eval.split="):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists()


def test_resume_pointing_at_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"resume='.*notes.txt' holds no complete checkpoint"):
        checkpoint.resolve_resume(str(tmp_path / "notes.txt"), tmp_path / "run")


def _banner(root: Path, case: str) -> None:
    train, image = root / "train.jsonl", root / "images"
    if case == "empty":
        train.write_text("")
    elif case == "bom":
        train.write_bytes(b"\xef\xbb\xbf" + train.read_bytes())
    elif case == "crlf":
        train.write_bytes(train.read_bytes().replace(b"\n", b"\r\n"))
    elif case == "blank_lines":
        train.write_text(train.read_text() + "\n\n")
    elif case == "list_line":
        train.write_text(train.read_text() + "[1, 2]\n")
    elif case == "not_json":
        train.write_text(train.read_text() + "{oops\n")
    elif case == "null_question":
        row = {"image": "images/train_0.jpg", "question": None, "options": ["x", "y"], "answer": "x"}
        train.write_text(train.read_text() + json.dumps(row) + "\n")
    elif case == "image_is_folder":
        row = {"image": "images", "question": "q", "options": ["x", "y"], "answer": "x"}
        train.write_text(train.read_text() + json.dumps(row) + "\n")
    elif case == "text_image":
        (image / "train_0.jpg").write_text("hello, not an image")
    elif case == "zero_byte_image":
        (image / "train_1.png").write_bytes(b"")


@pytest.mark.parametrize(
    "case,needle",
    [
        ("bom", None),
        ("crlf", None),
        ("blank_lines", None),
        ("empty", r"banner split 'train' \(.*train.jsonl\) has no rows"),
        ("list_line", r"train.jsonl:7: a row must be a JSON object, got list"),
        ("not_json", r"train.jsonl:7: not valid JSON \(Expecting property name"),
        (
            "null_question",
            r"train.jsonl:7: missing field 'question'; every row needs image, question and answer",
        ),
        ("image_is_folder", r"train.jsonl:7: image .*images does not exist; fix the 'image' path"),
        (
            "text_image",
            r"image .*train_0.jpg is not a readable image \(cannot identify .*\); re-download or replace",
        ),
        ("zero_byte_image", r"image .*train_1.png is not a readable image .*; re-download or replace it"),
    ],
)
def test_round_three_banner_files(tmp_path, case, needle):
    from rft.config import TaskConfig
    from rft.data.images import verify_images
    from rft.data.registry import build_task
    from tests.test_datasets import write_banner

    root = write_banner(tmp_path / "banner")
    _banner(root, case)

    def load():
        task = build_task(TaskConfig(name="banner", root=str(root)), splits=("train", "test"))
        verify_images(task.split("train") + task.split("test"))
        return task

    if needle is None:
        assert len(load().split("train")) == 6
        return
    with pytest.raises(DataError, match=needle):
        load()


@pytest.fixture(scope="module")
def tiny_model_folder() -> Path:
    return Path(models.resolve_model_dir(ModelConfig(**TINY_MODEL)))


@pytest.mark.parametrize(
    "case,needle",
    [
        (
            "truncated_config",
            r"config.json is not valid JSON \(Unterminated .*\); it is damaged .*copy the model",
        ),
        ("config_not_an_object", r"config.json is not a JSON object; it is damaged"),
        (
            "truncated_safetensors",
            r"could not read the weights in .*: SafetensorError: .*copy the model folder",
        ),
        ("no_safetensors", r"could not read the weights in .*: OSError: .*copy the model folder again"),
        ("only_config_json", r"has no tokenizer files"),
    ],
)
def test_round_three_damaged_model_folders(tmp_path, tiny_model_folder, case, needle):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_folder, folder)
    config, weights = folder / "config.json", folder / "model.safetensors"
    if case == "truncated_config":
        config.write_text(config.read_text()[:40])
    elif case == "config_not_an_object":
        config.write_text("[]")
    elif case == "truncated_safetensors":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif case == "no_safetensors":
        weights.unlink()
    elif case == "only_config_json":
        for path in folder.iterdir():
            if path.name != "config.json":
                path.unlink()
    with pytest.raises(models.ModelLoadError, match=needle):
        models.load_model(ModelConfig(**{**TINY_MODEL, "path": str(folder)}), str(folder))


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_seed_the_generators_refuse_fails_at_compose(seed):
    with pytest.raises(ConfigError, match=rf"seed={seed} is outside \[0, 2\*\*32\)"):
        RunConfig(seed=seed)


def test_a_decompression_bomb_is_one_data_error(tmp_path, monkeypatch):
    from PIL import Image

    from rft.data.images import LazyImage

    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels > 2 x the limit: PIL refuses to decode
    with pytest.raises(DataError, match="too large to decode safely.*replace it with a downscaled copy"):
        LazyImage(path, str(path)).check()
