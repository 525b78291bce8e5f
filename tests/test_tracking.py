"""Tests for rft.files, rft.results, rft.redaction and rft.tracking: atomic files, the results table and its
typed row, redaction, the Tracker (with and without W&B), timing and provenance.

W&B runs are offline with every wandb folder (run, data/staging, cache, config) inside ``tmp_path``; nothing
touches the network or the home directory.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from rft.files import atomic_write_json, atomic_write_text
from rft.redaction import redact
from rft.results import ResultRow, append_result_row, git_commit, package_versions, read_results
from rft.tracking import PhaseTimer, Tracker, flatten, resolve_wandb_mode

SECRET = "sk-planted-secret-0123456789abcdef"
AXES = {"task": "sat_synth", "method": "grpo", "model": "tiny-qwen2vl", "reward": "acc_fmt", "budget": "b64"}


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Offline W&B with no credentials, every wandb folder under tmp_path; returns the staging data dir."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    data_dir = tmp_path / "wandb-data"
    monkeypatch.setenv("WANDB_DATA_DIR", str(data_dir))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    return data_dir


def make_tracker(run_dir: Path, **overrides: object) -> Tracker:
    kwargs: dict[str, object] = {
        "enabled": True,
        "backend": "none",
        "project": "rft-test",
        "name": "unit",
        "mode": "auto",
        "config": {"method": {"lr": 1e-5, "max_new_tokens": 64}, "logger": {"mode": "auto"}},
        "axes": {**AXES, "seed": 0},
        "tags": ["test"],
    }
    kwargs.update(overrides)
    return Tracker(run_dir, **kwargs)  # type: ignore[arg-type]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def all_bytes_under(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]


# --- atomic files -----------------------------------------------------------------------------------------


def test_atomic_write_text_creates_parents_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "out.txt"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]  # no temp file left behind
    assert path.stat().st_mode & 0o777 == 0o644


def test_atomic_write_text_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, "bad \udcff surrogate")  # fails while writing the temp file
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_json_round_trip_with_non_finite(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"acc": 0.5, "loss": math.nan, "up": math.inf, "down": -math.inf, "p": Path("x")})
    assert json.loads(path.read_text()) == {"acc": 0.5, "loss": "nan", "up": "inf", "down": "-inf", "p": "x"}


# --- results table ----------------------------------------------------------------------------------------


def test_append_result_row_column_union_keeps_old_rows(tmp_path: Path) -> None:
    table = tmp_path / "sub" / "results.csv"
    append_result_row(table, {"run": "a", "acc": 0.5})
    append_result_row(table, {"acc": 0.7, "run": "b", "f1": 0.6})
    append_result_row(table, {"run": "c"})
    with open(table, newline="") as f:
        header = next(csv.reader(f))
    assert header == ["run", "acc", "f1"]
    assert read_results(table) == [
        {"run": "a", "acc": "0.5", "f1": ""},
        {"run": "b", "acc": "0.7", "f1": "0.6"},
        {"run": "c", "acc": "", "f1": ""},
    ]
    assert (tmp_path / "sub" / "results.csv.lock").exists()


def test_append_result_row_encodes_lists_dicts_and_none(tmp_path: Path) -> None:
    table = tmp_path / "results.csv"
    append_result_row(
        table, {"tags": ["a", "b,c"], "cfg": {"lr": 1e-5, "k": [1, 2]}, "note": None, "ok": True}
    )
    (row,) = read_results(table)
    assert json.loads(row["tags"]) == ["a", "b,c"]
    assert json.loads(row["cfg"]) == {"lr": 1e-5, "k": [1, 2]}
    assert row["note"] == ""
    assert row["ok"] == "True"


def test_read_results_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_results(tmp_path / "nope.csv") == []


def _append_worker(table: str, worker: int, n_rows: int) -> None:
    for i in range(n_rows):
        # Each worker brings its own extra column, so the schema grows while the others append.
        append_result_row(
            Path(table), {"worker": worker, "i": i, f"extra_{worker}": f"w{worker}-{i}", "l": [i]}
        )


def test_append_result_row_concurrent_processes(tmp_path: Path) -> None:
    table = tmp_path / "results.csv"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(str(table), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    rows = read_results(table)
    assert len(rows) == 100
    assert {(r["worker"], r["i"]) for r in rows} == {(str(w), str(i)) for w in range(4) for i in range(25)}
    for r in rows:
        assert set(r) == {"worker", "i", "l", "extra_0", "extra_1", "extra_2", "extra_3"}
        w = r["worker"]
        assert r[f"extra_{w}"] == f"w{w}-{r['i']}"
        assert all(r[f"extra_{o}"] == "" for o in range(4) if str(o) != w)
        assert json.loads(r["l"]) == [int(r["i"])]
    # Per worker, rows keep their append order.
    for w in range(4):
        assert [int(r["i"]) for r in rows if r["worker"] == str(w)] == list(range(25))


def full_row(**overrides: object) -> ResultRow:
    """A finished GRPO row with every field set, as rft.pipeline writes it."""
    fields: dict[str, object] = {
        "run_id": "rft-f0", "status": "finished", "task": "sat_synth", "method": "rft", "model": "tiny",
        "reward": "acc_format", "budget": "shots:4", "seed": 2, "n_train": 64, "min_pixels": 784,
        "max_pixels": 12544, "think": False, "loss_agg": "seq-mean-token-mean", "group_size": 4,
        "max_new_tokens": 24, "dist": "none", "world_size": 1, "run_dir": "/out/rft-f0", "resumed_from": None,
        "git_commit": "abc123-dirty", "error": None, "last_checkpoint": None, "train_s": 1.5, "eval_s": 0.25,
        "wall_s": 2.0, "finished_at": "2026-11-27T03:30:56+00:00",
        "metrics": {"eval/accuracy": 0.75, "eval/n": 4.0, "train/final_loss": math.nan, "perf/mean_step_s": 0.5},
    }  # fmt: skip
    fields.update(overrides)
    return ResultRow(**fields)  # type: ignore[arg-type]


def test_result_row_round_trips_through_the_csv_with_types(tmp_path: Path) -> None:
    table = tmp_path / "results.csv"
    row = full_row()
    failed = ResultRow(run_id="sft-f1", status="failed", task="sat_synth", method="sft", seed=1, error="E: x")
    append_result_row(table, row)
    append_result_row(table, failed)
    first, second = (ResultRow.from_record(r) for r in read_results(table))
    assert first.think is False and isinstance(first.think, bool)
    assert (first.seed, first.n_train, first.group_size, first.world_size) == (2, 64, 4, 1)
    assert isinstance(first.seed, int) and isinstance(first.wall_s, float) and first.train_s == 1.5
    assert math.isnan(first.metrics.pop("train/final_loss"))
    assert first == full_row(metrics={"eval/accuracy": 0.75, "eval/n": 4.0, "perf/mean_step_s": 0.5})
    # Missing fields and metrics read as None, whichever row brought the column.
    assert second == failed
    assert second.think is None and second.n_train is None and second.metrics.get("eval/accuracy") is None
    # The CSV keeps today's column names: the fixed fields, then `section/name` metrics.
    with open(table, newline="") as f:
        header = next(csv.reader(f))
    assert header[:8] == ["run_id", "status", "task", "method", "model", "reward", "budget", "seed"]
    assert header[-4:] == ["eval/accuracy", "eval/n", "train/final_loss", "perf/mean_step_s"]


def test_result_row_from_results_json_and_old_csv_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {**full_row(think=True).to_record(), "versions": {"torch": "2.13.0"}})
    parsed = ResultRow.from_record(json.loads(path.read_text()))
    assert parsed.think is True and parsed.seed == 2 and math.isnan(parsed.metrics["train/final_loss"])
    # A row written before the typed row: "" for non-GRPO fields, some columns absent, "4.0" counts.
    old = {"run_id": "a", "status": "finished", "think": "True", "group_size": "", "loss_agg": "", "seed": "0",
           "n_train": "4.0", "eval/accuracy": "0.5", "eval_before/accuracy": ""}  # fmt: skip
    row = ResultRow.from_record(old)
    assert (row.think, row.group_size, row.loss_agg, row.seed, row.n_train) == (True, None, None, 0, 4)
    assert row.metrics == {"eval/accuracy": 0.5} and row.dist is None


def test_result_row_rejects_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="'seed' holds 'two'"):
        ResultRow.from_record({"run_id": "a", "status": "finished", "seed": "two"})
    with pytest.raises(ValueError, match="'think' holds 'maybe'"):
        ResultRow.from_record({"run_id": "a", "status": "finished", "think": "maybe"})
    with pytest.raises(ValueError, match="'eval/accuracy' holds 'high'"):
        ResultRow.from_record({"run_id": "a", "status": "finished", "eval/accuracy": "high"})
    with pytest.raises(ValueError, match="needs 'status'"):
        ResultRow.from_record({"run_id": "a"})
    with pytest.raises(ValueError, match="status 'done' is unknown"):
        ResultRow(run_id="a", status="done")
    with pytest.raises(ValueError, match="section/name"):
        ResultRow(run_id="a", status="finished", metrics={"accuracy": 1.0})


def test_append_result_row_redacts_a_typed_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    table = tmp_path / "results.csv"
    append_result_row(table, full_row(status="failed", error=f"OSError: 401 for token {SECRET}"))
    (row,) = read_results(table)
    assert row["error"] == "OSError: 401 for token ***"


# --- redaction --------------------------------------------------------------------------------------------


def test_redact_by_key_name_at_any_depth() -> None:
    config = {
        "api_key": "k1",
        "nested": {"OpenAI-API-Key": "k2", "list": [{"hf_token": "t"}, {"password": "p", "user": "u"}]},
        "client_secret": {"deep": "x"},
        "token": "t2",
        "unset_token": None,
        "max_new_tokens": 64,
        "tokenizer": "qwen",
        "think_tokens": [1, 2],
    }
    assert redact(config) == {
        "api_key": "***",
        "nested": {"OpenAI-API-Key": "***", "list": [{"hf_token": "***"}, {"password": "***", "user": "u"}]},
        "client_secret": "***",
        "token": "***",
        "unset_token": None,
        "max_new_tokens": 64,
        "tokenizer": "qwen",
        "think_tokens": [1, 2],
    }
    assert config["api_key"] == "k1"  # the input is not mutated


def test_redact_env_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", "hf_short")
    monkeypatch.setenv("OPENAI_API_KEY", "")
    obj = {"a": SECRET, "b": [SECRET, "x"], "c": ("hf_short",), "url": f"https://u:{SECRET}@host", "d": ""}
    assert redact(obj) == {"a": "***", "b": ["***", "x"], "c": ("***",), "url": "https://u:***@host", "d": ""}


def test_flatten() -> None:
    assert flatten({"eval": {"acc": 1, "by": {"x": 2}}, "n": 3, "empty": {}}) == {
        "eval/acc": 1,
        "eval/by/x": 2,
        "n": 3,
        "empty": {},
    }


# --- W&B mode resolution ----------------------------------------------------------------------------------


def test_resolve_wandb_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    netrc_file = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc_file))
    assert resolve_wandb_mode("online") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"
    assert resolve_wandb_mode("auto") == "offline"  # no key anywhere
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password abc123\n")
    netrc_file.chmod(0o600)
    assert resolve_wandb_mode("auto") == "online"
    netrc_file.write_text("machine example.com login u password p\n")
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"
    with pytest.raises(ValueError, match="unknown"):
        resolve_wandb_mode("sometimes")


# --- Tracker without W&B ----------------------------------------------------------------------------------


def test_tracker_backend_none_writes_metrics_and_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # any `import wandb` would now raise ImportError
    run_dir = tmp_path / "run"
    tracker = make_tracker(run_dir, backend="none")
    assert tracker.metrics_path.read_text() == ""  # the contract file exists from the start
    tracker.log(1, {"train/loss": 0.5, "timing/rollout_s": 1.25})
    tracker.log(2, {"train/loss": math.nan, "train/grad_norm": math.inf, "train/neg": -math.inf})
    rows = [{"prompt": "What?", "completion": "<answer>A</answer>", "reward/acc": 1.0, "advantage": 0.5}]
    image = Image.new("RGB", (8, 8))
    tracker.log_samples(2, rows * 2, images=[image, image])
    tracker.summary({"eval": {"acc": 1.0}})
    tracker.finish()
    tracker.finish()

    assert read_jsonl(run_dir / "metrics.jsonl") == [
        {"step": 1, "train/loss": 0.5, "timing/rollout_s": 1.25},
        {"step": 2, "train/loss": "nan", "train/grad_norm": "inf", "train/neg": "-inf"},
    ]
    assert read_jsonl(run_dir / "samples" / "step_000002.jsonl") == rows * 2
    assert tracker.wandb_dir is None
    assert not (run_dir / "wandb").exists()


def test_tracker_mode_disabled_skips_wandb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    tracker = make_tracker(tmp_path / "run", backend="wandb", mode="disabled")
    tracker.log(0, {"train/loss": 1.0})
    tracker.finish()
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl") == [{"step": 0, "train/loss": 1.0}]
    assert not (tmp_path / "run" / "wandb").exists()


def test_tracker_disabled_rank_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    run_dir = tmp_path / "run"
    with make_tracker(run_dir, enabled=False, backend="wandb", mode="online") as tracker:
        tracker.log(0, {"train/loss": 1.0})
        tracker.log_samples(0, [{"prompt": "p"}], images=[Image.new("RGB", (4, 4))])
        tracker.summary({"eval/acc": 1.0})
    assert tracker.wandb_dir is None
    assert not run_dir.exists()


def test_tracker_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="backend"):
        make_tracker(tmp_path, backend="tensorboard")
    with pytest.raises(ValueError, match="cfg"):
        make_tracker(tmp_path, axes={"cfg": 1})
    tracker = make_tracker(tmp_path / "run")
    with pytest.raises(ValueError, match="step"):
        tracker.log(0, {"step": 1.0})
    with pytest.raises(ValueError, match="one per row"):
        tracker.log_samples(0, [{"a": 1}, {"a": 2}], images=[Image.new("RGB", (4, 4))])


def test_tracker_redacts_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    tracker = make_tracker(tmp_path / "run")
    tracker.log_samples(3, [{"prompt": "p", "completion": f"leak {SECRET}", "api_key": "abc"}])
    assert read_jsonl(tmp_path / "run" / "samples" / "step_000003.jsonl") == [
        {"prompt": "p", "completion": "leak ***", "api_key": "***"}
    ]


# --- Tracker with offline W&B -----------------------------------------------------------------------------


def test_tracker_wandb_offline(tmp_path: Path, wandb_env: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_dir = tmp_path / "run"
    caplog.set_level(logging.INFO, logger="rft.tracking")
    start = time.perf_counter()
    with make_tracker(run_dir, backend="wandb", mode="auto", group="sweep-1") as tracker:
        wandb_dir = tracker.wandb_dir
        assert wandb_dir is not None
        assert wandb_dir.parent == run_dir / "wandb"
        assert wandb_dir.name.startswith("offline-run-")
        tracker.log(1, {"train/loss": 0.25, "train/nan": math.nan})
        red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
        rows = [
            {
                "prompt": "Which aircraft?",
                "completion": "<answer>A320</answer>",
                "reward/acc": 1.0,
                "adv": 0.7,
            },
            {
                "prompt": "Which aircraft?",
                "completion": "<answer>B737</answer>",
                "reward/acc": 0.0,
                "adv": -0.7,
            },
            {"prompt": "Count?", "completion": "3", "reward/acc": None, "extra": [1, 2]},
        ]
        tracker.log_samples(1, rows, images=[red, red, blue])
        tracker.log_samples(2, [])  # an empty batch writes an empty file and no table
        tracker.summary({"eval": {"acc": 0.5, "n": 3}})
    assert time.perf_counter() - start < 30
    tracker.finish()  # idempotent after the context manager finished it
    assert tracker.wandb_dir == wandb_dir

    # The sync hint is logged once, with the real folder.
    hints = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
    assert hints == [f"W&B is offline; upload later with: wandb sync {wandb_dir}"]

    # Local contract files.
    assert read_jsonl(run_dir / "metrics.jsonl") == [{"step": 1, "train/loss": 0.25, "train/nan": "nan"}]
    assert len(read_jsonl(run_dir / "samples" / "step_000001.jsonl")) == 3
    assert (run_dir / "samples" / "step_000002.jsonl").read_text() == ""

    # What wandb 0.31 writes offline: the binary log plus files/media/table/*.table.json.
    (log_file,) = wandb_dir.glob("run-*.wandb")
    log_bytes = log_file.read_bytes()
    for axis, value in AXES.items():  # axes are top-level config keys, next to the full config under "cfg"
        assert axis.encode() in log_bytes
        assert json.dumps(value).encode() in log_bytes
    for needle in (b"\x03cfg", b"run_table", b"sweep-1"):
        assert needle in log_bytes
    (table_file,) = (wandb_dir / "files" / "media" / "table").glob("completions_*.table.json")
    table = json.loads(table_file.read_text())
    assert table["columns"] == ["prompt", "completion", "reward/acc", "adv", "extra", "image"]
    assert [row[1] for row in table["data"]] == [r["completion"] for r in rows]
    assert table["data"][2][4] == "[1, 2]"

    # The full table (with image-file cells) and the PNGs are staged for the run_table artifact.
    staged = [p for p in (wandb_env / "artifacts" / "staging").rglob("*") if p.is_file()]
    staged_tables = [json.loads(p.read_bytes()) for p in staged if p.read_bytes()[:1] == b"{"]
    staged_tables = [t for t in staged_tables if t.get("_type") == "table"]
    assert staged_tables
    assert all(t == staged_tables[0] for t in staged_tables)  # 0.31 stages identical copies
    assert [row[-1]["_type"] for row in staged_tables[0]["data"]] == ["image-file"] * 3
    pngs = [p for p in staged if p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"]
    assert len(pngs) == 2  # one per distinct image, although three rows reference them


def test_tracker_wandb_never_writes_planted_secret(
    tmp_path: Path, wandb_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # auto mode still follows WANDB_MODE=offline
    run_dir = tmp_path / "run"
    config = {"hub": {"repo": "org/model", "push_token": "hf_other"}, "copied_key": SECRET, "urls": [SECRET]}
    with make_tracker(run_dir, backend="wandb", mode="auto", config=config) as tracker:
        wandb_dir = tracker.wandb_dir
        assert wandb_dir is not None
        assert wandb_dir.name.startswith("offline-run-")
        tracker.log(0, {"train/loss": 1.0})
        tracker.log_samples(0, [{"prompt": SECRET, "completion": "c"}])
        tracker.summary({"note": SECRET, "db_password": "hunter2"})
    files = all_bytes_under(tmp_path)
    assert any(path.suffix == ".wandb" for path, _ in files)
    for secret in (SECRET, "hf_other", "hunter2"):
        leaks = [path for path, data in files if secret.encode() in data]
        assert leaks == [], f"{secret} leaked into {leaks}"
    (log_file,) = wandb_dir.glob("run-*.wandb")
    assert b"***" in log_file.read_bytes()  # the redacted values did reach the W&B config


# --- timing and provenance --------------------------------------------------------------------------------


def test_phase_timer_accumulates_and_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.5, 10.0, 10.25, 20.0, 23.0])
    monkeypatch.setattr("rft.tracking.time.perf_counter", lambda: next(clock))
    syncs = []
    timer = PhaseTimer(sync=lambda: syncs.append(1))
    with timer.phase("rollout"):
        pass
    with timer.phase("rollout"):
        pass
    with pytest.raises(RuntimeError), timer.phase("update"):
        raise RuntimeError("still timed")
    assert timer.pop() == {"timing/rollout_s": 1.75, "timing/update_s": 3.0}
    assert timer.pop() == {}
    assert len(syncs) == 6


def test_phase_timer_real_clock() -> None:
    timer = PhaseTimer()
    with timer.phase("sleep"):
        time.sleep(0.01)
    (seconds,) = timer.pop().values()
    assert 0.01 <= seconds < 1.0


def test_package_versions() -> None:
    versions = package_versions()
    assert list(versions) == [
        "torch",
        "transformers",
        "peft",
        "deepspeed",
        "wandb",
        "datasets",
        "hydra-core",
        "omegaconf",
        "accelerate",
        "pillow",
    ]
    assert versions["pillow"] != "absent"
    assert versions["wandb"] != "absent"
    assert all(isinstance(v, str) and v for v in versions.values())


def test_git_commit_outside_repo_is_unknown(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "does-not-exist") == "unknown"


def test_git_commit_missing_git_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_commit(tmp_path) == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_commit_clean_and_dirty(tmp_path: Path) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"]

    def git(*args: str) -> None:
        subprocess.run(["git", *ident, *args], cwd=tmp_path, env=env, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f.txt").write_text("1")
    git("add", "f.txt")
    git("commit", "-q", "-m", "init")
    commit = git_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    (tmp_path / "f.txt").write_text("2")
    assert git_commit(tmp_path) == f"{commit}-dirty"
