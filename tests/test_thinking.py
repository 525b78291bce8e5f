"""Unit tests for rft.thinking, the content measure behind the length rewards, and the corpus contract.

The contract, on the fixture corpus tests/length_corpus.py: honest reasoning keeps most of its tokens; no filler
earns more length reward than honest reasoning of fewer tokens, in the target form and in the group form (a filler
in one group with honest completions); a filler that starts with honest text earns no more than that text alone;
appending filler to honest reasoning never raises its content length. Every check runs on two token counts: the
tiny base model's tokenizer and one token per piece (about a Qwen2 tokenizer's count for English).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rft.rewards import REWARDS, RewardInputs
from rft.thinking import (
    _copied,
    _is_wordlike,
    _novelty,
    _prompt_keys,
    _word,
    content_think_tokens,
    normalize_think,
    think_content_units,
)
from tests.length_corpus import FILLER, HONEST, OPEN, Sample, count_pieces, count_tokens

COUNTS: dict[str, Callable[[str], int]] = {"tokenizer": count_tokens, "pieces": count_pieces}
PURE = {name: s for name, s in FILLER.items() if not s.honest}
MIXED = {name: s for name, s in FILLER.items() if s.honest}


def completion(think: str) -> str:
    return f"<think>{think}</think> <answer>747-400</answer>"


def inputs(
    samples: list[Sample], count: Callable[[str], int], group_size: int, length_target: int
) -> RewardInputs:
    """A RewardInputs of these think texts, each with a valid format and its task's prompt."""
    tokens = [count(s.think) for s in samples]
    return RewardInputs(
        completions=[completion(s.think) for s in samples],
        accepted=[frozenset({"747-400"})] * len(samples),
        think_tokens=tokens,
        completion_tokens=tokens,
        group_size=group_size,
        think=True,
        length_target=length_target,
        prompts=[s.prompt for s in samples],
    )


def content(sample: Sample, count: Callable[[str], int], text: str | None = None) -> float:
    text = sample.think if text is None else text
    return content_think_tokens(count(text), text, sample.prompt)


# --- normalisation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variant",
    [
        "The\ufe0f aircraft\ufe0e has four\U000e0100 engines.",  # variation selectors
        "The air\u200bcraft has\u200d four\u2060 engines.",  # zero-width space / joiner, word joiner (Cf)
        "The aircraft has fo\u00adur engines.",  # soft hyphen (Cf)
        "Тһе аігсrаft һаѕ fоur еngіnеѕ.",  # Cyrillic look-alikes
        "Τhe αircrαft hαs fοur engines.",  # Greek look-alikes
        "ＴＨＥ ａｉｒｃｒａｆｔ has four engines.",  # full-width, NFKC
        "𝐓𝐡𝐞 𝐚𝐢𝐫𝐜𝐫𝐚𝐟𝐭 has four engines.",  # mathematical bold, NFKC
        "The aírcráft hás four engines.",  # accents
        "The a\u0301\u0308ircraft has four engines.",  # stacked combining marks
    ],
)
def test_invisible_and_look_alike_variants_normalise_to_the_plain_text(variant: str) -> None:
    assert normalize_think(variant) == "the aircraft has four engines."


def test_typographic_punctuation_and_accents_cost_nothing() -> None:
    text = "The tail\u2014a T-tail\u2014suggests a CRJ; the pilot\u2019s window is \u201cround\u201d, as on the A\u00e9rospatiale."
    assert think_content_units(text)[1] == 0.0


def test_ascii_text_only_changes_case() -> None:
    assert normalize_think("Boeing 747-400, F/A-18!") == "boeing 747-400, f/a-18!"


def test_other_scripts_stay_non_ascii() -> None:
    assert not normalize_think("这架飞机").isascii()


@pytest.mark.parametrize(
    ("core", "wordlike"),
    [
        ("engines", True),
        ("wide-body", True),
        ("aircraft's", True),
        ("747-400", True),
        ("a320", True),
        ("f/a-18", True),
        ("dhc-8-400", True),
        ("1,200", True),
        ("a", True),
        ("3f9a2c81be07d4aa", False),  # a hash
        ("xk9pq2zlyb7w", False),  # a random string
        ("qzxvkjhw", False),  # no vowel
        ("hahaha", False),  # one unit repeated
        ("pneumonoultramicroscopicsilicovolcanoconiosis", False),  # longer than MAX_WORD
        ("飞机", False),  # another script
    ],
)
def test_word_shapes(core: str, wordlike: bool) -> None:
    assert _is_wordlike(core) is wordlike


# --- the pieces of the measure ---------------------------------------------------------------------------------


def keys(text: str) -> list[str]:
    return [_word(w).key for w in normalize_think(text).split()]


def test_a_prompt_copy_with_a_filler_word_every_few_words_is_a_copy() -> None:
    prompt = "Please identify the model of the aircraft based on the image and output the thinking process."
    copy = "Please um identify the um model of um the aircraft um based on um the image um and output"
    assert all(_copied(keys(copy), _prompt_keys(prompt)))


def test_honest_words_that_reuse_the_prompt_are_not_a_copy() -> None:
    prompt = "Considering the relative positions, is the red chair to the left or to the right of the wooden table?"
    honest = "The red chair stands by the window, so it is to the left of the wooden table."
    assert not any(_copied(keys(honest), _prompt_keys(prompt)))


def test_a_restated_clause_is_not_new_but_a_new_one_is() -> None:
    text = (
        "the aircraft has four engines under its wings, this plane has four engines under the wings, "
        "the jet clearly has four engines below its wings, the tail carries a large dorsal fin."
    )
    words = text.split()
    weights = _novelty([_word(w).key for w in words], [w.endswith((",", ".")) for w in words])
    assert weights[8] < 0.21 and weights[17] < 0.21  # restated: most content words of the first clause
    assert weights[0] > 0.5  # said first (zlib still sees it again later)
    assert weights[-1] == 1.0  # new


def test_empty_and_blank_thinks_have_no_content() -> None:
    assert think_content_units("") == (0.0, 0.0)
    assert think_content_units("   \n\n")[0] == 0.0
    assert content_think_tokens(10, " \n ") == 0.0


# --- the corpus contract ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("name", HONEST)
def test_honest_reasoning_keeps_most_of_its_tokens(name: str, count: str) -> None:
    sample = HONEST[name]
    tokens = COUNTS[count](sample.think)
    assert content(sample, COUNTS[count]) >= 0.8 * tokens


def shorter_honest(filler: Sample, count: Callable[[str], int]) -> list[Sample]:
    """The honest samples with fewer tokens than `filler`."""
    return [h for h in HONEST.values() if count(h.think) < count(filler.think)]


@pytest.mark.parametrize("length_target", [256, 700])
@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("name", PURE)
def test_filler_earns_no_more_than_shorter_honest_reasoning_target_form(
    name: str, count: str, length_target: int
) -> None:
    filler, counter = PURE[name], COUNTS[count]
    honest = shorter_honest(filler, counter)
    x = inputs([filler, *honest], counter, group_size=1, length_target=length_target)
    reward, *honest_rewards = REWARDS["length_norm"](x)
    assert all(reward <= r for r in honest_rewards), (reward, min(honest_rewards, default=None))


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("name", PURE)
def test_filler_earns_no_more_than_shorter_honest_reasoning_in_its_group(name: str, count: str) -> None:
    # one group: the filler and every honest completion with fewer tokens
    filler, counter = PURE[name], COUNTS[count]
    honest = shorter_honest(filler, counter)
    x = inputs([filler, *honest], counter, group_size=1 + len(honest), length_target=700)
    reward, *honest_rewards = REWARDS["length_norm_group"](x)
    assert all(reward <= r for r in honest_rewards), (reward, min(honest_rewards, default=None))


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("name", MIXED)
def test_honest_text_followed_by_filler_earns_no_more_than_the_honest_text(name: str, count: str) -> None:
    filler, counter = MIXED[name], COUNTS[count]
    alone = Sample(filler.task, filler.honest)
    x = inputs([filler, alone], counter, group_size=1, length_target=256)
    padded, concise = REWARDS["length_norm"](x)
    assert padded <= concise
    x.group_size = 2
    padded, concise = REWARDS["length_norm_group"](x)
    assert padded <= concise


@pytest.mark.parametrize("count", COUNTS)
@pytest.mark.parametrize("name", HONEST)
def test_appending_filler_never_raises_the_content_length(name: str, count: str) -> None:
    # ... beyond what the one statement a restating filler makes once (`Sample.own`) adds
    honest, counter = HONEST[name], COUNTS[count]
    for filler_name, filler in PURE.items():
        if filler.task != honest.task and "prompt" in filler_name:
            continue  # a copy of another task's prompt is not a copy of this one
        concise = content(honest, counter)
        if filler.own:
            concise = max(concise, content(honest, counter, honest.think + " " + filler.own))
        padded = content(honest, counter, honest.think + " " + filler.think)
        assert padded <= concise + 1e-9, filler_name


@pytest.mark.parametrize("name", OPEN)
@pytest.mark.xfail(
    strict=True, reason="fluent English that is nonsense or off topic needs a reader of the image"
)
def test_open_gaps(name: str) -> None:
    filler = OPEN[name]
    x = inputs([filler, HONEST["fgvc_a320_tiny"]], count_tokens, group_size=1, length_target=256)
    reward, honest = REWARDS["length_norm"](x)
    assert reward <= honest


def test_the_plain_forms_pay_filler_for_every_token() -> None:
    # why the content forms exist: in the plain forms 150 counted numbers beat an honest reasoning
    filler, honest = PURE["counting"], HONEST["fgvc_a320"]
    x = inputs([filler, honest], count_tokens, group_size=2, length_target=700)
    tokens = x.think_tokens
    assert REWARDS["length_norm_plain"](x) == [pytest.approx(t / 700) for t in tokens]
    assert REWARDS["length_norm_group_plain"](x) == [1.0, 0.0]
    assert REWARDS["length_norm_group"](x) == [0.0, 1.0]


def test_terse_notes_of_a_few_words_keep_their_length():
    """A think of fewer than TERSE_WORDS words ("delta 3 dots", the tiny testbed's trace) is judged by the shape of
    its words, not by the function-word window, which would call every terse note not English. It can earn at
    most those few words; the same words past the limit, without function words, earn nothing."""
    from rft.thinking import TERSE_WORDS, content_think_tokens

    assert content_think_tokens(6, " delta 3 dots ") > 0
    assert content_think_tokens(4, " upper left corner ") == 4  # the spaces around it are the template's
    salad = " ".join(["delta dots corner red glyph upper"] * 3)  # 18 words, no function word
    assert len(salad.split()) >= TERSE_WORDS and content_think_tokens(36, salad) == 0
