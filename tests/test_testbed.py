"""tiny_base (rft/testbed.py): its corpus is disjoint from the target tasks, it builds once and is cached, the tiny
study's sweeps compose, and a failing job in a multirun records its row without losing the others.

python -m pytest -q tests/test_testbed.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rft import models, testbed
from rft.sft import sft_target
from rft.tasks import GLYPH_CLASSES, build_task

REPO = Path(__file__).resolve().parents[1]
# A reduced tiny_base for tests (the real one, PRETRAIN["steps"], is built by `make tiny-base`).
TEST_STEPS = 3


def image_digests(samples) -> set[str]:
    return {hashlib.sha1(img.tobytes()).hexdigest() for s in samples for img in s.images}


def test_corpus_is_disjoint_from_the_target_tasks():
    corpus = testbed.make_corpus(480, seed=0)
    rows = corpus.split("train")
    # The target tasks at their conf/task defaults (the splits every tiny run trains and evaluates on).
    fgvc = build_task("fgvc_synth", train_size=32, test_size=8, image_size=112)
    sat = build_task("sat_synth", train_size=512, test_size=128, image_size=112)
    targets = [s for t in (fgvc, sat) for split in ("train", "test") for s in t.split(split)]

    assert not image_digests(rows) & image_digests(targets), "a corpus image equals a target image"
    target_pairs = {
        (t.prompt(s, think), s.answer)
        for t in (fgvc, sat)
        for split in ("train", "test")
        for s in t.split(split)
        for think in (True, False)
    }
    corpus_pairs = {(corpus.prompt(s, True), s.answer) for s in rows}
    assert not corpus_pairs & target_pairs
    target_questions = {s.question for s in targets}
    assert not {s.question for s in rows} & target_questions
    # No fgvc_synth class name is ever an answer or part of a trace.
    assert not {s.answer for s in rows} & set(GLYPH_CLASSES)
    assert not {s.rationale.replace(" ", "-") for s in rows} & set(GLYPH_CLASSES)


def test_corpus_covers_every_question_type_and_both_prompts():
    rows = testbed.make_corpus(160, seed=0).split("train")
    assert {s.qtype for s in rows} == set(testbed.GENERATORS)
    thinking = [s for s in rows if s.rationale]
    assert 0.6 < len(thinking) / len(rows) < 0.9  # NOTHINK_FRACTION of the samples are answer-only
    s = thinking[0]
    assert sft_target(s) == f"<think> {s.rationale} </think> <answer>{s.answer}</answer>"
    plain = next(s for s in rows if not s.rationale)
    assert sft_target(plain) == f"<answer>{plain.answer}</answer>"
    # The same seed renders the same corpus (the cache key relies on it).
    again = testbed.make_corpus(160, seed=0).split("train")
    assert image_digests(rows) == image_digests(again)


@pytest.fixture(scope="session")
def tiny_base_dir():
    """A reduced tiny_base (TEST_STEPS SFT steps), built once per test session in the test cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(testbed.PRETRAIN, "steps", TEST_STEPS)
        cache = Path(os.environ["RFT_CACHE"]) / "models"
        t0 = time.perf_counter()
        out = testbed.build_tiny_base(cache, seed=0)
        yield out, time.perf_counter() - t0, cache


def test_tiny_base_builds_once_and_is_cached(tiny_base_dir):
    out, build_s, cache = tiny_base_dir
    assert (out / "config.json").is_file() and (out / "pretrain" / "metrics.jsonl").is_file()
    steps = [json.loads(line) for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert len(steps) == TEST_STEPS
    mtime = (out / "config.json").stat().st_mtime
    t0 = time.perf_counter()
    assert testbed.build_tiny_base(cache, seed=0, steps=TEST_STEPS) == out
    assert time.perf_counter() - t0 < 1.0 and (out / "config.json").stat().st_mtime == mtime
    assert not [p for p in cache.iterdir() if p.name.startswith(".")], "a temp build folder was left behind"
    # The key changes with anything that determines the weights.
    assert testbed.tiny_base_dir(cache, 1, TEST_STEPS) != out
    assert testbed.tiny_base_dir(cache, 0, TEST_STEPS + 1) != out


def test_model_tiny_base_resolves_to_the_testbed(tiny_base_dir):
    out, _, cache = tiny_base_dir
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(testbed.PRETRAIN, "steps", TEST_STEPS)
        spec = models.ModelSpec(
            id="tiny_base", path=None, builtin=True, seed=0, dtype="float32", attn_implementation="sdpa",
            min_pixels=784, max_pixels=12544, trust_remote_code=False, cache_dir=str(cache),
        )  # fmt: skip
        assert models.resolve_model_dir(spec) == str(out)
        model, processor = models.load_model(spec)
    assert model.config.model_type == "qwen2_vl" and processor.tokenizer.eos_token == "<|im_end|>"


def test_failed_job_keeps_the_sweep_going(tmp_path):
    """Two SFT jobs; the second uses an absurd LR, so its loss turns non-finite at step 2 and training raises."""
    results = tmp_path / "results.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "run.py"),
            "-m",
            "method=sft_tiny",
            "method.lr=1e-3,1e30",
            "method.epochs=1",
            "method.max_new_tokens=4",
            "task.train_size=16",
            "task.test_size=4",
            "task.image_size=56",
            "budget.size=16",
            "logger=none",
            f"results_csv={results}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(results.open()))
    assert [r["status"] for r in rows] == ["finished", "failed"], rows
    assert "FloatingPointError" in rows[1]["error"] and "lower method.lr" in rows[1]["error"]
    failed = json.loads(next((tmp_path / "sweep").glob("1_*/results.json")).read_text())
    assert failed["status"] == "failed"
    assert "recorded with status=failed" in proc.stderr + proc.stdout
