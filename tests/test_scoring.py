"""Unit tests for the one answer matcher that the accuracy reward and evaluation share, and the eval metrics.

FGVC-Aircraft cases use the real 100 variants with the family and manufacturer the official annotation files give
them; multiple-choice cases use SAT-style questions with shuffled options. Every expectation is by hand.

    python -m pytest -q tests/test_scoring.py
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from rft.data.base import DataError, Sample, Task, accepted_answers
from rft.data.fgvc import fgvc_hierarchy, qualified_names
from rft.data.registry import build_task
from rft.evaluate import eval_metrics
from rft.rewards import (
    REWARDS,
    RewardInputs,
    is_correct,
    is_visualrft_correct,
    normalize_answer,
    split_option,
)

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
    return Sample(uid=variant, images=(), question="", answer=variant, label=variant, aliases=NAMES[variant])


def answer(text: str) -> str:
    return f"<think>The aircraft in the image.</think> <answer>{text}</answer>"


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
    accepted = accepted_answers(fgvc_sample(variant))
    assert is_correct(answer(variant), accepted)
    assert is_correct(answer(with_maker(variant)), accepted)
    assert is_correct(answer(with_maker(variant).upper()), accepted)


def test_accepted_sets_never_overlap() -> None:
    seen: dict[str, str] = {}
    for v in VARIANTS:
        for key in accepted_answers(fgvc_sample(v)):
            assert key not in seen, f"{key!r} names both {seen.get(key)} and {v}"
            seen[key] = v


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_manufacturer_form_of_one_variant_never_scores_for_another(variant: str) -> None:
    text = answer(with_maker(variant))
    assert [v for v in VARIANTS if is_correct(text, accepted_answers(fgvc_sample(v)))] == [variant]


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
    assert is_correct(answer(text), accepted_answers(fgvc_sample(variant))) is expected


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


# --- multiple choice: the letter, the text, or both when they agree -----------------------------------------------

# SAT-style questions (array/SAT), options already shuffled as the loader shuffles them.
SAT_QUESTIONS = [
    Sample(uid="val-17", images=(), question="Is the black office chair to the left or right of the wooden desk?",
           answer="left", options=("right", "left"), qtype="obj_rel"),
    Sample(uid="val-203", images=(), question="If I turn 90 degrees to my right, will the refrigerator be in front of me?",
           answer="no", options=("yes", "no"), qtype="ego_movement"),
    Sample(uid="val-881", images=(), question="Which object is closer to the camera?",
           answer="the red mug", options=("the laptop", "the lamp", "the red mug", "the stack of books"), qtype="depth"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", True),
        ("left", True),
        ("(B) left", True),  # 0 before
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
        ("(B)", True),
        ("", False),
        ("()", False),
    ],
)
def test_multiple_choice_answers(text: str, expected: bool) -> None:
    s = SAT_QUESTIONS[0]
    assert accepted_answers(s) == {"left", "b"}
    assert is_correct(f"<answer>{text}</answer>", accepted_answers(s)) is expected


def test_multiword_options_and_four_choices() -> None:
    s = SAT_QUESTIONS[2]
    accepted = accepted_answers(s)
    for text in ("C", "the red mug", "(C) the red mug", "C. The red mug", "the red mug (C)"):
        assert is_correct(f"<answer>{text}</answer>", accepted), text
    for text in ("(A) the red mug", "(C) the laptop", "the red mug or the lamp", "C D"):
        assert not is_correct(f"<answer>{text}</answer>", accepted), text


def test_the_prompt_shows_what_the_matcher_accepts() -> None:
    s = SAT_QUESTIONS[1]
    prompt = Task(name="sat", kind="multiple_choice", splits={}).prompt(s, think=True)
    assert "(A) yes (B) no" in prompt
    assert is_correct("<answer>(B) no</answer>", accepted_answers(s))
    assert not is_correct("<answer>(A) no</answer>", accepted_answers(s))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("(B) left", ("B", "left")), ("B. left", ("B", "left")), ("left (B)", ("B", "left")), ("B", None),
     ("left", None), ("A320", None), ("F/A-18", None)],
)  # fmt: skip
def test_split_option(text: str, expected: tuple[str, str] | None) -> None:
    assert split_option(text) == expected


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
