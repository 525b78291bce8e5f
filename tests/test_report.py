"""Unit tier for rft.report and experiments/report.py: the tables' arithmetic on a hand-made results table.

The inputs (result rows, metrics.jsonl files) are fabricated; every expected number is worked out by hand in
the comments. W&B runs offline with all its folders in tmp_path.

    python -m pytest -q tests/test_report.py
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from experiments import report as cli
from rft import report
from rft.results import ResultRow, append_result_row

FGVC, SAT = "fgvc_synth", "sat_synth"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def result_row(run_id: str, method: str, task: str, budget: str, seed: int, acc: float | None, *,
               reward: str = "acc_format", status: str = "finished", think_tokens: float = 0.0,
               max_pixels: int = 12544, run_dir: str = "") -> dict[str, object]:  # fmt: skip
    """One row as rft.pipeline writes it (the columns the report reads)."""
    rft = method == "rft"
    row: dict[str, object] = {
        "run_id": run_id, "status": status, "task": task, "method": method, "model": "tiny", "reward": reward,
        "budget": budget, "seed": seed, "n_train": 64, "min_pixels": 784, "max_pixels": max_pixels,
        "think": reward != "nothink", "loss_agg": "seq-mean-token-mean" if rft else "",
        "group_size": 4 if rft else "", "max_new_tokens": 24, "run_dir": run_dir,
    }  # fmt: skip
    if status == "finished":
        row.update({"eval/accuracy": acc, "eval/think_tokens": think_tokens, "eval/n": 128})
    else:
        row["error"] = "RuntimeError: CUDA out of memory"
    return row


# (run_id, method, task, budget, seed, accuracy, extra); rows are appended in this order.
ROWS = [
    # zero-shot: the same seed run at two budgets counts once -> 40.0 ± – (n=1); sat_synth has none -> missing
    ("zs-a", "zeroshot", FGVC, "shots:4", 0, 0.40, {}),
    ("zs-b", "zeroshot", FGVC, "shots:1", 0, 0.40, {}),
    # sft @ shots:4 on fgvc: 50, 60, 70 -> mean 60.0, std 10.0, CI 4.303*10/sqrt(3) = 24.84 -> [35.2, 84.8].
    # seed 1 failed first and was rerun: the later finished row replaces it, so nothing counts as failed.
    ("sft-f0", "sft", FGVC, "shots:4", 0, 0.50, {}),
    ("sft-f1-fail", "sft", FGVC, "shots:4", 1, None, {"status": "failed"}),
    ("sft-f1", "sft", FGVC, "shots:4", 1, 0.60, {}),
    ("sft-f2", "sft", FGVC, "shots:4", 2, 0.70, {}),
    # rft @ shots:4 on fgvc: 65, 70, 90 -> mean 75.0; deviations -10, -5, 15 -> SS 350, var 175,
    # std 13.229; CI 4.303*13.229/sqrt(3) = 32.865 -> [42.1, 107.9]. Delta = 75.0 - 60.0 = +15.0.
    # think tokens 10, 12, 14 -> 12.0 ± 2.0. Seed 2 ran at other pixels -> a "mixed config" note.
    ("rft-f0", "rft", FGVC, "shots:4", 0, 0.65, {"think_tokens": 10.0}),
    ("rft-f1", "rft", FGVC, "shots:4", 1, 0.70, {"think_tokens": 12.0}),
    ("rft-f2", "rft", FGVC, "shots:4", 2, 0.90, {"think_tokens": 14.0, "max_pixels": 50176}),
    # sat_synth @ shots:4: sft all failed -> "failed (2/2)"; rft 30, 40 and one failure ->
    # mean 35.0, std sqrt(50) = 7.07, no CI (n=2), "· failed (1/3)"; Delta "–" (no sft value).
    ("sft-s0", "sft", SAT, "shots:4", 0, None, {"status": "failed"}),
    ("sft-s1", "sft", SAT, "shots:4", 1, None, {"status": "failed"}),
    ("rft-s0", "rft", SAT, "shots:4", 0, 0.30, {}),
    ("rft-s1", "rft", SAT, "shots:4", 1, 0.40, {}),
    ("rft-s2", "rft", SAT, "shots:4", 2, None, {"status": "failed"}),
    # shots:1: sft 45.0 ± – (n=1) on fgvc; everything else at shots:1 is missing.
    ("sft-f0-1shot", "sft", FGVC, "shots:1", 0, 0.45, {}),
    # thinking ablation at shots:4 (table 2): nothink 80, 90 -> 85.0 ± 7.1 (n=2); length_norm 55 (n=1),
    # 20 think tokens. They and the sft nothink row are excluded from table 1 (4 rows).
    ("rft-f0-nothink", "rft", FGVC, "shots:4", 0, 0.80, {"reward": "nothink"}),
    ("rft-f1-nothink", "rft", FGVC, "shots:4", 1, 0.90, {"reward": "nothink"}),
    ("rft-f0-len", "rft", FGVC, "shots:4", 0, 0.55, {"reward": "length_norm", "think_tokens": 20.0}),
    ("sft-f0-nothink", "sft", FGVC, "shots:4", 0, 0.99, {"reward": "nothink"}),
]

# metrics.jsonl of the two nothink runs: step 1 completion tokens 10 and 20 -> mean 15; step 2 only seed 0.
METRICS = {
    "rft-f0-nothink": [
        {
            "step": 1,
            "rollout/completion_tokens": 10.0,
            "rollout/think_tokens": 0.0,
            "rollout/reward_mean": 0.5,
        },
        {
            "step": 2,
            "rollout/completion_tokens": 12.0,
            "rollout/think_tokens": 0.0,
            "rollout/reward_mean": 1.0,
        },
    ],
    "rft-f1-nothink": [
        {
            "step": 1,
            "rollout/completion_tokens": 20.0,
            "rollout/think_tokens": 0.0,
            "rollout/reward_mean": "nan",
        },
    ],
    "rft-f0": [{"step": 1, "rollout/completion_tokens": 24.0, "rollout/think_tokens": 8.0}],
}


def write_runs(root: Path, group: str = "thinking_tiny") -> Path:
    """The fabricated table as results.csv under root, with run folders (config.yaml, some metrics.jsonl).

    rft-f1's recorded run_dir no longer exists but its folder sits under root (a moved sweep);
    rft-f2 has no folder at all, so its metrics are reported missing.
    """
    csv_path = root / "results.csv"
    for run_id, method, task, budget, seed, acc, extra in ROWS:
        run_dir = root / "runs" / run_id
        if run_id != "rft-f2":
            run_dir.mkdir(parents=True)
            (run_dir / "config.yaml").write_text(f"logger:\n  group: {group}\n  project: rft-test\n")
        lines = METRICS.get(run_id, [])
        if lines:
            (run_dir / "metrics.jsonl").write_text(
                "".join(json.dumps(x) + "\n" for x in lines) + '{"step": 3,'
            )
        recorded = str(root / "moved" / run_id) if run_id == "rft-f1" else str(run_dir)
        append_result_row(
            csv_path, result_row(run_id, method, task, budget, seed, acc, run_dir=recorded, **extra)
        )
    return csv_path


@pytest.fixture
def built(tmp_path: Path) -> report.Report:
    csv_path = write_runs(tmp_path)
    rows, source = report.load_rows(tmp_path)
    assert source == csv_path and len(rows) == len(ROWS)
    return report.build_report(rows, source=str(source), root=tmp_path)


def grid(table: report.Table) -> dict[str, dict[str, str]]:
    """{row label: {column: text}}; table 2 rows are keyed by reward name."""
    key = 1 if table.name.startswith("table2") else 0
    return {line[key]: dict(zip(table.columns, line, strict=True)) for line in table.body}


def record(table: report.Table, row: str, task: str, metric: str = report.ACCURACY) -> dict[str, object]:
    (match,) = [r for r in table.records if (r["row"], r["task"], r["metric"]) == (row, task, metric)]
    return match


# t_{0.975, df} from printed tables, to 3 decimals: scipy's exact values must round to them.
T_TABLE = 5e-4


def test_mean_std_ci_matches_hand_computed_values():
    s = report.mean_std_ci([50.0, 60.0, 70.0])
    assert (s.n, s.mean, s.std) == (3, 60.0, 10.0)
    assert s.ci95 == pytest.approx(4.303 * 10 / math.sqrt(3), abs=T_TABLE * 10 / math.sqrt(3))  # 24.84
    assert report.format_stats(s) == "60.0 ± 10.0 (n=3) [35.2, 84.8]"
    one = report.mean_std_ci([45.0])
    assert (one.std, one.ci95) == (None, None) and report.format_stats(one) == "45.0 ± – (n=1)"
    two = report.mean_std_ci([30.0, 40.0])  # std sqrt(50) = 7.07; no CI below n = 3
    assert two.std == pytest.approx(math.sqrt(50)) and two.ci95 is None
    # t_{0.975} (exact: df 40 -> 2.0211, df 120 -> 1.9799).
    assert report.t95(2) == pytest.approx(4.303, abs=T_TABLE) and report.t95(30) == pytest.approx(
        2.042, abs=T_TABLE
    )
    assert report.t95(40) == pytest.approx(2.0211, abs=1e-3) and report.t95(120) == pytest.approx(
        1.9799, abs=1e-3
    )


@pytest.mark.parametrize(
    "values", [[1.0, 2.0, 4.0], [0.5] * 4 + [0.9], [float(i * i) for i in range(12)], [0.3] * 40 + [0.1]]
)
def test_t_interval_equals_scipy(values):
    s = report.mean_std_ci(values)
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=s.mean, scale=scipy_stats.sem(values))
    assert s.mean - s.ci95 == pytest.approx(low, rel=1e-12) and s.mean + s.ci95 == pytest.approx(
        high, rel=1e-12
    )
    assert s.std == pytest.approx(float(scipy_stats.tstd(values)), rel=1e-12)


def test_table1_cells_means_stds_cis_and_deltas(built):
    t1 = built.tables[0]
    cells = grid(t1)
    assert list(cells) == [
        "zero-shot base", "sft @ shots:1", "rft @ shots:1", "Δ(RFT−SFT) @ shots:1",
        "sft @ shots:4", "rft @ shots:4", "Δ(RFT−SFT) @ shots:4",
    ]  # fmt: skip
    assert t1.columns == ["method @ budget", FGVC, SAT]
    assert cells["zero-shot base"][FGVC] == "40.0 ± – (n=1)"  # two runs of seed 0 count once
    assert cells["zero-shot base"][SAT] == "missing"
    assert cells["sft @ shots:4"][FGVC] == "60.0 ± 10.0 (n=3) [35.2, 84.8]"  # the failed try was rerun
    assert cells["rft @ shots:4"][FGVC].startswith("75.0 ± 13.2 (n=3) [42.1, 107.9] · mixed config: ")
    assert "pixels 784–12544, 784–50176" in cells["rft @ shots:4"][FGVC]
    assert cells["Δ(RFT−SFT) @ shots:4"][FGVC] == "+15.0 (n=3 vs 3)"
    assert cells["sft @ shots:4"][SAT] == "failed (2/2)"
    assert cells["rft @ shots:4"][SAT] == "35.0 ± 7.1 (n=2) · failed (1/3)"
    assert cells["Δ(RFT−SFT) @ shots:4"][SAT] == "–"
    assert cells["sft @ shots:1"][FGVC] == "45.0 ± – (n=1)"
    assert cells["rft @ shots:1"][FGVC] == "missing" and cells["Δ(RFT−SFT) @ shots:1"][FGVC] == "–"

    rft = record(t1, "rft @ shots:4", FGVC)
    assert rft["mean"] == pytest.approx(75.0) and rft["std"] == pytest.approx(math.sqrt(175))
    half = math.sqrt(175) / math.sqrt(3)
    assert rft["ci95_half"] == pytest.approx(4.303 * half, abs=T_TABLE * half)  # 32.865
    sat = record(t1, "rft @ shots:4", SAT)
    assert (sat["n"], sat["n_failed"], sat["n_seeds"], sat["ci95_half"]) == (2, 1, 3, "")
    delta = record(t1, "Δ(RFT−SFT) @ shots:4", FGVC, "accuracy_delta")
    assert delta["mean"] == pytest.approx(15.0) and (delta["n_rft"], delta["n_sft"]) == (3, 3)
    # The header states the rule and the config behind the cells (every value that occurs).
    notes = " ".join(t1.notes)
    assert "reward = acc_format" in notes and "4 row(s) with another reward are excluded" in notes
    assert "model tiny; pixels 784–12544, 784–50176; loss_agg seq-mean-token-mean; G 4" in notes


def test_each_budget_panel_shows_only_its_own_tasks_budgets(tmp_path: Path):
    for run_id, method, task, budget, acc in [
        ("a", "rft", FGVC, "shots:16", 0.5), ("b", "sft", FGVC, "shots:1", 0.4), ("c", "rft", SAT, "samples:64", 0.7),
        ("d", "sft", SAT, "samples:256", None), ("e", "zeroshot", SAT, "samples:16", 0.6),
    ]:  # fmt: skip
        status = "finished" if acc is not None else "failed"
        append_result_row(
            tmp_path / "results.csv", result_row(run_id, method, task, budget, 0, acc, status=status)
        )
    rows, _ = report.load_rows(tmp_path)
    t1 = report.build_report(rows).tables[0]
    assert report.panel_budgets(t1, FGVC) == ["shots:1", "shots:16"]  # by size, not as text
    assert report.panel_budgets(t1, SAT) == ["samples:64", "samples:256"]  # the failed cell keeps its place


def test_table2_thinking_levels(built):
    t2 = built.tables[1]
    cells = grid(t2)
    assert list(cells) == ["nothink", "acc_format", "length_norm", "length_norm_group"]
    assert t2.columns[:3] == ["level", "reward", "budget"]
    assert {c["budget"] for c in cells.values()} == {"shots:4"}
    assert cells["nothink"]["level"] == "no think"
    assert cells["length_norm"]["level"] == "think + length (target)"
    assert cells["nothink"][f"{FGVC} acc %"] == "85.0 ± 7.1 (n=2)"
    # the rft @ shots:4 rows of table 1 are the "think" level; seed 2's other pixels are flagged here too
    assert cells["acc_format"][f"{FGVC} think tokens"].startswith("12.0 ± 2.0 (n=3) · mixed config: pixels")
    assert cells["length_norm"][f"{FGVC} acc %"] == "55.0 ± – (n=1)"
    assert cells["length_norm"][f"{FGVC} think tokens"] == "20.0 ± – (n=1)"
    assert cells["length_norm_group"][f"{FGVC} acc %"] == "missing"
    assert cells["acc_format"][f"{SAT} acc %"] == "35.0 ± 7.1 (n=2) · failed (1/3)"
    assert cells["nothink"][f"{SAT} acc %"] == "missing"
    assert "shots:4" in t2.notes[0]


def test_training_curves_average_seeds_per_step(built):
    runs = built.curve_runs
    # nothink on fgvc: step 1 (10 + 20) / 2 = 15, step 2 only seed 0 -> 12; the cut-off last line is skipped.
    tokens = report.mean_curve(runs[(FGVC, "nothink")], "rollout/completion_tokens")
    assert tokens == ([1.0, 2.0], [15.0, 12.0])
    # "nan" reward of seed 1 is not a value: step 1 is seed 0's 0.5 alone.
    assert report.mean_curve(runs[(FGVC, "nothink")], "rollout/reward_mean") == ([1.0, 2.0], [0.5, 1.0])
    # rft-f1's recorded folder is gone but one named rft-f1 is under the root; rft-f2 has none at all.
    assert built.run_dirs["rft-f1"] == built.run_dirs["rft-f0"].parent / "rft-f1"
    assert built.run_dirs["rft-f2"] is None and "rft-f2" in built.missing_metrics
    assert "rft-f0-nothink" not in built.missing_metrics


def test_cli_writes_markdown_csv_and_pngs(tmp_path: Path):
    write_runs(tmp_path)
    out = tmp_path / "out"
    files = cli.main([str(tmp_path / "results.csv"), "--out", str(out)])
    for name in ("report.md", "table1_rft_vs_sft.csv", "table2_thinking.csv", "cells.csv"):
        assert (out / name).stat().st_size > 0
    for name in ("accuracy_vs_budget", "tokens_vs_step", "reward_vs_step"):
        data = files[name].read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    md = (out / "report.md").read_text()
    assert "| sft @ shots:4 | 60.0 ± 10.0 (n=3) [35.2, 84.8] | failed (2/2) |" in md
    assert "| zero-shot base | 40.0 ± – (n=1) | missing |" in md
    assert "![accuracy_vs_budget](accuracy_vs_budget.png)" in md and "rft-f2" in md
    table1_csv = (out / "table1_rft_vs_sft.csv").read_text().splitlines()
    assert (
        table1_csv[0] == f"method @ budget,{FGVC},{SAT}"
        and table1_csv[1] == "zero-shot base,40.0 ± – (n=1),missing"
    )
    # The default report folder is <input folder>/report.
    cli.main([str(tmp_path)])
    assert (tmp_path / "report" / "report.md").is_file()


def test_rows_rebuilt_from_results_json_of_a_sweep(tmp_path: Path):
    for i, acc in enumerate((0.5, 0.7)):
        job = tmp_path / f"{i}_job"
        job.mkdir()
        record = result_row(job.name, "rft", FGVC, "samples:64", i, acc, run_dir=str(job))
        (job / "results.json").write_text(json.dumps({**record, "versions": {"torch": "2.13.0"}}))
    rows, source = report.load_rows(tmp_path)
    assert (
        source == tmp_path
        and [r.think for r in rows] == [True, True]
        and "versions" not in rows[0].to_record()
    )
    cells = grid(report.table1(rows))
    assert cells["rft @ samples:64"][FGVC] == "60.0 ± 14.1 (n=2)"  # std sqrt(((50-60)^2 + (70-60)^2) / 1)
    assert cells["sft @ samples:64"][FGVC] == "missing"


def test_missing_input_says_what_to_pass(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="results.csv or results.json"):
        report.load_rows(tmp_path)


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    for name in ("DATA", "CACHE", "CONFIG"):
        monkeypatch.setenv(f"WANDB_{name}_DIR", str(tmp_path / f"wandb-{name.lower()}"))


def test_wandb_logs_an_offline_report_run(tmp_path: Path, wandb_offline: None):
    write_runs(tmp_path / "sweep", group="thinking_tiny")
    out = tmp_path / "out"
    cli.main([str(tmp_path / "sweep"), "--out", str(out), "--wandb"])
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    assert list(run_dir.glob("run-*.wandb")) and (run_dir / "files").is_dir()
    rows, _ = report.load_rows(tmp_path / "sweep")
    built = report.build_report(rows, root=tmp_path / "sweep")
    assert report.shared_logger_value(built, "group") == "thinking_tiny"
    assert report.shared_logger_value(built, "project") == "rft-test"


# --- schedule grids: table 1 at the validation-chosen length, table 1b at equal passes -------------------------


def grid_row(run_id: str, method: str, seed: int, points: dict[str, tuple[float, float]]) -> ResultRow:
    """A finished row trained on a schedule grid: points maps E -> (val accuracy, test accuracy)."""
    record = result_row(run_id, method, FGVC, "shots:1", seed, list(points.values())[-1][1])
    record["schedule"] = "epochs:" + ",".join(points)
    for e, (val, test) in points.items():
        record.update({f"grid_e{e}/val_accuracy": val, f"grid_e{e}/test_accuracy": test})
        record[f"grid_e{e}/steps"] = 7 * int(e)
        record[f"grid_e{e}/test_think_tokens"] = 3.0 * int(e)
    return ResultRow.from_record(record)


GRID_ROWS = [
    # sft: val means at E=1,2,4: (0.50+0.52)/2 = 0.51, 0.60, 0.40 -> E=2 is chosen; its test 0.55, 0.57 -> 56.0
    grid_row("sft-g0", "sft", 0, {"1": (0.50, 0.45), "2": (0.60, 0.55), "4": (0.40, 0.70)}),
    grid_row("sft-g1", "sft", 1, {"1": (0.52, 0.47), "2": (0.60, 0.57), "4": (0.40, 0.72)}),
    # rft: val means 0.30, 0.50, 0.50 -> a tie between E=2 and E=4 goes to the shorter, E=2: test 0.60, 0.64
    grid_row("rft-g0", "rft", 0, {"1": (0.30, 0.30), "2": (0.50, 0.60), "4": (0.50, 0.90)}),
    grid_row("rft-g1", "rft", 1, {"1": (0.30, 0.32), "2": (0.50, 0.64), "4": (0.50, 0.92)}),
]


def test_table1_reports_each_method_at_the_length_its_validation_score_chose():
    """Not the best test score (E=4 for both) and not the last point: the validation argmax per cell."""
    assert report.select_length(GRID_ROWS[:2]) == "2"
    assert report.select_length(GRID_ROWS[2:]) == "2"
    t1 = report.table1(GRID_ROWS)
    cells = {line[0]: line[1] for line in t1.body}
    assert (
        cells["sft @ shots:1"].startswith("56.0 ± 1.4 (n=2)") and "E=2 (14 steps)" in cells["sft @ shots:1"]
    )
    assert (
        cells["rft @ shots:1"].startswith("62.0 ± 2.8 (n=2)") and "E=2 (14 steps)" in cells["rft @ shots:1"]
    )
    assert cells["Δ(RFT−SFT) @ shots:1"].startswith("+6.0")
    assert any("validation accuracy chose" in note for note in t1.notes)


def test_table1b_compares_the_methods_at_every_equal_length():
    t1b = report.table1b(GRID_ROWS)
    cells = {line[0]: line[1] for line in t1b.body}
    assert list(cells) == [f"Δ(RFT−SFT) @ shots:1, E={e}" for e in ("1", "2", "4")]
    assert cells["Δ(RFT−SFT) @ shots:1, E=1"].startswith("-15.0")  # 31.0 - 46.0
    assert cells["Δ(RFT−SFT) @ shots:1, E=4"].startswith("+20.0")  # 91.0 - 71.0
    deltas = {r["epochs"]: r["mean"] for r in t1b.records}
    assert deltas == pytest.approx({"1": -15.0, "2": 6.0, "4": 20.0})


def test_rows_without_a_grid_keep_their_final_score_and_table1b_says_it_is_empty():
    plain = [ResultRow.from_record(result_row("s", "sft", FGVC, "shots:1", 0, 0.5))]
    assert report.select_length(plain) is None
    assert report.table1(plain).body[1][1] == "50.0 ± – (n=1)"
    assert report.table1b(plain).body == [] and "schedule=grid" in report.table1b(plain).notes[0]


def test_table2_lists_the_plain_length_forms_after_the_levels_when_run():
    # the paper's plain forms are not ablation levels: no row, no line; a row gets its label after the four
    rows = [
        ResultRow.from_record(result_row(f"rft-{r}", "rft", FGVC, "shots:4", 0, 0.5, reward=r))
        for r in ("acc_format", "length_norm", "length_norm_group_plain")
    ]
    cells = grid(report.table2(rows))
    assert list(cells) == [*report.REWARD_LEVELS, "length_norm_group_plain"]
    assert cells["length_norm_group_plain"]["level"] == "think + length (group, plain)"


def test_table2_think_tokens_come_from_the_chosen_length():
    rows = [
        ResultRow.from_record({**row.to_record(), "reward": reward})
        for row in GRID_ROWS[2:]
        for reward in ("acc_format", "length_norm")
    ]
    t2 = report.table2(rows)
    line = next(line for line in t2.body if line[1] == "length_norm")
    assert line[3].startswith("62.0") and line[4].startswith("6.0 ± 0.0")  # E=2: 3.0 x 2 think tokens


def test_table_notes_state_the_smallest_resolvable_difference(built):
    """FGVC's trained cells in table 1: means 45, 60, 75 -> p 0.6; stds 10 and 13.23 pool to 11.73 points, of which
    sqrt(0.1173^2 - 0.6 x 0.4 / 128) = 10.90 points is between seeds; 3 seeds x 128 questions (eval/n)."""
    from rft.report import power

    want = 100 * power.mde(128, 3, 0.6, math.sqrt((0.01 + 0.0175) / 2 - 0.6 * 0.4 / 128))
    note = next(n for n in built.tables[0].notes if n.startswith("Resolvable difference"))
    assert f"{FGVC} ≥ {want:.1f} points (3 seeds × 128 test questions)" in note
    assert want > 15.0  # a 15-point Δ at these spreads is not resolved: the note is what says so
