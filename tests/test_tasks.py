"""Data tier: synthetic tasks are deterministic, budgets are seeded, nested and never touch the test split.

python -m pytest -q tests/test_tasks.py
"""

from __future__ import annotations

from collections import Counter

import pytest

from rft.data.base import accepted_answers
from rft.data.budget import BudgetError, PromptStream, apply_budget
from rft.data.draw import GLYPH_CLASSES
from rft.data.registry import build_task


def fgvc(seed=0):
    return build_task("fgvc_synth", data_seed=seed, image_size=56, train_size=6, test_size=2)


def sat(seed=0):
    return build_task("sat_synth", data_seed=seed, image_size=56, train_size=40, test_size=10)


def test_rendering_is_deterministic_from_the_data_seed():
    a, b = fgvc(), fgvc()
    assert [s.images[0].tobytes() for s in a.split("train")] == [
        s.images[0].tobytes() for s in b.split("train")
    ]
    c = fgvc(seed=1)
    assert a.split("train")[0].images[0].tobytes() != c.split("train")[0].images[0].tobytes()
    assert [s.question for s in sat().split("test")] == [s.question for s in sat().split("test")]


def test_fgvc_synth_has_16_fine_grained_classes_and_disjoint_splits():
    t = fgvc()
    assert len(t.classes) == 16 and Counter(s.label for s in t.split("train")) == {c: 6 for c in t.classes}
    train_pixels = {s.images[0].tobytes() for s in t.split("train")}
    assert not train_pixels & {s.images[0].tobytes() for s in t.split("test")}


def test_multiple_choice_accepts_option_text_or_letter_and_shuffles():
    rows = sat().split("train")
    for s in rows:
        assert s.answer in s.options and set(s.options) in ({"left", "right"}, {"above", "below"})
        letter = "ab"[s.options.index(s.answer)]
        assert accepted_answers(s) == frozenset({s.answer, letter})
    assert len({s.options[0] for s in rows if s.qtype == "left_right"}) == 2  # both orders occur


def test_prompts_carry_the_think_or_nothink_instruction():
    t, s = fgvc(), fgvc().split("train")[0]
    assert "<think> </think>" in t.prompt(s, True) and "<think>" not in t.prompt(s, False)
    m = sat()
    q = m.split("train")[0]
    assert q.question in m.prompt(q, True) and "(A)" in m.prompt(q, True) and "(B)" in m.prompt(q, True)


def test_shot_budget_is_balanced_seeded_and_nested():
    pool = fgvc().split("train")
    two = apply_budget(pool, "shots", 2, seed=0)
    assert Counter(s.label for s in two) == {c: 2 for c in GLYPH_CLASSES}
    assert [s.uid for s in two] == [s.uid for s in apply_budget(pool, "shots", 2, seed=0)]
    assert {s.uid for s in two} != {s.uid for s in apply_budget(pool, "shots", 2, seed=1)}
    four = apply_budget(pool, "shots", 4, seed=0)
    assert {s.uid for s in two} <= {s.uid for s in four}


def test_sample_budget_and_errors():
    pool = sat().split("train")
    ten = apply_budget(pool, "samples", 10, seed=0)
    assert len(ten) == 10 and {s.uid for s in ten} <= {s.uid for s in apply_budget(pool, "samples", 20, 0)}
    assert all(s.uid.startswith("train-") for s in ten)  # the test split is never sampled
    with pytest.raises(BudgetError, match="larger than the train pool"):
        apply_budget(pool, "samples", 41, seed=0)
    with pytest.raises(BudgetError, match="larger than class"):
        apply_budget(fgvc().split("train"), "shots", 7, seed=0)
    with pytest.raises(BudgetError, match="needs class labels"):
        apply_budget(pool, "shots", 1, seed=0)


def test_prompt_stream_is_seeded_and_crosses_epochs():
    pool = sat().split("train")[:5]
    a, b = PromptStream(pool, seed=0), PromptStream(pool, seed=0)
    first = [s.uid for s in a.take(7)]
    assert first == [s.uid for s in b.take(7)]
    assert sorted(first[:5]) == sorted(s.uid for s in pool) and a.epoch == 1
    c = PromptStream(pool, seed=0)
    c.load_state(b.state())
    assert [s.uid for s in c.take(3)] == [s.uid for s in b.take(3)]
