"""Training budgets: one length rule for both methods (`rft.schedule`), the schedule grid scored on val and test,
and what every result row records (`train/epochs`, `train/samples_seen`, `train/completions`, `train/tokens`,
`gpu_hours`). The report side (tables 1 and 1b at the chosen and at equal lengths) is in tests/test_report.py.

    python -m pytest -q tests/test_schedule.py
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from rft import pipeline, schedule
from rft.config import ConfigError, RFTConfig, ScheduleConfig, SFTConfig, ZeroShotConfig, validate
from rft.schedule import Point


def cfg_with(tiny_cfg, kind: str, **schedule_fields):
    cfg = tiny_cfg(kind)
    return dataclasses.replace(cfg, schedule=ScheduleConfig(**schedule_fields))


# --- the rule ------------------------------------------------------------------------------------------------


def test_equal_passes_are_equal_steps_when_both_methods_draw_as_many_examples_per_step(tiny_cfg):
    """GRPO with 16 prompts per step and SFT with batch 16 reach E passes over n examples in the same steps."""
    grid = dict(epochs=[1, 2, 4, 8], max_steps=0)
    rft = dataclasses.replace(
        cfg_with(tiny_cfg, "rft", **grid), method=RFTConfig(rollout_batch_size=128, group_size=8)
    )
    sft = dataclasses.replace(cfg_with(tiny_cfg, "sft", **grid), method=SFTConfig(batch_size=16))
    for n in (100, 400, 1600, 4096):
        assert schedule.grid(rft, n) == schedule.grid(sft, n)
    # FGVC at 1 shot: 100 images, ceil(E x 100 / 16) steps
    assert schedule.grid(rft, 100) == [Point(1, 7), Point(2, 13), Point(4, 25), Point(8, 50)]


def test_grid_caps_at_max_steps_but_always_keeps_its_first_point(tiny_cfg):
    cfg = dataclasses.replace(
        cfg_with(tiny_cfg, "rft", epochs=[1, 2, 4, 8, 16, 32, 64, 128], max_steps=200),
        method=RFTConfig(rollout_batch_size=128, group_size=8),
    )
    assert [p.steps for p in schedule.grid(cfg, 100)] == [7, 13, 25, 50, 100, 200]
    assert [p.steps for p in schedule.grid(cfg, 16)] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert schedule.grid(cfg, 4096) == [Point(1, 256)]  # one pass is longer than the cap: it still runs
    assert schedule.total_steps(cfg, 1024) == 128  # 2 passes; 4 would be 256 > 200


def test_lengths_that_round_to_one_step_count_keep_the_shortest(tiny_cfg):
    cfg = cfg_with(tiny_cfg, "rft", epochs=[0.5, 1, 1.01], max_steps=0)  # 2 prompts per step
    assert schedule.grid(cfg, 8) == [Point(0.5, 2), Point(1, 4), Point(1.01, 5)]
    assert schedule.grid(cfg, 2) == [Point(0.5, 1), Point(1.01, 2)]  # 1 pass is 1 step too: dropped


def test_without_a_grid_each_method_keeps_its_own_length(tiny_cfg):
    rft, sft = tiny_cfg("rft"), tiny_cfg("sft")
    assert schedule.grid(rft, 8) == [Point(rft.method.steps * 2 / 8, rft.method.steps)]
    assert schedule.grid(sft, 8) == [Point(1.0, 2)]  # 1 epoch of 8 at batch 4
    zero = dataclasses.replace(rft, method=ZeroShotConfig())
    assert schedule.grid(zero, 8) == [] and schedule.total_steps(zero, 0) == 0


def test_budget_record_counts_passes_examples_and_completions(tiny_cfg):
    rft = tiny_cfg("rft")  # 2 prompts x G 4 per step
    assert schedule.budget_record(rft, 8, 6) == {
        "train/epochs": 1.5,
        "train/samples_seen": 12.0,
        "train/completions": 48.0,
    }
    sft = tiny_cfg("sft")  # batch 4
    assert schedule.budget_record(sft, 8, 6) == {
        "train/epochs": 3.0,
        "train/samples_seen": 24.0,
        "train/completions": 0.0,
    }


# --- config rules ----------------------------------------------------------------------------------------------


def test_a_grid_refuses_an_lr_that_depends_on_the_run_length(tiny_cfg):
    cfg = cfg_with(tiny_cfg, "sft", epochs=[1, 2])
    with pytest.raises(ConfigError, match="method.lr_schedule=constant"):
        validate(cfg)
    validate(dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, lr_schedule="constant")))
    validate(cfg_with(tiny_cfg, "sft", epochs=[2]))  # one point: the run is that length, cosine is fine


def test_a_grid_never_selects_on_the_split_it_reports(tiny_cfg):
    with pytest.raises(ConfigError, match="select on another split"):
        validate(cfg_with(tiny_cfg, "rft", epochs=[1, 2], select_split="test"))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (dict(epochs=[0]), "positive numbers of passes"),
        (dict(epochs=[1, 1]), "lists a length twice"),
        (dict(max_steps=-1), "max_steps must be >= 0"),
        (dict(select_limit=-3), "select_limit must be >= 0"),
    ],
)
def test_bad_schedule_values_fail_with_the_key(fields, match):
    with pytest.raises(ConfigError, match=match):
        ScheduleConfig(**fields)


# --- runs ------------------------------------------------------------------------------------------------------


def constant_sft(cfg):
    return dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, lr_schedule="constant"))


@pytest.mark.slow
def test_a_grid_run_records_every_point_and_what_the_run_got(tiny_cfg, tmp_path):
    """Points at 1, 2 and 4 passes: val and test scores at each, the row's budget columns, the measured cost."""
    cfg = constant_sft(cfg_with(tiny_cfg, "sft", epochs=[1, 2, 4]))  # 8 examples, batch 4: 2, 4, 8 steps
    row = pipeline.run(cfg, tmp_path / "run")
    assert row.schedule == "epochs:1,2,4"
    for e, steps in (("1", 2), ("2", 4), ("4", 8)):
        assert row.metrics[f"grid_e{e}/steps"] == steps
        assert 0 <= row.metrics[f"grid_e{e}/val_accuracy"] <= 1
        assert 0 <= row.metrics[f"grid_e{e}/test_accuracy"] <= 1
    assert row.metrics["grid_e4/test_accuracy"] == row.metrics["eval/accuracy"]  # the last point is the end
    assert row.metrics["train/epochs"] == 4.0 and row.metrics["train/samples_seen"] == 32.0
    assert row.metrics["train/completions"] == 0.0
    # target tokens the loss saw: every SFT target ends with the end-of-turn token, so > 1 per example
    assert row.metrics["train/tokens"] > row.metrics["train/samples_seen"]
    assert row.metrics["grid_e1/tokens"] < row.metrics["grid_e2/tokens"] < row.metrics["train/tokens"]
    assert row.gpu_hours == pytest.approx(row.wall_s / 3600, rel=1e-3)
    lines = [json.loads(x) for x in (tmp_path / "run" / pipeline.GRID_FILE).read_text().splitlines()]
    assert [
        line.get("grid_e1/steps", line.get("grid_e2/steps", line.get("grid_e4/steps"))) for line in lines
    ] == [
        2,
        4,
        8,
    ]
    csv_row = (tmp_path / "results.csv").read_text().splitlines()
    header = csv_row[0].split(",")
    for column in ("train/epochs", "train/samples_seen", "train/completions", "train/tokens", "gpu_hours"):
        assert column in header


@pytest.mark.slow
def test_scoring_a_grid_point_does_not_change_the_run(tiny_cfg, tmp_path):
    """The same GRPO run with and without a grid point half-way trains the same weights (the scoring draws no
    random numbers from the run), and its half-way score is the score of a run that stops there."""
    base = cfg_with(tiny_cfg, "rft", epochs=[1, 2])  # 8 prompts, 2 per step: 4 and 8 steps
    short = cfg_with(tiny_cfg, "rft", epochs=[1])
    plain = dataclasses.replace(
        tiny_cfg("rft"), method=dataclasses.replace(tiny_cfg("rft").method, steps=8)
    )  # 8 steps, no grid
    rows = {
        name: pipeline.run(cfg, tmp_path / name)
        for name, cfg in (("grid", base), ("short", short), ("plain", plain))
    }

    def predictions(name: str) -> list[str]:
        return [
            json.loads(x)["completion"]
            for x in (tmp_path / name / "eval_predictions.jsonl").read_text().splitlines()
        ]

    assert predictions("grid") == predictions("plain")  # the same model at the end, token for token
    assert rows["grid"].metrics["eval/accuracy"] == rows["plain"].metrics["eval/accuracy"]
    assert rows["grid"].metrics["train/tokens"] == rows["plain"].metrics["train/tokens"]
    assert rows["grid"].metrics["grid_e1/test_accuracy"] == rows["short"].metrics["eval/accuracy"]
    assert rows["grid"].metrics["grid_e1/tokens"] == rows["short"].metrics["train/tokens"]
    assert rows["grid"].metrics["train/completions"] == 8 * 2 * 4  # steps x prompts x G


@pytest.mark.slow
def test_zero_shot_rows_record_no_training(tiny_cfg, tmp_path):
    cfg = dataclasses.replace(tiny_cfg("rft"), method=ZeroShotConfig(max_new_tokens=12))
    row = pipeline.run(cfg, tmp_path / "run")
    assert {
        k: row.metrics[k] for k in ("train/epochs", "train/samples_seen", "train/completions", "train/tokens")
    } == {
        "train/epochs": 0.0,
        "train/samples_seen": 0.0,
        "train/completions": 0.0,
        "train/tokens": 0.0,
    }
    assert row.gpu_hours is not None and row.gpu_hours > 0


def test_banner_without_val_says_what_the_grid_needs(tmp_path):
    from rft.data.banner import load_banner_jsonl
    from rft.data.base import DataError

    with pytest.raises(DataError, match=r"val.jsonl.*schedule.select_split=''"):
        load_banner_jsonl(tmp_path, "val", seed=0, shuffle=False)


@pytest.mark.slow
def test_a_resumed_grid_run_keeps_the_points_it_scored(tiny_cfg, tmp_path):
    """Killed after the first grid point's checkpoint: the rerun with resume=auto continues from it, keeps that
    point's scores from grid.jsonl without scoring it again, and ends with the same row as the run that was not
    killed."""
    from rft.config import CheckpointConfig

    cfg = dataclasses.replace(
        cfg_with(tiny_cfg, "rft", epochs=[1, 2]), checkpoint=CheckpointConfig(every=4, keep_last=2)
    )  # 8 prompts, 2 per step: points at steps 4 and 8
    whole = pipeline.run(cfg, tmp_path / "whole")
    run = tmp_path / "killed"
    pipeline.run(cfg, run)
    # what a kill between step 4's checkpoint and the end leaves: no step-8 checkpoint, no row, one scored point
    shutil.rmtree(run / "checkpoints" / "step_000008")
    (run / "results.json").unlink()
    first = (run / pipeline.GRID_FILE).read_text().splitlines()[0]
    (run / pipeline.GRID_FILE).write_text(first + "\n")
    resumed = pipeline.run(dataclasses.replace(cfg, resume="auto"), run)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step_000004")
    grid = {k: v for k, v in resumed.metrics.items() if k.startswith("grid_e")}
    assert grid == {
        k: v for k, v in whole.metrics.items() if k.startswith("grid_e") and "gpu_hours" not in k
    } | {k: v for k, v in grid.items() if "gpu_hours" in k}
    lines = (run / pipeline.GRID_FILE).read_text().splitlines()
    assert lines[0] == first and len(lines) == 2 and "grid_e2/steps" in lines[1]  # e1 was not scored again
    assert resumed.metrics["eval/accuracy"] == whole.metrics["eval/accuracy"]
    assert resumed.metrics["train/tokens"] == whole.metrics["train/tokens"]  # restored with the checkpoint
