"""Config tier: the study at the paper's scale (`sweeps/study_*.yaml`, `experiments/study.py`, `make study`).

Every job of every study sweep composes and validates at its world size, the jobs are what the paper's two
tables need, the plan and its GPU-hour estimate print deterministically, and the launch commands put every row
into one results CSV. Nothing here needs a GPU, a dataset or the network.

python -m pytest -q tests/test_study.py
"""

from __future__ import annotations

import itertools
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
from rft.config import RFTConfig, SFTConfig, ZeroShotConfig, validate
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
    assert len(jobs) == 9 and all(isinstance(j.cfg.method, ZeroShotConfig) for j in jobs)
    assert not (tmp_path / "absent").exists()


def test_estimate_follows_its_formula(jobs):
    rft = next(j for j in jobs if isinstance(j.cfg.method, RFTConfig))
    m, n = rft.cfg.method, study.PARAMS["Qwen/Qwen2-VL-2B-Instruct"]
    fwd = 2 * n / (study.PEAK_FLOPS * study.MATMUL_UTILISATION)
    decode = 2 * n / (study.HBM_BYTES_PER_S * study.HBM_UTILISATION)
    p, t = 512 + study.PROMPT_TEXT_TOKENS, 256
    step = 16 * p * fwd + 128 * t * decode / 16 + (16 * p + 128 * t) * (1 + 3) * fwd
    test = {"fgvc": 3333, "sat": 150, "banner": 1000}[rft.cfg.task.name]
    expected = 8 * study.JOB_OVERHEAD_S + m.steps * step + test * (p * fwd + t * decode / 32)
    assert rft.gpu_seconds == pytest.approx(expected)
    # SFT grows with the budget, GRPO's fixed steps do not; a model without a parameter count has no estimate
    sft = sorted(
        (j for j in jobs if isinstance(j.cfg.method, SFTConfig) and j.cfg.task.name == "sat"),
        key=lambda j: j.cfg.budget.size,
    )
    assert sft[0].gpu_seconds < sft[-1].gpu_seconds
    rfts = [j.gpu_seconds for j in jobs if isinstance(j.cfg.method, RFTConfig) and j.cfg.task.name == "fgvc"]
    assert max(rfts) == pytest.approx(min(rfts))


def test_plan_prints_job_count_and_estimate_deterministically(plans, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(study, "plan", lambda names: plans)
    assert study.main(["--dry-run", "--out", str(tmp_path / "s")]) == 0
    first = capsys.readouterr().out
    assert study.main(["--dry-run", "--out", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out == first
    table = study.format_plan(plans)
    assert first.startswith(table)
    total = sum(len(sp.jobs) for sp in plans)
    assert total == 111 and f"{total} jobs, about" in table and "estimate, not a measurement" in table
    hours = sum(sp.gpu_hours for sp in plans)
    assert f"about {hours:.0f} GPU-hours" in table and 30 < hours < 200
    assert not (tmp_path / "s").exists(), "a dry run writes nothing"


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
    monkeypatch.setattr(study, "plan", lambda names: plans)
    launched: list[list[str]] = []

    class Done:
        returncode = 0

    monkeypatch.setattr(study.subprocess, "run", lambda cmd, cwd, **kw: launched.append(cmd) or Done())
    monkeypatch.setattr(study.sys.stdin, "isatty", lambda: False, raising=False)
    assert study.main(["--launcher", "local", "--out", str(tmp_path / "a")]) == 1 and not launched
    assert study.main(["--launcher", "local", "--yes", "--out", str(tmp_path / "b")]) == 0
    assert [c[c.index("--config-name") + 1] for c in launched] == [sp.name for sp in plans]


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
    monkeypatch.setattr(study, "plan", lambda names: tiny_plans)
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
