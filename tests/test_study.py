"""Config tier: the study at the paper's scale (`sweeps/study_*.yaml`, `experiments/study.py`, `make study`).

Every job of every study sweep composes and validates at its world size, the jobs are what the paper's two
tables need, the plan follows extra overrides and a bad one fails it (exit 2) before anything runs, the GPU-hour
range follows the schedule's steps and grid evaluations and prints with its basis, the resolvable differences
print under the plan, and the launch commands put every row into one results CSV. Nothing here needs a GPU, a
dataset or the network.

python -m pytest -q tests/test_study.py
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from experiments import study
from experiments.schemas import to_run_config
from rft import schedule
from rft.config import RFTConfig, SFTConfig, ZeroShotConfig, validate
from rft.report import power
from rft.report.tables import REWARD_LEVELS
from rft.results import append_result_row, axes, read_results

REPO = Path(__file__).resolve().parents[1]
SEARCH = f"hydra.searchpath=[file://{REPO / 'conf'}]"
SHOTS = [1, 2, 4, 8, 16]  # Visual-RFT's ladder


@pytest.fixture(scope="module")
def plans() -> list[study.SweepPlan]:
    return study.plan(study.study_sweeps())


@pytest.fixture(scope="module")
def jobs(plans) -> list[study.Job]:
    return [job for sp in plans for job in sp.jobs]


def cells(jobs) -> dict[tuple, set[int]]:
    """(task, method, reward, budget) -> the seeds that run it."""
    out: dict[tuple, set[int]] = defaultdict(set)
    for job in jobs:
        a = axes(job.cfg)
        out[(a["task"], a["method"], a["reward"], a["budget"])].add(a["seed"])
    return out


def test_the_study_has_its_sweeps(plans):
    names = [sp.name for sp in plans]
    for task in ("fgvc", "sat", "banner"):
        assert f"study_rft_{task}" in names and f"study_sft_{task}" in names
    assert {"study_thinking_fgvc", "study_thinking_sat", "study_zeroshot"} <= set(names)
    assert names == sorted(names), "sweeps launch in a fixed order (the ladders before the ablation)"


def test_every_job_validates_at_its_world_size(plans):
    gpus = yaml.safe_load((REPO / "conf/hydra/launcher/slurm.yaml").read_text())["gpus_per_node"]
    assert gpus == 8
    for sp in plans:
        assert sp.jobs, sp.name
        for job in sp.jobs:
            cfg = job.cfg
            assert cfg.model.id == "Qwen/Qwen2-VL-2B-Instruct" and cfg.logger.group == "study"
            assert cfg.task.name in ("fgvc", "sat", "banner")
            if isinstance(cfg.method, RFTConfig):
                # Visual-RFT: 8 GPUs, ZeRO-3, 16 prompts x G 8 per step
                assert cfg.dist.name == "zero3" and job.world_size == 8
                assert (cfg.method.rollout_batch_size, cfg.method.group_size) == (128, 8)
            else:
                assert cfg.dist.name == "none" and job.world_size == 1
            validate(cfg, world_size=job.world_size)


def test_fast_expansion_equals_a_full_compose_of_each_point(plans):
    """study.expand composes once per group choice and sets plain values; Hydra composing every override agrees."""
    for sp in plans:
        for job in (sp.jobs[0], sp.jobs[-1]):
            with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "sweeps")):
                full = to_run_config(compose(config_name=sp.name, overrides=[SEARCH, *job.overrides]))
            assert full == job.cfg, (sp.name, job.overrides)


def test_cfg_job_of_the_entrypoint_is_the_composed_job(plans):
    """`experiments/run.py --config-dir sweeps --config-name <sweep> <point> --cfg job` prints the job we validated."""
    job = next(
        j
        for sp in plans
        if sp.name == "study_thinking_sat"
        for j in sp.jobs
        if "reward=nothink" in j.overrides
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "RFT_DATA": "/nonexistent"}
    out = subprocess.run(
        [
            sys.executable,
            "experiments/run.py",
            "--config-dir",
            "sweeps",
            "--config-name",
            "study_thinking_sat",
        ]
        + [*job.overrides, "--cfg", "job", "--resolve"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    printed = yaml.safe_load(out)
    assert printed["task"]["name"] == "sat" and printed["reward"]["name"] == "nothink"
    assert printed["budget"] == {"kind": "samples", "size": 1024, "seed": job.cfg.seed}
    assert printed["method"]["rollout_batch_size"] == 128 and printed["dist"]["zero_stage"] == 3
    assert printed["logger"]["group"] == "study" and printed["model"]["id"] == job.cfg.model.id


def test_table1_jobs_zero_shot_and_both_methods_at_every_budget(jobs):
    have = cells(jobs)
    ladders = {
        "fgvc": [f"shots:{k}" for k in SHOTS],
        "sat": [f"samples:{n}" for n in (16, 64, 256, 1024, 4096)],
        "banner": [f"samples:{n}" for n in (16, 64, 256, 1024)],
    }
    for task, budgets in ladders.items():
        zero = [seeds for (t, m, _, _), seeds in have.items() if t == task and m == "zeroshot"]
        assert zero and len(set().union(*zero)) >= 3, task
        for budget in budgets:
            for method, reward in (("sft", "acc_format"), ("rft", "acc_format")):
                assert len(have[(task, method, reward, budget)]) >= 3, (task, method, budget)
        trained = {b for (t, m, _, b) in have if t == task and m in ("sft", "rft")}
        assert trained == set(budgets), f"{task}: rft and sft run exactly the ladder"


def test_table2_jobs_four_reward_levels_at_one_budget(jobs):
    have = cells(jobs)
    assert list(REWARD_LEVELS) == ["nothink", "acc_format", "length_norm", "length_norm_group"]
    for task in ("fgvc", "sat"):
        other = {b for (t, m, r, b) in have if t == task and m == "rft" and r != "acc_format"}
        assert len(other) == 1, f"{task}: the ablation runs at one budget"
        (budget,) = other
        for level in REWARD_LEVELS:
            assert len(have[(task, "rft", level, budget)]) >= 3, (task, level, budget)
    assert not any(r != "acc_format" for (t, m, r, _) in have if t == "banner" or m != "rft")


def test_no_job_runs_twice(plans, jobs):
    ids = [study.identity(job.cfg) for job in jobs]
    assert len(ids) == len(set(ids))
    thinking = {sp.name: sp for sp in plans if sp.name.startswith("study_thinking")}
    for sp in thinking.values():
        assert sp.dropped == {"reward": ["acc_format"]} and sp.duplicates == 3
        assert sp.overrides() == ["reward=nothink,length_norm,length_norm_group"]


def test_composing_reads_no_data(monkeypatch, tmp_path):
    monkeypatch.setenv("RFT_DATA", str(tmp_path / "absent"))
    _, jobs = study.expand("study_zeroshot")
    assert len(jobs) == 6 and all(isinstance(j.cfg.method, ZeroShotConfig) for j in jobs)
    assert not (tmp_path / "absent").exists()


def idealised(n: float) -> tuple[float, float]:
    """Seconds per forward token and per decode step of an n-parameter model at the idealised rates."""
    fwd = 2 * n / (study.PEAK_FLOPS * study.MATMUL_UTILISATION)
    return fwd, 2 * n / (study.HBM_BYTES_PER_S * study.HBM_UTILISATION)


def job_at(jobs, task: str, method: type, budget: int, reward: str = "acc_format") -> study.Job:
    return next(
        j
        for j in jobs
        if (j.cfg.task.name, j.cfg.budget.size, j.cfg.reward.name) == (task, budget, reward)
        and isinstance(j.cfg.method, method)
    )


def test_estimate_follows_its_formula_over_the_schedule_grid(jobs):
    """GRPO at FGVC 4 shots (400 images, 16 prompts per step): the grid's 25/50/100/200 steps (16 passes would
    be 400 > schedule.max_steps), then val (1,000) at every point and test (3,333) at every point but the last,
    plus the final evaluation."""
    rft = job_at(jobs, "fgvc", RFTConfig, 4)
    fwd, step = idealised(study.PARAMS["Qwen/Qwen2-VL-2B-Instruct"])
    assert [pt.steps for pt in schedule.grid(rft.cfg, 400)] == [25, 50, 100, 200]
    p, t = 512 + study.PROMPT_TEXT_TOKENS, 256
    grpo_step = 16 * p * fwd + 128 * t * step / 16 + (16 * p + 128 * t) * (1 + 3) * fwd
    questions = 4 * 1000 + 3 * 3333 + 3333
    assert study.questions_scored(rft.cfg) == questions
    expected = 8 * study.JOB_OVERHEAD_S + 200 * grpo_step + questions * (p * fwd + t * step / 32)
    assert rft.gpu_seconds == pytest.approx(expected)
    # SFT at SAT 4,096 samples: its first pass alone (256 steps of 16) is its one grid point, past max_steps
    sft = job_at(jobs, "sat", SFTConfig, 4096)
    assert sft.cfg.method.max_new_tokens == 700 and study.questions_scored(sft.cfg) == 1000 + 150
    expected = study.JOB_OVERHEAD_S + 256 * 16 * (p + 16) * 3 * fwd + 1150 * (p * fwd + 700 * step / 32)
    assert sft.gpu_seconds == pytest.approx(expected)
    # zero-shot: the test split once; a model without a parameter count has no estimate
    zero = next(j for j in jobs if isinstance(j.cfg.method, ZeroShotConfig) and j.cfg.task.name == "sat")
    assert study.questions_scored(zero.cfg) == 150
    other = dataclasses.replace(rft.cfg, model=dataclasses.replace(rft.cfg.model, id="someone/else"))
    assert study.gpu_seconds(other, 8) is None


def with_schedule(cfg, **changes):
    return dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, **changes))


def test_the_schedule_enters_the_cost(jobs):
    """Doubling schedule.max_steps trains twice as far and scores one more point; a bigger selection split and
    eval.before cost more, no selection split less, at both ends of the range."""
    rft = job_at(jobs, "fgvc", RFTConfig, 4)
    n, p, t = study.PARAMS[rft.cfg.model.id], 512 + study.PROMPT_TEXT_TOKENS, 256
    for rates in (study.IDEALISED, study.published_rates()):
        base = study.gpu_seconds(rft.cfg, 8, rates)
        longer = with_schedule(rft.cfg, max_steps=400)
        assert schedule.total_steps(longer, 400) == 400
        fwd = n * rates.fwd
        grpo_step = 16 * p * fwd + 128 * t * rates.decode(n, 16) + (16 * p + 128 * t) * 4 * fwd
        question = p * fwd + t * rates.decode(n, 32)  # 200 more steps, one more point: val and test
        assert study.gpu_seconds(longer, 8, rates) - base == pytest.approx(200 * grpo_step + 4333 * question)
        assert study.gpu_seconds(with_schedule(rft.cfg, select_limit=0), 8, rates) > base  # all 3,333 val
        assert study.gpu_seconds(with_schedule(rft.cfg, select_split=""), 8, rates) < base
        before = dataclasses.replace(rft.cfg, eval=dataclasses.replace(rft.cfg.eval, before=True))
        assert study.gpu_seconds(before, 8, rates) > base
    # the method's own length without a grid: method.steps, scored once
    own = with_schedule(rft.cfg, epochs=[], max_steps=0)
    assert schedule.total_steps(own, 400) == own.method.steps and study.questions_scored(own) == 3333
    # published step times are slower than the idealised rates, everywhere
    assert all(study.gpu_seconds(j.cfg, j.world_size, study.published_rates()) > j.gpu_seconds for j in jobs)


def test_published_rates_reproduce_their_step_times():
    """The high end's decode step is the slowest published step per decode step per parameter: R1-V's 18 s for
    2 x 256 decode steps of Qwen2-VL-2B (35 ms), VLM-R1's 30 s for Qwen2.5-VL-3B scaled to 2B parameters; a GRPO
    step of the study's shape (16 prompts x G 8 x 256 tokens on 8 GPUs) then takes at least R1-V's 18 s."""
    by = {s.model: s for s in study.PUBLISHED_STEPS}
    two_b, three_b = by["Qwen/Qwen2-VL-2B-Instruct"], by["Qwen/Qwen2.5-VL-3B-Instruct"]
    assert two_b.decode_step * 2.21e9 == pytest.approx(18 / 512)
    assert three_b.decode_step * 3.75e9 == pytest.approx(30 / 512)
    high = study.published_rates()
    assert high.decode_step == max(two_b.decode_step, three_b.decode_step)
    # a decode step is shared by no more sequences than the timed run decoded together (R1-V: 8)
    assert high.together == 8 and high.decode(2.21e9, 32) == high.decode(2.21e9, 8) == pytest.approx(
        18 / 512 / 8
    )
    assert study.IDEALISED.decode(2.21e9, 32) == pytest.approx(study.IDEALISED.decode(2.21e9, 8) / 4)
    assert high.fwd == pytest.approx(2 / (study.PEAK_FLOPS * 0.081))
    assert all(s.url.startswith("https://github.com/") for s in study.PUBLISHED_STEPS)
    assert "R1-V" in high.basis and "VLM-R1" in high.basis and "EasyR1" in high.basis
    n, fwd, p = 2.21e9, high.fwd * 2.21e9, 512 + study.PROMPT_TEXT_TOKENS
    step = 16 * p * fwd + 128 * 256 * high.decode(n, 16) + (16 * p + 128 * 256) * 4 * fwd
    assert 18 < step / 8 < 18 * 1.2


def test_plan_prints_job_count_and_the_range_with_its_basis(plans, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(study, "plan", lambda names, *a, **k: plans)
    assert study.main(["--dry-run", "--out", str(tmp_path / "s")]) == 0
    first = capsys.readouterr().out
    assert study.main(["--dry-run", "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out == first
    table = study.format_plan(plans)
    assert first.startswith(table)
    total = sum(len(sp.jobs) for sp in plans)
    low = sum(sp.gpu_hours() for sp in plans)
    high = sum(sp.gpu_hours(study.published_rates()) for sp in plans)
    assert total == 111 and f"{total} jobs, about {low:,.0f}–{high:,.0f} GPU-hours" in table
    assert 30 < low < 200 and 3 * low < high < 2000 and "an estimate, not a measurement" in table
    for sp in plans:  # every sweep prints its own range
        assert f"{sp.gpu_hours():.1f}–{sp.gpu_hours(study.published_rates()):.1f}" in table
    assert "  low:  idealised rates" in table and "  high: published GRPO step times" in table
    assert "R1-V" in table and "VLM-R1" in table and "--calibration" in table
    assert not (tmp_path / "s").exists(), "a dry run writes nothing"


def test_a_calibration_sets_the_high_end(plans, tmp_path, capsys, monkeypatch):
    """`--calibration`: a measured step of one prompt x G completions on one GPU (make bench-gpu) gives the
    decode step (rollout_s / T) and the forward rate (update_s over 3 (P + G T) tokens), per parameter."""
    n = study.PARAMS["Qwen/Qwen2-VL-2B-Instruct"]
    measured = {"G": 8, "T": 256, "P": 612, "step_s": 6.0, "rollout_s": 5.12, "update_s": 0.6}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({**measured, "device": "NVIDIA H100 80GB HBM3"}))
    rates = study.calibrated_rates(path)
    assert rates.decode_step * n == pytest.approx(5.12 / 256)
    assert rates.fwd * n == pytest.approx(0.6 / (3 * (612 + 8 * 256)))
    assert str(path) in rates.basis and "H100" in rates.basis and rates.together == 8
    # bench_gpu's own report (times under `ours`), and a step time alone: the whole step as T decode steps
    report = {"G": 8, "T": 256, "P": 612, "model": {"layers": "28"}, "ours": measured}
    path.write_text(json.dumps(report))
    assert study.calibrated_rates(path).decode_step == pytest.approx(rates.decode_step)
    path.write_text(json.dumps({"G": 8, "T": 256, "step_s": 6.0, "model": "Qwen/Qwen2.5-VL-3B-Instruct"}))
    alone = study.calibrated_rates(path)
    assert alone.decode_step * 3.75e9 == pytest.approx(6.0 / 256)
    table = study.format_plan(plans, alone)
    assert f"  high: a measured GRPO step ({path}" in table
    # a file that does not say G, T and step_s fails the plan before anything runs
    monkeypatch.setattr(study, "plan", lambda names, *a, **k: plans)
    path.write_text(json.dumps({"G": 8, "step_s": 6.0}))
    assert study.main(["--dry-run", "--calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"--calibration {path}" in err and "KeyError" in err and "G, T and step_s" in err


def test_plan_follows_extra_overrides(plans, tmp_path):
    """The plan composes every job with the extras: the estimate follows them, an extra on a grid key replaces
    its values (as Hydra's sweeper does), and the fast expansion still equals a full compose."""
    fgvc = next(sp for sp in plans if sp.name == "study_rft_fgvc")
    (longer,) = study.plan(["study_rft_fgvc"], ["schedule.max_steps=400"], "slurm")
    assert all(j.cfg.schedule.max_steps == 400 for j in longer.jobs)
    assert longer.gpu_hours() > fgvc.gpu_hours() and len(longer.jobs) == len(fgvc.jobs)
    (one_seed,) = study.plan(["study_rft_fgvc"], ["seed=0", "hydra.launcher.partition=gpu"], "slurm")
    assert one_seed.params["seed"] == ["0"] and len(one_seed.jobs) == 5
    cmd = study.command(one_seed, tmp_path, "slurm", ["seed=0", "hydra.launcher.partition=gpu"])
    assert cmd[-2:] == ["seed=0", "hydra.launcher.partition=gpu"]
    (swept,) = study.plan(["study_rft_fgvc"], ["seed=3,4", "budget.size=2"])
    assert [j.overrides for j in swept.jobs] == [["budget.size=2", "seed=3"], ["budget.size=2", "seed=4"]]
    (gpus,) = study.plan(["study_rft_fgvc"], ["hydra.launcher.gpus_per_node=4"], "slurm")
    assert gpus.world_size == 4 and all(j.world_size == 4 for j in gpus.jobs)
    for job in (longer.jobs[0], swept.jobs[-1]):
        extra = ["schedule.max_steps=400"] if job in longer.jobs else []
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "sweeps")):
            full = compose(config_name="study_rft_fgvc", overrides=[SEARCH, *extra, *job.overrides])
        assert to_run_config(full) == job.cfg
    # an extra on a key the study narrows would undo the narrowing: the narrowed grid is passed, not the extra
    thinking = next(sp for sp in plans if sp.name == "study_thinking_fgvc")
    cmd = study.command(thinking, tmp_path, "local", ["reward=nothink,acc_format", "threads=1"])
    assert cmd[-2:] == ["reward=nothink,length_norm,length_norm_group", "threads=1"]


@pytest.mark.parametrize(
    "extra, launcher, names",
    [
        (["method.stpes=1"], "slurm", ["method.stpes=1", "Key 'stpes' not in 'RFTConfig'", "rft/config.py"]),
        (["hydra.launcher.partiton=gpu"], "slurm", ["hydra.launcher.partiton=gpu", "SlurmQueueConf"]),
        (["hydra.launcher.partition=gpu"], "local", ["hydra.launcher.partition=gpu"]),
        (["method.lr=-1"], "slurm", ["method.lr=-1", "method.lr must be > 0", "at budget.size=1 seed=0"]),
        (["method.lr=1e-5", "method.steps=abc"], "slurm", ["the override method.steps=abc does", "Integer"]),
        (["method.rollout_batch_size=100"], "slurm", ["method.rollout_batch_size=100"]),
    ],
)
def test_a_bad_override_fails_the_plan_with_one_message(extra, launcher, names, capsys):
    """Before anything runs: exit 2, one message on stderr naming the override and the fix, no traceback."""
    args = ["--dry-run", "--sweeps", "study_rft_fgvc", "--launcher", launcher, *extra]
    assert study.main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("study: the override")
    assert "Nothing was launched" in captured.err and "Traceback" not in captured.err
    for name in names:
        assert name in captured.err, (name, captured.err)
    if len(extra) > 1:  # the good one is not blamed
        assert extra[0] not in captured.err


def test_make_study_with_a_misspelt_override_exits_2_without_a_traceback():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    run = subprocess.run(
        [sys.executable, "experiments/study.py", "--dry-run", "--sweeps", "study_sft_sat", "method.stpes=1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "study: the override method.stpes=1 does not fit sweep study_sft_sat" in run.stderr


def test_the_plan_prints_what_the_study_can_resolve(plans, jobs):
    """Per task, the comparisons of the two tables and their minimum detectable effect (rft.report.power) at
    the study's seeds and test questions, before anything runs."""
    found = {c.task: c for c in study.comparisons(jobs)}
    assert found["fgvc"].what == ["rft vs sft at 5 budgets", "4 thinking levels at shots:4"]
    assert found["sat"].what == ["rft vs sft at 5 budgets", "4 thinking levels at samples:1024"]
    assert found["banner"].what == ["rft vs sft at 4 budgets"]
    assert {t: (c.seeds, c.questions) for t, c in found.items()} == {
        "fgvc": (3, 3333),
        "sat": (3, 150),
        "banner": (3, 1000),
    }
    table = study.format_plan(plans)
    block = table[table.index("resolvable difference") :]
    assert "80% power" in block and "between-seed sd 2.0 points assumed" in block
    for task, n in (("fgvc", 3333), ("sat", 150), ("banner", 1000)):
        line = next(line for line in block.splitlines() if line.strip().startswith(task))
        assert f"≥ {100 * power.mde(n, 3):4.1f} points" in line
        assert f"questions alone: ≥ {power.mde(n, 3, seed_sd=0.0) * 100:.1f}" in line
    assert "1,000 test questions (assumed)" in block


def test_every_row_lands_in_one_results_csv(plans, tmp_path):
    out = tmp_path / "study"
    for launcher in ("slurm", "local"):
        cmds = [study.command(sp, out, launcher, ["hydra.launcher.partition=gpu"]) for sp in plans]
        assert all(f"results_csv={out / 'results.csv'}" in c for c in cmds)
        assert len({next(a for a in c if a.startswith("hydra.sweep.dir=")) for c in cmds}) == len(plans)
        assert all(("hydra/launcher=slurm" in c) == (launcher == "slurm") for c in cmds)
    for sp in plans:
        cmd = study.command(sp, out, "slurm", [])
        assert f"hydra.launcher.gpus_per_node={sp.world_size}" in cmd
        # the launcher and output overrides compose (a narrowed grid, `reward=a,b`, is a sweep: left out here)
        overrides = [o for o in cmd[cmd.index(sp.name) + 1 :] if o not in sp.overrides()]
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "sweeps")):
            c = compose(config_name=sp.name, overrides=[SEARCH, *overrides], return_hydra_config=True)
        assert c.hydra.launcher.tasks_per_node == sp.world_size and c.results_csv == str(out / "results.csv")


def test_launch_asks_unless_yes_and_runs_sweeps_in_order(plans, monkeypatch, tmp_path):
    monkeypatch.setattr(study, "plan", lambda names, *a, **k: plans)
    launched: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(study.subprocess, "run", lambda cmd, cwd, **kw: launched.append(cmd) or Done())
    monkeypatch.setattr(study.sys.stdin, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(study, "outcome", lambda jobs, table: "")  # these fake sweeps write no rows
    assert study.main(["--launcher", "local", "--out", str(tmp_path / "a")]) == 1 and not launched
    assert study.main(["--launcher", "local", "--yes", "--out", str(tmp_path / "b")]) == 0
    assert [c[c.index("--config-name") + 1] for c in launched] == [sp.name for sp in plans]
    monkeypatch.setattr(study, "outcome", lambda jobs, table: "study: 1 of 9 jobs did not finish")
    assert study.main(["--launcher", "local", "--yes", "--out", str(tmp_path / "c")]) == 1  # a failed job


def test_make_study_and_docs_name_the_report_input():
    make = (REPO / "Makefile").read_text()
    phony = next(line for line in make.splitlines() if line.startswith(".PHONY"))
    assert " study " in f"{phony} " and " dashboard" in phony
    assert "study: venv  ## " in make and "experiments/study.py" in make
    assert "--dry-run" in make and "--yes" in make
    docs = (REPO / "docs/protocol.md").read_text() + (REPO / "README.md").read_text()
    assert "make report REPORT_IN=outputs/study/" in docs and "make study" in docs


def test_a_grid_point_is_each_combination(plans):
    for sp in plans:
        expected = [
            list(p) for p in itertools.product(*([f"{k}={v}" for v in vs] for k, vs in sp.params.items()))
        ]
        kept = [p for p in expected if not any(f"{k}={v}" in p for k, vs in sp.dropped.items() for v in vs)]
        assert [j.overrides for j in sp.jobs] == kept


# --- The tiny study and the whole study's progress ----------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_plans() -> list[study.SweepPlan]:
    return study.plan(study.study_sweeps("tiny"))


def row_of(job: study.Job, status: str = "finished") -> dict[str, str]:
    return {**{k: str(v) for k, v in axes(job.cfg).items()}, "status": status}


def test_tiny_study_runs_each_job_once(tiny_plans):
    assert [sp.name for sp in tiny_plans] == study.TINY_SWEEPS
    by_name = {sp.name: sp for sp in tiny_plans}
    ids = [study.identity(j.cfg) for sp in tiny_plans for j in sp.jobs]
    assert len(ids) == len(set(ids))
    for task in ("fgvc", "sat"):  # the think level of the ablation is the ladder's rft_tiny job
        thinking = by_name[f"thinking_tiny_{task}"]
        assert thinking.dropped == {"reward": ["acc_format"]} and thinking.duplicates == 3
    assert all(j.gpu_seconds is None for sp in tiny_plans for j in sp.jobs)
    assert "without a GPU estimate" in study.format_plan(tiny_plans)


def test_progress_counts_rows_and_scales_elapsed_by_work_left(tiny_plans):
    jobs = [j for sp in tiny_plans for j in sp.jobs]
    total = sum(study.work(j) for j in jobs)
    assert (
        study.progress_line(jobs, [], 5.0) == f"study: 0/{len(jobs)} jobs done, 5s elapsed, time left unknown"
    )
    done = [jobs[0], jobs[5], jobs[-1]]
    rows = [row_of(done[0]), row_of(done[1], "failed"), row_of(done[2]), {"status": "failed"}]
    line = study.progress_line(jobs, rows, 600.0)
    # the axes-less row (a job that failed before composing) stands for one job left, at their mean work
    left = [j for j in jobs if j not in done]
    mean_left = sum(study.work(j) for j in left) / len(left)
    work_done = sum(study.work(j) for j in done) + mean_left
    expected_left = study.clock(600.0 * (total - work_done) / work_done)
    assert line == f"study: 4/{len(jobs)} jobs done (2 failed), 10m00s elapsed, about {expected_left} left"
    assert study.progress_line(jobs, [row_of(j) for j in jobs], 3700) == (
        f"study: {len(jobs)}/{len(jobs)} jobs done, 1h01m elapsed"
    )


def test_work_follows_the_job_size(tiny_plans):
    ladder = next(sp for sp in tiny_plans if sp.name == "rft_vs_sft_tiny_fgvc").jobs
    rft = [j for j in ladder if isinstance(j.cfg.method, RFTConfig)]
    sft = [j for j in ladder if isinstance(j.cfg.method, SFTConfig)]
    zeroshot = next(sp for sp in tiny_plans if sp.name == "zeroshot_tiny").jobs
    assert (
        max(study.work(j) for j in zeroshot)
        < min(study.work(j) for j in sft)
        < min(study.work(j) for j in rft)
    )


def test_lanes_balance_the_sweeps_and_keep_their_order(tiny_plans):
    for n in (1, 2, 3, 9):
        lanes = study.lanes(tiny_plans, n)
        assert len(lanes) == min(n, len(tiny_plans))
        assert sorted(sp.name for lane in lanes for sp in lane) == sorted(study.TINY_SWEEPS)
        for lane in lanes:
            assert lane == sorted(lane, key=lambda sp: study.TINY_SWEEPS.index(sp.name))
    loads = [sum(study.work(j) for sp in lane for j in sp.jobs) for lane in study.lanes(tiny_plans, 2)]
    biggest = max(sum(study.work(j) for j in sp.jobs) for sp in tiny_plans)
    assert max(loads) - min(loads) <= biggest


def test_launch_reports_the_whole_study_as_jobs_end(tiny_plans, monkeypatch, tmp_path, capsys):
    """Each fake sweep appends its jobs' rows (one failed) as `run.py -m` would; the study prints a progress line
    for the whole study and ends at N/N."""
    monkeypatch.setattr(study, "plan", lambda names, *a, **k: tiny_plans)
    by_name = {sp.name: sp for sp in tiny_plans}
    table = tmp_path / "out" / "results.csv"

    class Done:
        def __init__(self, code):
            self.returncode = code

    def fake_run(cmd, cwd, stdout, stderr):
        sp = by_name[cmd[cmd.index("--config-name") + 1]]
        assert "threads=1" in cmd and stdout.name.endswith(f"{sp.name}.log")
        for k, job in enumerate(sp.jobs):
            failed = sp.name == "zeroshot_tiny" and k == 0
            append_result_row(table, row_of(job, "failed" if failed else "finished"))
        return Done(1 if sp.name == "zeroshot_tiny" else 0)

    monkeypatch.setattr(study.subprocess, "run", fake_run)
    code = study.main(
        ["--study", "tiny", "--parallel", "2", "--yes", "--out", str(tmp_path / "out"), "threads=1"]
    )
    out = capsys.readouterr().out
    n = sum(len(sp.jobs) for sp in tiny_plans)
    assert code == 1 and "zeroshot_tiny: failed (exit 1)" in out
    last = [line for line in out.splitlines() if line.startswith("study: ")][-1]
    assert last.startswith(f"study: {n}/{n} jobs done (1 failed), ") and "left" not in last
    assert len(read_results(table)) == n


def test_make_study_tiny_runs_the_tiny_study_with_progress():
    make = (REPO / "Makefile").read_text()
    recipe = make[make.index("study-tiny: venv") :].split("\n\n")[0]
    assert "experiments/study.py --study tiny" in recipe and "--parallel" in recipe and "--yes" in recipe
    assert "experiments/report.py $(STUDY)" in recipe


def test_the_study_reports_jobs_that_failed_or_wrote_no_row(jobs, tmp_path):
    """A sweep exits 0 when its jobs fail (each writes a failed row and the sweep goes on), so the study reads its
    table: every job finished is silence; a failed job and a missing row are named, and main returns 1."""
    table = tmp_path / "results.csv"
    three = jobs[:3]
    for i, job in enumerate(three[:2]):
        status = "failed" if i == 1 else "finished"
        append_result_row(table, {"run_id": f"job{i}", "status": status, **axes(job.cfg)})
    text = study.outcome(three, table)
    assert "1 of 3 jobs did not finish: job1 (failed)" in text and "1 of 3 jobs wrote no row" in text
    append_result_row(table, {"run_id": "job2", "status": "finished", **axes(three[2].cfg)})
    rows = read_results(table)
    table.write_text("")  # rewrite with every row finished
    for row in rows:
        append_result_row(table, {**row, "status": "finished"})
    assert study.outcome(three, table) == ""


def test_out_naming_a_file_is_one_message(tmp_path, capsys):
    target = tmp_path / "results.csv"
    target.write_text("x\n")
    assert study.main(["--study", "tiny", "--dry-run", "--out", str(target)]) == 2
    assert "is a file; name a folder" in capsys.readouterr().err
