"""tiny_base (rft/testbed.py): its corpus is disjoint from the target tasks, it builds once and is cached, the tiny
study's sweeps compose, and a failing job in a multirun records its row without losing the others.

python -m pytest -q tests/test_testbed.py
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rft import models, pipeline, testbed
from rft.config import ModelConfig, RunConfig, SFTConfig
from rft.data.draw import COLOURS
from rft.data.registry import build_task
from rft.sft import sft_target

REPO = Path(__file__).resolve().parents[1]
# A reduced tiny_base for tests (the real one, PRETRAIN["steps"], is built by `make tiny-base`).
TEST_STEPS = 3


def image_digests(samples) -> set[str]:
    return {hashlib.sha1(img.tobytes()).hexdigest() for s in samples for img in s.images}


def object_radius(image, rgb) -> float:
    """Half the larger pixel extent of the `rgb`-coloured region, as a fraction of the image side."""
    pixels = np.asarray(image.convert("RGB"))
    ys, xs = np.nonzero((pixels == rgb).all(-1))
    return max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) / 2 / pixels.shape[1]


def test_corpus_is_disjoint_from_the_target_tasks():
    """No corpus image is a target image, and the corpus draws its objects at sizes the targets never use."""
    corpus = testbed.make_corpus(480, seed=0)
    rows = corpus.split("train")
    # The target tasks at their conf/task defaults (the splits every tiny run trains and evaluates on).
    fgvc = build_task("fgvc_synth", train_size=32, test_size=8, image_size=112)
    sat = build_task("sat_synth", train_size=512, test_size=128, image_size=112)
    targets = [s for t in (fgvc, sat) for split in ("train", "test") for s in t.split(split)]
    assert not image_digests(rows) & image_digests(targets), "a corpus image equals a target image"

    def radii(samples, glyph: bool) -> list[float]:
        out = []
        for s in samples:
            img = s.images[0]
            if glyph:  # the glyph's colour is the most frequent non-background, non-white colour
                colours = [c for c in img.convert("RGB").getcolors(1 << 16) if c[1] in COLOURS.values()]
                out.append(object_radius(img, max(colours)[1]))
            else:
                names = re.findall(r"the (\w+) (?:circle|square|triangle|kite)", s.question)
                if len(set(names)) == 2:  # same-coloured objects would merge into one region
                    out += [object_radius(img, COLOURS[c]) for c in names]
        return out

    # sat_synth draws r = 0.12 (measured 0.120-0.125); the corpus draws 0.09-0.11 or 0.13-0.22 (measured <= 0.116
    # or >= 0.134).
    sat_r = radii(sat.split("test"), glyph=False)
    assert sat_r and all(0.119 < r < 0.127 for r in sat_r), (min(sat_r), max(sat_r))
    corpus_r = radii([s for s in rows if s.qtype == "relation"], glyph=False)
    assert len(corpus_r) > 100 and not [r for r in corpus_r if 0.118 < r < 0.13]
    # fgvc_synth draws r = 0.28-0.36; the corpus draws 0.20-0.27 or 0.37-0.42 (a pentagon measures 0.95 r).
    fgvc_r = radii(fgvc.split("test"), glyph=True)
    assert sum(0.285 < r < 0.345 for r in fgvc_r) > len(fgvc_r) / 2
    corpus_r = radii([s for s in rows if s.qtype.startswith("glyph")], glyph=True)
    assert len(corpus_r) > 100 and not [r for r in corpus_r if 0.285 < r < 0.345]


def test_corpus_covers_every_question_type_and_both_prompts():
    rows = testbed.make_corpus(160, seed=0).split("train")
    assert {s.qtype for s in rows} == set(testbed.GENERATORS)
    thinking = [s for s in rows if s.rationale]
    traced = [s for s in rows if s.qtype != "glyph_silhouette"]  # the perception warm-up is answer-only
    assert not [s for s in rows if s.qtype == "glyph_silhouette" and s.rationale]
    assert 0.6 < len(thinking) / len(traced) < 0.9  # NOTHINK_FRACTION of the others are answer-only
    s = thinking[0]
    assert sft_target(s) == f"<think> {s.rationale} </think> <answer>{s.answer}</answer>"
    plain = next(s for s in rows if not s.rationale)
    assert sft_target(plain) == f"<answer>{plain.answer}</answer>"
    # The same seed renders the same corpus (the cache key relies on it).
    again = testbed.make_corpus(160, seed=0).split("train")
    assert image_digests(rows) == image_digests(again)


def test_phase_steps_split_any_total_in_proportion():
    full = testbed.PRETRAIN["steps"]
    assert testbed.phase_steps(full) == [phase.steps for phase in testbed.PHASES]
    for steps in (len(testbed.PHASES), 4, 7, 100, 1001):
        split = testbed.phase_steps(steps)
        assert sum(split) == steps and min(split) >= 1
    assert testbed.phase_steps(100) == [14, 7, 79]  # 800 : 400 : 4500 of 5700
    with pytest.raises(ValueError, match="at least 3 SFT steps"):
        testbed.phase_steps(2)


@pytest.fixture(scope="session")
def tiny_base_dir():
    """A reduced tiny_base (TEST_STEPS SFT steps), built once per test session in the test cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(testbed.PRETRAIN, "steps", TEST_STEPS)
        cache = Path(os.environ["RFT_CACHE"]) / "models"
        t0 = time.perf_counter()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # not BUILD_THREADS, so a build that did not give its threads back is caught
        try:
            out = testbed.build_tiny_base(cache, seed=0)
            assert torch.get_num_threads() == 1  # the build pins its own threads and gives them back
        finally:
            torch.set_num_threads(threads)
        yield out, time.perf_counter() - t0, cache


def test_tiny_base_builds_once_and_is_cached(tiny_base_dir):
    out, build_s, cache = tiny_base_dir
    assert (out / "config.json").is_file()
    # One metrics file per pretraining phase; the phases' steps add up to the requested total.
    phases = sorted((out / "pretrain").glob("phase*/metrics.jsonl"))
    assert len(phases) == len(testbed.PHASES)
    steps = [json.loads(line) for f in phases for line in f.read_text().splitlines()]
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
        cfg = RunConfig(
            method=SFTConfig(),
            model=ModelConfig(id="tiny_base", min_pixels=784, max_pixels=12544, cache_dir=str(cache)),
        )
        assert pipeline.model_dir(cfg) == str(out)
        model, processor = models.load_model(cfg.model, pipeline.model_dir(cfg))
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


def test_relation_trace_describes_the_image_in_order():
    """The trace names the objects in image order (left/top first) and restates the asked one with its side."""
    rows = [
        s for s in testbed.make_corpus(480, seed=0).split("train") if s.qtype == "relation" and s.rationale
    ]
    checked = 0
    for s in rows:
        # "<c1> <s1> <side> <c2> <s2> <side> so <c> <s> <answer>"
        words = s.rationale.split()
        assert words[6] == "so" and words[-1] == s.answer
        a_name, b_name = " ".join(words[0:2]), " ".join(words[3:5])
        assert (words[2], words[5]) in (("left", "right"), ("above", "below"))
        asked_name = " ".join(words[7:9])
        assert s.question.startswith(f"Is the {asked_name} ")
        assert s.answer == (words[2] if asked_name == a_name else words[5])
        # The first-named object really is left of (above) the second: compare the centroids of their colours.
        ca, cb = a_name.split()[0], b_name.split()[0]
        if ca == cb:
            continue
        pixels = np.asarray(s.images[0].convert("RGB"))
        axis = 1 if words[2] == "left" else 0
        centre = [np.argwhere((pixels == COLOURS[c]).all(-1))[:, axis].mean() for c in (ca, cb)]
        assert centre[0] < centre[1], (s.rationale, centre)
        checked += 1
    assert checked > 40


def test_small_preset_lets_the_lm_see_image_positions(tmp_path):
    """tiny_base's base preset turns its height and width RoPE frequencies by > 0.1 rad per grid step."""
    from transformers import AutoConfig

    spec = ModelConfig(id="small", min_pixels=784, max_pixels=12544, cache_dir=str(tmp_path))
    cfg = AutoConfig.from_pretrained(models.resolve_model_dir(spec)).text_config
    theta, (t, h, w) = cfg.rope_parameters["rope_theta"], cfg.rope_parameters["mrope_section"]
    half = cfg.hidden_size // cfg.num_attention_heads // 2
    assert t + h + w == half
    lowest_h, lowest_w = theta ** (-2 * (t + h - 1) / (2 * half)), theta ** (-2 * (half - 1) / (2 * half))
    assert lowest_h > 0.1 and lowest_w > 0.1, (theta, (t, h, w))


def test_the_shipped_build_installs_without_pretraining(tiny_base_dir, tmp_path, monkeypatch):
    """A shipped copy of the exact build (name and checksum) is copied into the cache; no SFT runs. A damaged
    copy is refused with the fix."""
    import shutil

    out, _, _ = tiny_base_dir
    ship = tmp_path / "ship"
    shutil.copytree(out, ship, ignore=shutil.ignore_patterns("pretrain"))
    digest = testbed.sha256(ship / testbed.WEIGHTS)
    (ship / "BUILD.json").write_text(json.dumps({"name": out.name, "sha256": digest}))
    monkeypatch.setattr(testbed, "SHIPPED", ship)
    monkeypatch.setitem(testbed.PRETRAIN, "steps", TEST_STEPS)
    monkeypatch.setattr(
        testbed.sft, "train", lambda *a, **k: pytest.fail("the shipped build needs no pretraining")
    )
    got = testbed.build_tiny_base(tmp_path / "cache", seed=0)
    assert got.name == out.name and testbed.sha256(got / testbed.WEIGHTS) == digest
    assert (got / "config.json").is_file() and not (got / "BUILD.json").exists()
    with open(ship / testbed.WEIGHTS, "ab") as f:  # a damaged checkout
        f.write(b"\0")
    with pytest.raises(RuntimeError, match="does not match the sha256"):
        testbed.build_tiny_base(tmp_path / "other-cache", seed=0)


def test_the_shipped_assets_are_the_current_recipe(monkeypatch):
    """rft/assets/tiny_base is the default build of today's recipe: its name is the cache key the recipe gives and
    its weights match the recorded sha256 (`make tiny-base` rebuilds it and compares bit for bit)."""
    build = json.loads((testbed.SHIPPED / "BUILD.json").read_text())
    default_steps = sum(phase.steps for phase in testbed.PHASES)
    monkeypatch.setitem(testbed.PRETRAIN, "steps", default_steps)  # the session fixture builds a reduced one
    expected = testbed.tiny_base_dir(Path("/cache"), 0, default_steps).name
    assert build["name"] == expected, "the recipe changed: rebuild and re-ship rft/assets/tiny_base"
    assert testbed.sha256(testbed.SHIPPED / testbed.WEIGHTS) == build["sha256"]
