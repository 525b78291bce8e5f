"""Unit tests for the one answer matcher that the accuracy reward and evaluation share, and the eval metrics.

FGVC-Aircraft cases use the real 100 variants with the family and manufacturer the official annotation files give
them; multiple-choice cases use SAT-style questions with shuffled options and a banner question with signed
percentages. Every expectation is by hand. Most cases are graded twice: with the rival names a task gives its rows
(`rival_answers`, what training and evaluation use) and without them (the matcher's strict fallback).

    python -m pytest -q tests/test_scoring.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from rft.data.base import DataError, Sample, Task, accepted_answers, rival_answers, with_rivals
from rft.data.fgvc import fgvc_hierarchy, qualified_names
from rft.data.registry import build_task
from rft.evaluate import eval_metrics, prediction_row
from rft.rewards import (
    REWARDS,
    RewardInputs,
    grade_answer,
    is_correct,
    is_visualrft_correct,
    normalize_answer,
)
from rft.rollout import Rollout, score_rollout

# FGVC-Aircraft 2013b: the 100 variants (variants.txt order) with their family and manufacturer, as the official
# images_{variant,family,manufacturer}_*.txt files pair them.
FGVC_TABLE = """
707-320 | Boeing 707 | Boeing
727-200 | Boeing 727 | Boeing
737-200 | Boeing 737 | Boeing
737-300 | Boeing 737 | Boeing
737-400 | Boeing 737 | Boeing
737-500 | Boeing 737 | Boeing
737-600 | Boeing 737 | Boeing
737-700 | Boeing 737 | Boeing
737-800 | Boeing 737 | Boeing
737-900 | Boeing 737 | Boeing
747-100 | Boeing 747 | Boeing
747-200 | Boeing 747 | Boeing
747-300 | Boeing 747 | Boeing
747-400 | Boeing 747 | Boeing
757-200 | Boeing 757 | Boeing
757-300 | Boeing 757 | Boeing
767-200 | Boeing 767 | Boeing
767-300 | Boeing 767 | Boeing
767-400 | Boeing 767 | Boeing
777-200 | Boeing 777 | Boeing
777-300 | Boeing 777 | Boeing
A300B4 | A300 | Airbus
A310 | A310 | Airbus
A318 | A320 | Airbus
A319 | A320 | Airbus
A320 | A320 | Airbus
A321 | A320 | Airbus
A330-200 | A330 | Airbus
A330-300 | A330 | Airbus
A340-200 | A340 | Airbus
A340-300 | A340 | Airbus
A340-500 | A340 | Airbus
A340-600 | A340 | Airbus
A380 | A380 | Airbus
ATR-42 | ATR-42 | ATR
ATR-72 | ATR-72 | ATR
An-12 | An-12 | Antonov
BAE 146-200 | BAE 146 | British Aerospace
BAE 146-300 | BAE 146 | British Aerospace
BAE-125 | BAE-125 | British Aerospace
Beechcraft 1900 | Beechcraft 1900 | Beechcraft
Boeing 717 | Boeing 717 | Boeing
C-130 | C-130 | Lockheed Corporation
C-47 | C-47 | Douglas Aircraft Company
CRJ-200 | CRJ-200 | Canadair
CRJ-700 | CRJ-700 | Canadair
CRJ-900 | CRJ-700 | Canadair
Cessna 172 | Cessna 172 | Cessna
Cessna 208 | Cessna 208 | Cessna
Cessna 525 | Cessna Citation | Cessna
Cessna 560 | Cessna Citation | Cessna
Challenger 600 | Challenger 600 | Canadair
DC-10 | DC-10 | McDonnell Douglas
DC-3 | DC-3 | Douglas Aircraft Company
DC-6 | DC-6 | Douglas Aircraft Company
DC-8 | DC-8 | Douglas Aircraft Company
DC-9-30 | DC-9 | McDonnell Douglas
DH-82 | DH-82 | de Havilland
DHC-1 | DHC-1 | de Havilland
DHC-6 | DHC-6 | de Havilland
DHC-8-100 | Dash 8 | de Havilland
DHC-8-300 | Dash 8 | de Havilland
DR-400 | DR-400 | Robin
Dornier 328 | Dornier 328 | Dornier
E-170 | Embraer E-Jet | Embraer
E-190 | Embraer E-Jet | Embraer
E-195 | Embraer E-Jet | Embraer
EMB-120 | EMB-120 | Embraer
ERJ 135 | Embraer ERJ 145 | Embraer
ERJ 145 | Embraer ERJ 145 | Embraer
Embraer Legacy 600 | Embraer Legacy 600 | Embraer
Eurofighter Typhoon | Eurofighter Typhoon | Eurofighter
F-16A/B | F-16 | Lockheed Martin
F/A-18 | F/A-18 | McDonnell Douglas
Falcon 2000 | Falcon 2000 | Dassault Aviation
Falcon 900 | Falcon 900 | Dassault Aviation
Fokker 100 | Fokker 100 | Fokker
Fokker 50 | Fokker 50 | Fokker
Fokker 70 | Fokker 70 | Fokker
Global Express | Global Express | Bombardier Aerospace
Gulfstream IV | Gulfstream | Gulfstream Aerospace
Gulfstream V | Gulfstream | Gulfstream Aerospace
Hawk T1 | Hawk T1 | British Aerospace
Il-76 | Il-76 | Ilyushin
L-1011 | L-1011 | Lockheed Corporation
MD-11 | MD-11 | McDonnell Douglas
MD-80 | MD-80 | McDonnell Douglas
MD-87 | MD-80 | McDonnell Douglas
MD-90 | MD-90 | McDonnell Douglas
Metroliner | Metroliner | Fairchild
Model B200 | King Air | Beechcraft
PA-28 | PA-28 | Piper
SR-20 | SR-20 | Cirrus Aircraft
Saab 2000 | Saab 2000 | Saab
Saab 340 | Saab 340 | Saab
Spitfire | Spitfire | Supermarine
Tornado | Tornado | Panavia
Tu-134 | Tu-134 | Tupolev
Tu-154 | Tu-154 | Tupolev
Yak-42 | Yak-42 | Yakovlev
"""
ROWS = [tuple(part.strip() for part in line.split("|")) for line in FGVC_TABLE.strip().splitlines()]
HIERARCHY = {v: (f, m) for v, f, m in ROWS}
VARIANTS = [v for v, _, _ in ROWS]
NAMES = qualified_names(HIERARCHY, "variant")


def fgvc_sample(variant: str) -> Sample:
    """A row of the variant, without rival names (as a row made by hand)."""
    return Sample(uid=variant, images=(), question="", answer=variant, label=variant, aliases=NAMES[variant])


def level_rows(level: str) -> dict[str, Sample]:
    """label -> one row of FGVC-Aircraft at an annotation level, with the aliases and rivals a `Task` gives it."""
    pick = {"variant": 0, "family": 1, "manufacturer": 2}[level]
    labels = list(dict.fromkeys(row[pick] for row in ROWS))
    names = qualified_names(HIERARCHY, level)
    rows = [
        Sample(uid=x, images=(), question="", answer=x, label=x, aliases=names.get(x, ())) for x in labels
    ]
    task = Task(name="fgvc", kind="classification", splits={"test": rows}, classes=tuple(labels))
    return {s.label: s for s in task.split("test")}


VARIANT_ROWS = level_rows("variant")
FAMILY_ROWS = level_rows("family")
MAKER_ROWS = level_rows("manufacturer")


def answer(text: str) -> str:
    return f"<think>The aircraft in the image.</think> <answer>{text}</answer>"


def graded(text: str, sample: Sample, rivals: bool = True) -> bool:
    """`is_correct` of `<answer>text</answer>` for `sample`, with its rival names (as training and evaluation
    grade) or without them."""
    return is_correct(answer(text), accepted_answers(sample), rival_answers(sample) if rivals else None)


def with_maker(variant: str) -> str:
    """The variant as a person writes it with its manufacturer: "Boeing 707-320", but "Cessna 172" as it is."""
    maker = HIERARCHY[variant][1]
    return variant if normalize_answer(variant).startswith(normalize_answer(maker)) else f"{maker} {variant}"


# --- FGVC-Aircraft: the label with its parent names -------------------------------------------------------------


def test_the_table_is_fgvc_aircraft_2013b() -> None:
    assert len(VARIANTS) == len(set(VARIANTS)) == 100
    assert len({f for f, _ in HIERARCHY.values()}) == 70
    assert len({m for _, m in HIERARCHY.values()}) == 30
    # the count: 82 variant names do not start with their manufacturer
    assert (
        sum(
            not normalize_answer(v).startswith(normalize_answer(m.split()[0]))
            for v, (_, m) in HIERARCHY.items()
        )
        == 82
    )


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_scores_bare_and_with_its_manufacturer(variant: str) -> None:
    for s in (fgvc_sample(variant), VARIANT_ROWS[variant]):  # without and with rival names
        assert graded(variant, s)
        assert graded(with_maker(variant), s)
        assert graded(with_maker(variant).upper(), s)
        assert graded(f"It is a {with_maker(variant)}.", s)
        assert graded(f"\\boxed{{{variant}}}", s)
        assert graded(variant.replace("-", " "), s)


def test_accepted_sets_never_overlap() -> None:
    seen: dict[str, str] = {}
    for v in VARIANTS:
        for key in accepted_answers(fgvc_sample(v)):
            assert key not in seen, f"{key!r} names both {seen.get(key)} and {v}"
            seen[key] = v


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_manufacturer_form_of_one_variant_never_scores_for_another(variant: str) -> None:
    text = with_maker(variant)
    assert [v for v in VARIANTS if graded(text, fgvc_sample(v), rivals=False)] == [variant]
    assert [v for v in VARIANTS if graded(text, VARIANT_ROWS[v])] == [variant]
    assert [
        v for v in VARIANTS if graded(f"The aircraft is a {text} (Next Generation)", VARIANT_ROWS[v])
    ] == [variant]


def test_the_rows_of_a_task_share_one_rival_set_per_class() -> None:
    rows = [fgvc_sample(v) for v in ("737-800", "737-800", "A320")]
    task = Task(name="fgvc", kind="classification", splits={"test": rows}, classes=tuple(VARIANTS))
    a, b, c = task.split("test")
    assert a.rivals is b.rivals and a.rivals is not c.rivals
    assert rival_answers(a) == a.rivals and "a 320" in a.rivals and "737 800" not in a.rivals
    assert "airbus a 320" in a.rivals and "boeing 737 800" in c.rivals  # other classes' aliases
    assert "737 900" in a.rivals  # every class of `classes`, even one no row has
    assert a == fgvc_sample("737-800")  # rivals are derived, not part of what the row is
    assert rival_answers(fgvc_sample("737-800")) is None  # a row made by hand: the strict fallback
    assert with_rivals({"test": [a]}, ["x"])["test"][0].rivals is a.rivals  # set rivals are kept


@pytest.mark.parametrize(
    ("text", "variant", "expected"),
    [
        ("Boeing 707-320", "707-320", True),  # the case: 0 before
        ("Boeing 707 707-320", "707-320", True),  # manufacturer + family + variant
        ("boeing_707-320.", "707-320", True),
        ("Airbus A300B4", "A300B4", True),
        ("Douglas DC-3", "DC-3", True),  # short name of Douglas Aircraft Company
        ("Douglas Aircraft Company DC-3", "DC-3", True),
        ("McDonnell Douglas MD-87", "MD-87", True),
        ("Embraer E-Jet E-190", "E-190", True),  # family + variant
        ("Embraer E-190", "E-190", True),
        ("Cessna Citation 525", "Cessna 525", True),
        ("Beechcraft King Air Model B200", "Model B200", True),
        ("de Havilland Dash 8 DHC-8-300", "DHC-8-300", True),
        ("Lockheed Martin F-16A/B", "F-16A/B", True),
        ("Gulfstream Aerospace Gulfstream IV", "Gulfstream IV", True),
        # still rejected: another variant, a family or number alone, hedges, several or empty answers
        ("Boeing 727-200", "707-320", False),
        ("Boeing 707", "707-320", False),  # the family alone
        ("707", "707-320", False),
        ("Boeing", "707-320", False),
        ("", "707-320", False),
        ("Boeing 707-320 or Boeing 727-200", "707-320", False),
        ("707-320 / 727-200", "707-320", False),
        ("A320 A321", "A321", False),  # a family that is another variant's name reads as two answers
        ("A320 A321", "A320", False),
        ("Airbus A320 A321", "A321", False),
        ("MD-80 MD-87", "MD-87", False),
        ("CRJ-700 CRJ-900", "CRJ-900", False),
        ("Embraer ERJ 145 ERJ 135", "ERJ 135", False),
        ("Embraer ERJ 145", "ERJ 135", False),
        ("Airbus 707-320", "707-320", False),  # the wrong manufacturer
        ("Boeing 737 707-320", "707-320", False),  # the wrong family
    ],
)
def test_fgvc_answers(text: str, variant: str, expected: bool) -> None:
    assert graded(text, fgvc_sample(variant), rivals=False) is expected
    assert graded(text, VARIANT_ROWS[variant]) is expected


# How a model phrases a right answer: each names the label, and nothing else the task could mean.
PHRASINGS = [
    ("737-800", "737-800"),
    ("It is a Boeing 737-800.", "737-800"),
    ("737 800", "737-800"),
    ("737_800", "737-800"),
    ("\\boxed{737-800}", "737-800"),
    ("$\\boxed{\\text{Boeing 737-800}}$", "737-800"),
    ("Boeing 737-800 (Next Generation)", "737-800"),  # a parenthetical that names no rival
    ("The aircraft is a 737-800", "737-800"),
    ("The answer is: **737-800**", "737-800"),
    ("\uff17\uff13\uff17\uff0d\uff18\uff10\uff10", "737-800"),  # full-width
    ("737\u2013800", "737-800"),  # en dash
    ("Boeing 737 family, 737-800 variant", "737-800"),  # its own family, as words of its own name
    ("Airbus A-320", "A320"),
    ("A 320", "A320"),
    ("an Airbus A320", "A320"),
    ("Boeing 707-320", "707-320"),
    ("Boeing 707 707-320", "707-320"),
    ("de Havilland Canada DHC-8-300 Dash 8", "DHC-8-300"),
    ("Lockheed Martin F-16A/B", "F-16A/B"),
    ("F/A-18", "F/A-18"),
    ("An-12", "An-12"),
]


@pytest.mark.parametrize(("text", "variant"), PHRASINGS)
def test_a_right_answer_scores_however_it_is_phrased(text: str, variant: str) -> None:
    assert graded(text, VARIANT_ROWS[variant])
    assert [v for v in VARIANTS if graded(text, VARIANT_ROWS[v])] == [variant]


# What a careful grader marks wrong although the label may occur in it.
REFUSALS = [
    ("A320", "A321"),  # a neighbouring variant
    ("A330-300", "A330-200"),
    ("737-900", "737-800"),
    ("737-800 or 737-900", "737-800"),  # two candidates
    ("737-800, 737-900", "737-800"),
    ("A320 A321", "A320"),
    ("A320 A321", "A321"),
    ("MD-80 MD-87", "MD-87"),
    ("MD-80 MD-87", "MD-80"),
    ("Boeing 737", "737-800"),  # the family alone
    ("737", "737-800"),  # a bare number
    ("Boeing", "737-800"),  # the manufacturer alone
    ("", "737-800"),
    ("   ", "737-800"),
    ("737-800/900", "737-800"),  # a shorthand for two variants
    ("737-800 or -900", "737-800"),
    ("A320/321", "A320"),
    ("not A320, it's A321", "A321"),  # a negation
    ("not 737-800", "737-800"),
    ("it isn't a 737-800", "737-800"),
    ("Boeing 737-800 (a 737-900 derivative)", "737-800"),  # a parenthetical that names a rival
    ("Airbus 737-800", "737-800"),  # another variant's manufacturer
    ("Boeing 747 737-800", "737-800"),  # another variant's family
    ("737800", "737-800"),  # digits run together are another number
    ("737-8000", "737-800"),
    ("737-80", "737-800"),
]


@pytest.mark.parametrize(("text", "variant"), REFUSALS)
def test_a_wrong_or_hedged_answer_scores_zero(text: str, variant: str) -> None:
    assert not graded(text, VARIANT_ROWS[variant])
    assert not graded(text, fgvc_sample(variant), rivals=False)


def test_every_variant_at_once_scores_zero() -> None:
    text = ", ".join(VARIANTS)
    assert not any(graded(text, VARIANT_ROWS[v]) for v in VARIANTS)
    assert not any(graded(text, fgvc_sample(v), rivals=False) for v in VARIANTS)


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Boeing 737", "Boeing 737", True),
        ("It is a Boeing 737.", "Boeing 737", True),
        ("Boeing 737-800", "Boeing 737", True),  # a variant of the family, written with it
        ("Boeing 747", "Boeing 737", False),
        ("Boeing 737 or Boeing 747", "Boeing 737", False),
        ("Airbus A320", "A320", True),
        ("A320", "A320", True),
        ("A320 or A330", "A320", False),
        ("737", "Boeing 737", False),  # left open: no family form is a bare number
    ],
)
def test_family_answers(text: str, label: str, expected: bool) -> None:
    assert graded(text, FAMILY_ROWS[label]) is expected


@pytest.mark.parametrize(
    ("text", "label", "expected"),
    [
        ("Boeing", "Boeing", True),
        ("It's a Boeing 737-800", "Boeing", True),  # the variant does not name another manufacturer
        ("Airbus", "Boeing", False),
        ("Boeing or Airbus", "Boeing", False),
        ("McDonnell Douglas", "McDonnell Douglas", True),
        ("Douglas Aircraft Company", "McDonnell Douglas", False),
        ("Douglas", "Douglas Aircraft Company", False),  # left open: manufacturers get no short forms
    ],
)
def test_manufacturer_answers(text: str, label: str, expected: bool) -> None:
    assert graded(text, MAKER_ROWS[label]) is expected


# Answers a careful grader could read two ways, and the reading the matcher takes (docs/protocol.md,
# "Ambiguous answers"). Graded with rival names.
AMBIGUOUS_FGVC = [
    ("probably 737-800", "737-800", True),  # a hedge word is not another candidate
    ("I think it's a 737-800", "737-800", True),
    ("737-800?", "737-800", True),
    ("I'm not sure, but 737-800", "737-800", False),  # any negation outside a name
    ("not A320, it's A321", "A321", False),  # the matcher does not parse what a negation rules out
    ("737-800/900", "737-800", False),  # "900" is a piece of 737-900 and not of 737-800
    ("737800", "737-800", False),  # one number, not 737 and 800
    ("a 320", "A320", True),  # the article and the type letter read alike
    ("Boeing 737-800 with 4 engines", "737-800", False),  # "4" is a piece of A300B4: a stray number is a risk
    ("Boeing 737-800 with two engines", "737-800", True),
    ("F-16A", "F-16A/B", False),  # left open: the label is the pair of versions
]


@pytest.mark.parametrize(("text", "variant", "expected"), AMBIGUOUS_FGVC)
def test_ambiguous_fgvc_answers(text: str, variant: str, expected: bool) -> None:
    assert graded(text, VARIANT_ROWS[variant]) is expected


def test_several_answer_tags_score_zero_even_when_both_are_right() -> None:
    twice = "<answer>Boeing 707-320</answer><answer>707-320</answer>"
    assert not is_correct(twice, accepted_answers(fgvc_sample("707-320")))


def test_family_and_manufacturer_levels() -> None:
    families = qualified_names(HIERARCHY, "family")
    assert families["A320"] == ("Airbus A320",)
    assert families["Boeing 737"] == ()  # already written with its manufacturer
    assert qualified_names(HIERARCHY, "manufacturer") == {}


def write_annotations(data: Path, split: str, rows: list[tuple[str, str]], drop: str = "") -> None:
    """images_{variant,family,manufacturer}_<split>.txt for (image id, variant) rows, from HIERARCHY."""
    for level, pick in (("variant", None), ("family", 0), ("manufacturer", 1)):
        lines = [f"{i} {v if pick is None else HIERARCHY[v][pick]}" for i, v in rows if not (level == drop)]
        (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")


def test_hierarchy_is_read_from_the_annotation_files(tmp_path: Path) -> None:
    rows = [(f"{1000000 + i}", v) for i, v in enumerate(VARIANTS)]
    write_annotations(tmp_path, "test", rows)
    assert fgvc_hierarchy(tmp_path, ["test"]) == HIERARCHY


def test_hierarchy_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    write_annotations(tmp_path, "test", [("1000001", "707-320")])
    (tmp_path / "images_family_test.txt").write_text("1000009 Boeing 707\n")
    with pytest.raises(
        DataError, match=r"1000001 is in images_variant_test.txt but not in .*images_family_test.txt"
    ):
        fgvc_hierarchy(tmp_path, ["test"])
    write_annotations(tmp_path, "test", [("1000001", "707-320")])
    (tmp_path / "images_family_test.txt").write_text("1000001 Boeing 727\n")
    write_annotations(tmp_path, "val", [("1000002", "707-320")])
    with pytest.raises(DataError, match=r"variant '707-320' has two parents.*re-download the archive"):
        fgvc_hierarchy(tmp_path, ["test", "val"])
    (tmp_path / "images_manufacturer_val.txt").unlink()
    with pytest.raises(DataError, match=r"missing file .*images_manufacturer_val.txt; run `make data-fgvc`"):
        fgvc_hierarchy(tmp_path, ["val"])


def test_the_fgvc_task_carries_the_accepted_forms(tmp_path: Path) -> None:
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    rows = [(f"{1000000 + i}", v) for i, v in enumerate(["707-320", "A321", "Cessna 525"])]
    for image_id, _ in rows:
        Image.new("RGB", (32, 40), (40, 90, 200)).save(data / "images" / f"{image_id}.jpg")
    for split in ("train", "test"):
        write_annotations(data, split, rows)
    task = build_task("fgvc", root=str(data.parent))
    by_label = {s.label: s for s in task.split("test")}
    assert by_label["707-320"].aliases == ("Boeing 707 707-320", "Boeing 707-320")
    assert is_correct("<answer>Boeing 707-320</answer>", accepted_answers(by_label["707-320"]))
    assert is_correct("<answer>Airbus A321</answer>", accepted_answers(by_label["A321"]))
    assert not is_correct("<answer>A320 A321</answer>", accepted_answers(by_label["A321"]))
    assert is_correct("<answer>Cessna Citation 525</answer>", accepted_answers(by_label["Cessna 525"]))
    a321 = by_label["A321"]  # the task's rows carry every other class of variants.txt as rivals
    assert "a 320" in rival_answers(a321) and "boeing 707 320" in rival_answers(a321)
    assert graded("It is an Airbus A321.", a321) and not graded("A320 or A321", a321)


# --- multiple choice: the letter, the text, or both when they agree -----------------------------------------------

# SAT-style questions (array/SAT), options already shuffled as the loader shuffles them.
SAT_QUESTIONS = [
    Sample(uid="val-17", images=(), question="Is the black office chair to the left or right of the wooden desk?",
           answer="left", options=("right", "left"), qtype="obj_rel"),
    Sample(uid="val-203", images=(), question="If I turn 90 degrees to my right, will the refrigerator be in front of me?",
           answer="no", options=("yes", "no"), qtype="ego_movement"),
    Sample(uid="val-881", images=(), question="Which object is closer to the camera?",
           answer="the red mug", options=("the laptop", "the lamp", "the red mug", "the stack of books"), qtype="depth"),
    Sample(uid="val-412", images=(), question="Which is closer to the camera, the lamp or the chair?",
           answer="same distance", options=("the lamp", "same distance", "the chair"), qtype="depth"),
]  # fmt: skip
# Banner-style questions: a sign and a decimal point are content.
BANNER_QUESTIONS = [
    Sample(uid="b-1", images=(), question="What discount is shown next to the red button?", answer="-30%",
           options=("-20%", "-30%", "-50%", "-10%"), qtype="discount_by_button"),
    Sample(uid="b-2", images=(), question="What does the mug cost after its discount?", answer="$1.5",
           options=("$15", "$1.5", "$0.15", "$150"), qtype="sale_price"),
]  # fmt: skip


def mc(text: str, sample: Sample, rivals: bool = True) -> bool:
    """`is_correct` of `<answer>text</answer>` for a multiple-choice row, with or without its rival names."""
    return is_correct(
        f"<answer>{text}</answer>", accepted_answers(sample), rival_answers(sample) if rivals else None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", True),
        ("left", True),
        ("(B) left", True),
        ("The answer is B.", True),
        ("The answer is (B).", True),
        ("Answer: B", True),
        ("Option B", True),
        ("option b: left", True),
        ("\\boxed{B}", True),
        ("$\\boxed{\\text{B}}$", True),
        ("**B**", True),
        ("B.", True),
        ("I think B", True),  # the pronoun "I" is no option letter
        ("It is to the left.", True),
        ("\uff22", True),  # full-width B
        ("B. left", True),
        ("B) left", True),
        ("B: left", True),
        ("B - left", True),
        ("[B] left", True),
        ("B left", True),
        ("left (B)", True),
        ("(B)left", True),
        ("(b) Left.", True),
        ("\uff08B\uff09 left", True),  # full-width parentheses
        # letter and text disagree, or hedge
        ("(A) left", False),
        ("(B) right", False),
        ("A. right", False),
        ("right (B)", False),
        ("A", False),
        ("right", False),
        ("A or B", False),
        ("left or right", False),
        ("(B) left or (A) right", False),
        ("B, A", False),
        ("A, B", False),
        ("A B", False),
        ("B or C", False),  # a letter no option has
        ("The answer is A.", False),
        ("\\boxed{A}", False),
        ("left, right", False),
        ("not right", False),
        ("not left", False),
        ("(B)", True),
        ("", False),
        ("()", False),
    ],
)
def test_multiple_choice_answers(text: str, expected: bool) -> None:
    s = SAT_QUESTIONS[0]
    assert accepted_answers(s) == {"left", "b"}
    assert rival_answers(s) == {"right", "a"}
    assert mc(text, s) is expected
    assert mc(text, s, rivals=False) is expected


def test_multiword_options_and_four_choices() -> None:
    s = SAT_QUESTIONS[2]
    for text in (
        "C",
        "the red mug",
        "(C) the red mug",
        "C. The red mug",
        "the red mug (C)",
        "The answer is C",
    ):
        assert mc(text, s) and mc(text, s, rivals=False), text
    for text in ("(A) the red mug", "(C) the laptop", "the red mug or the lamp", "C D", "A, B, C, D", "C or E",
                 ", ".join(s.options)):  # fmt: skip
        assert not mc(text, s) and not mc(text, s, rivals=False), text
    assert not mc("the red mug, not the stack of books", s)
    assert not mc("the red mug on the books", s)  # a word of another option's text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("same distance", True), ("same-distance", True), ("Same_Distance.", True), ("B", True),
     ("(B) same-distance", True), ("They are at the same distance", True), ("the lamp", False),
     ("(A) same distance", False), ("same distance or the chair", False)],
)  # fmt: skip
def test_option_text_written_with_other_separators(text: str, expected: bool) -> None:
    assert mc(text, SAT_QUESTIONS[3]) is expected


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        ("-30%", 0, True),
        ("B", 0, True),
        ("(B) -30%", 0, True),
        ("\u221230 %", 0, True),  # minus sign
        ("\\boxed{-30\\%}", 0, True),
        ("30%", 0, False),  # the sign dropped
        ("+30%", 0, False),  # the sign flipped
        ("-20%", 0, False),
        ("(A) -30%", 0, False),
        ("-30% or -20%", 0, False),
        ("-30", 0, False),  # the percent sign is content too
        ("$1.5", 1, True),
        ("1.5", 1, True),
        ("$1.50", 1, True),  # one number, one spelling
        ("15", 1, False),  # a decimal point is content
        ("$15", 1, False),
        ("0.15", 1, False),
        ("1.5 or 15", 1, False),
    ],
)
def test_signs_and_decimal_points_are_content(text: str, index: int, expected: bool) -> None:
    assert mc(text, BANNER_QUESTIONS[index]) is expected
    assert mc(text, BANNER_QUESTIONS[index], rivals=False) is expected


def test_words_around_the_answer_need_rival_names() -> None:
    """With the rival names, words that name no rival may surround the answer; without them (a row made by hand)
    the matcher cannot tell "off" from another answer, and only frame words may."""
    for text, s in [("The chair is on the left", SAT_QUESTIONS[0]), ("-30% off", BANNER_QUESTIONS[0])]:
        assert mc(text, s) and not mc(text, s, rivals=False), text
    text = "Boeing 737-800 (Next Generation)"
    assert graded(text, VARIANT_ROWS["737-800"]) and not graded(text, fgvc_sample("737-800"), rivals=False)


# Multiple-choice answers a careful grader could read two ways, and the reading the matcher takes
# (docs/protocol.md, "Ambiguous answers"). Options: (A) right, (B) left; B is correct. Graded with rival names.
AMBIGUOUS_MC = [
    ("A left turn", True),  # "A" before a word is the article, not option A
    ("A left", True),  # the same reading: the text decides
    ("A. left", False),  # "A." is the letter A, which disagrees with "left"
    ("A: left", False),
    ("a", False),  # a lone "a" is the letter
    ("The answer is a", False),
    ("Bleft", False),  # no letter inside a word, and "bleft" is no option's text
    ("Because it is on the left", True),  # nor is the "B" of "Because" a letter
    ("B2", False),  # a letter next to a digit is part of a name, not a letter
    ("left (e.g. the chair's left)", False),  # "e" and "g" stand alone: letters no option has
    ("probably left", True),
    ("left, not right", False),  # names the rival, whatever the negation means
]


@pytest.mark.parametrize(("text", "expected"), AMBIGUOUS_MC)
def test_ambiguous_multiple_choice_answers(text: str, expected: bool) -> None:
    assert mc(text, SAT_QUESTIONS[0]) is expected


def test_grade_answer_is_the_tag_content_graded() -> None:
    s = SAT_QUESTIONS[0]
    assert grade_answer("(B) left", accepted_answers(s), rival_answers(s))
    assert not grade_answer("(A) left", accepted_answers(s), rival_answers(s))
    assert is_correct("(B) left", accepted_answers(s)) is False  # no answer tag


def test_the_prompt_shows_what_the_matcher_accepts() -> None:
    s = SAT_QUESTIONS[1]
    prompt = Task(name="sat", kind="multiple_choice", splits={}).prompt(s, think=True)
    assert "(A) yes (B) no" in prompt
    assert is_correct("<answer>(B) no</answer>", accepted_answers(s))
    assert not is_correct("<answer>(A) no</answer>", accepted_answers(s))


def test_reward_and_evaluation_agree() -> None:
    """The accuracy reward calls the same matcher, on the same accepted set, that evaluation calls."""
    samples = [fgvc_sample("707-320"), SAT_QUESTIONS[0]]
    completions = [answer("Boeing 707-320"), answer("(B) left"), answer("707"), answer("(A) left")]
    accepted = [accepted_answers(s) for s in samples] * 2
    x = RewardInputs(completions=completions, accepted=accepted, think_tokens=[5] * 4, completion_tokens=[9] * 4,
                     group_size=2, think=True, length_target=100)  # fmt: skip
    assert REWARDS["accuracy"](x) == [
        float(is_correct(c, a)) for c, a in zip(completions, accepted, strict=True)
    ]
    assert REWARDS["accuracy"](x) == [1.0, 1.0, 0.0, 0.0]


def test_reward_and_evaluation_agree_on_every_case() -> None:
    """Every phrasing, refusal and ambiguous case above, scored by the GRPO rollout's reward (`score_rollout`,
    which builds `RewardInputs` from the rows) and by evaluation's prediction row: the same verdict, and the
    expected one."""
    cases = (
        [(VARIANT_ROWS[v], t, True) for t, v in PHRASINGS]
        + [(VARIANT_ROWS[v], t, False) for t, v in REFUSALS]
        + [(VARIANT_ROWS[v], t, ok) for t, v, ok in AMBIGUOUS_FGVC]
        + [(SAT_QUESTIONS[0], t, ok) for t, ok in AMBIGUOUS_MC]
        + [(SAT_QUESTIONS[3], "same-distance", True), (BANNER_QUESTIONS[0], "+30%", False)]
        + [(SAT_QUESTIONS[0], t, True) for t in ("The answer is B.", "Option B", "\\boxed{B}", "(B) left")]
    )
    samples = [s for s, _, _ in cases]
    completions = [answer(t) for _, t, _ in cases]
    n = len(cases)
    rollout = Rollout(samples=samples, prompts=None, group_size=1, prompt_index=torch.arange(n),
                      ids=torch.zeros(n, 3, dtype=torch.long), mask=torch.ones(n, 3, dtype=torch.long),
                      completions=completions, think_tokens=[4] * n, finished=torch.ones(n, dtype=torch.bool))  # fmt: skip
    rewarded = score_rollout(rollout, [("accuracy", 1.0)], think=True, length_target=100).rewards
    evaluated = [
        prediction_row(s, c, think=True, completion_tokens=3, think_tokens=4)["correct"]
        for s, c in zip(samples, completions, strict=True)
    ]
    assert rewarded == [float(ok) for ok in evaluated]
    assert evaluated == [ok for _, _, ok in cases]


# --- Visual-RFT's two-way substring metric ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "label", "expected"),
    [
        ("<answer>707-320</answer>", "707-320", True),
        ("<answer>Boeing 707-320</answer>", "707-320", True),
        ("<answer>707</answer>", "707-320", True),  # answer inside the label: the hack
        ("<answer></answer>", "707-320", True),  # empty answer: "" is in every label
        ("<answer>  </answer>", "707-320", True),
        ("<answer>727-200</answer>", "707-320", False),
        ("it is a 707-320", "707-320", True),  # no tag: the whole completion
        # no DOTALL: a two-line answer is not parsed, so the whole completion is searched
        ("<answer>Boeing\n707-320</answer>", "707-320", True),
        ("<answer>Boeing\n727-200</answer>", "707-320", False),
        ("<answer>737_200</answer>", "737 200", True),
    ],
)
def test_visualrft_metric(completion: str, label: str, expected: bool) -> None:
    assert is_visualrft_correct(completion, label) is expected


# --- metrics --------------------------------------------------------------------------------------------------------


def row(label: str, correct: bool, *, qtype: str = "", visualrft: bool | None = None) -> dict:
    return {"label": label, "qtype": qtype, "correct": correct, "lenient": correct, "formatted": True,
            "visualrft": correct if visualrft is None else visualrft, "completion_tokens": 10, "think_tokens": 4}  # fmt: skip


def test_class_mean_accuracy_is_the_mean_of_per_class_accuracies() -> None:
    # 707-320: 3 of 4 right; A321: 0 of 1; Cessna 525: 1 of 1. Accuracy 4/6; per-class mean (0.75 + 0 + 1) / 3.
    rows = [row("707-320", c) for c in (True, True, True, False)] + [
        row("A321", False),
        row("Cessna 525", True),
    ]
    rows[3]["visualrft"] = True  # e.g. "707": Visual-RFT's metric counts it
    m = eval_metrics(rows)
    assert m["eval/accuracy"] == pytest.approx(4 / 6)
    assert m["eval/class_mean_accuracy"] == pytest.approx((0.75 + 0.0 + 1.0) / 3)
    assert m["eval/visualrft_accuracy"] == pytest.approx(5 / 6)


def test_per_question_type_accuracy_and_no_class_metrics_for_multiple_choice() -> None:
    rows = [
        row("", True, qtype="obj_rel"),
        row("", False, qtype="obj_rel"),
        row("", True, qtype="ego_movement"),
    ]
    m = eval_metrics(rows)
    assert m["eval/accuracy_obj_rel"] == 0.5 and m["eval/accuracy_ego_movement"] == 1.0
    assert "eval/class_mean_accuracy" not in m and "eval/visualrft_accuracy" not in m
