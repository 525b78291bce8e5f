"""Unit tests for rft.rewards: parsing, normalisation, adversarial completions and the reward terms.

Every expectation is computed by hand. The adversarial table is the contract that no completion earns accuracy
the ground truth does not justify.
"""

from __future__ import annotations

import math

import pytest

from rft.rewards import (
    GROUP_MIN_SPAN,
    REWARDS,
    RewardInputs,
    extract_answer,
    extract_think,
    is_correct,
    is_lenient_correct,
    is_well_formatted,
    normalize_answer,
    reward_stats,
    score,
)
from rft.thinking import content_think_tokens, think_content_units


def batch(
    completions: list[str],
    *,
    accepted: list[frozenset[str]] | None = None,
    think_tokens: list[int] | None = None,
    completion_tokens: list[int] | None = None,
    group_size: int | None = None,
    think: bool = True,
    length_target: int = 100,
) -> RewardInputs:
    """A RewardInputs with neutral defaults (one group holding every row) for the fields a test ignores."""
    n = len(completions)
    return RewardInputs(
        completions=completions,
        accepted=accepted if accepted is not None else [frozenset({"a"})] * n,
        think_tokens=think_tokens if think_tokens is not None else [0] * n,
        completion_tokens=completion_tokens if completion_tokens is not None else [0] * n,
        group_size=group_size if group_size is not None else max(n, 1),
        think=think,
        length_target=length_target,
    )


GOOD = "<think>t</think><answer>a</answer>"  # think-format valid, answers "a"
BAD = "<answer>a</answer>"  # think-format invalid (no think block)
# Think-format valid with a think the content measure keeps whole, so the content forms of the length reward pay
# what the plain forms pay on it.
THOUGHT = (
    "<think>The plane has four engines and a hump over the cockpit, so it is a 747.</think><answer>a</answer>"
)


# --- normalize_answer ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Boeing", "boeing"),
        ("  Boeing 737_200 ", "boeing 737 200"),
        ("737 - 200", "737 200"),
        ("737 -200", "737 200"),  # a spaced hyphen after a number, not a sign
        ("737-200", "737 200"),
        ("737200", "737200"),  # digits run together stay one number
        ("\tA\n", "a"),
        ('"A."', "a"),
        ("(B)", "b"),
        ("...left!!", "left"),
        ("«Left»", "left"),  # Unicode quotation marks (category Pi/Pf)
        ("¿left?", "left"),
        ("F/A-18", "f a 18"),
        ("737-200.", "737 200"),
        ("A-320", "a 320"),  # letters and digits are separate tokens
        ("a 320", "a 320"),
        ("\uff21\uff13\uff12\uff10", "a 320"),  # full-width "A320", NFKC
        ("A\u00a0320", "a 320"),  # non-breaking space
        ("A\u3000320", "a 320"),  # ideographic space
        ("A\u200b320", "a 320"),  # zero-width space (a format character) is dropped
        ("ﬁ", "fi"),  # ligature, NFKC
        ("-30%", "-30 %"),  # a sign and a percent sign are content
        ("\u221230\uff05", "-30 %"),  # minus sign, full-width percent sign
        ("30%", "30 %"),
        ("+30%", "+30 %"),
        ("1.5", "1.5"),  # a decimal point is content
        ("12.50", "12.5"),  # one number, one spelling
        ("\\boxed{737-800}", "737 800"),  # LaTeX command words go
        ("isn't", "is not"),
        ("", ""),
        ("   ", ""),
        ("?!.", ""),
        ("_", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# --- extract_answer / extract_think -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<answer>A</answer>", "A"),
        ("<think>x</think> <answer> 737-200 </answer>", " 737-200 "),
        ("junk <answer>A</answer> junk", "A"),
        ("<answer></answer>", ""),
        ("", None),
        ("A", None),
        ("<answer>A", None),  # unclosed
        ("A</answer>", None),  # no opening tag
        ("</answer>A<answer>", None),  # close before open
        ("<answer>A</answer><answer>B</answer>", None),  # two pairs
        ("<answer><answer>A</answer>", None),  # nested opening tag
        ("<answer>A</answer></answer>", None),  # extra closing tag
        ("<Answer>A</Answer>", None),  # case-sensitive
        ("<answer >A</answer>", None),  # not the exact tag
    ],
)
def test_extract_answer(completion: str, expected: str | None) -> None:
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<think>because</think><answer>A</answer>", "because"),
        ("<think></think>", ""),
        ("<answer>A</answer>", None),
        ("<think>a</think><think>b</think>", None),
        ("</think>x<think>", None),
        ("<think>unclosed", None),
    ],
)
def test_extract_think(completion: str, expected: str | None) -> None:
    assert extract_think(completion) == expected


# --- is_well_formatted --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "think", "expected"),
    [
        # think template
        ("<think>t</think><answer>a</answer>", True, True),
        ("<think> t </think> <answer> a </answer>", True, True),
        ("<think>t</think>\n\n<answer>a</answer>", True, True),
        ("\n  <think>t</think><answer>a</answer>  \n", True, True),  # outer whitespace is fine
        ("<think>line1\nline2</think><answer>a</answer>", True, True),  # DOTALL
        ("<think></think><answer></answer>", True, True),  # format only; accuracy rejects the empty answer
        ("Sure! <think>t</think><answer>a</answer>", True, False),  # text before <think>
        ("<think>t</think><answer>a</answer> done", True, False),  # text after </answer>
        ("<think>t</think> so <answer>a</answer>", True, False),  # text between the blocks
        ("<think>t</think><think>u</think><answer>a</answer>", True, False),  # two think blocks
        ("<think>t</think><answer>a</answer><answer>b</answer>", True, False),  # two answer blocks
        ("<think>t<answer>x</answer></think><answer>a</answer>", True, False),  # answer hidden in think
        ("<think>t</think><answer>a<answer>b</answer>", True, False),  # nested answer
        ("<answer>a</answer><think>t</think>", True, False),  # wrong order
        ("<answer>a</answer>", True, False),  # answer without think
        ("<think>t</think>", True, False),  # think without answer
        ("<think>t</think><answer>a", True, False),  # unclosed answer
        ("<THINK>t</THINK><answer>a</answer>", True, False),  # case-sensitive
        # no-think template
        ("<answer>a</answer>", False, True),
        ("  <answer> a </answer>\n", False, True),
        ("<answer>a</answer> because", False, False),
        ("So: <answer>a</answer>", False, False),
        ("<think>t</think><answer>a</answer>", False, False),  # think tags not allowed
        ("<answer>a <think></think></answer>", False, False),
        ("<answer>a</answer><answer>b</answer>", False, False),
        ("<answer>a", False, False),
        ("", False, False),
    ],
)
def test_is_well_formatted(completion: str, think: bool, expected: bool) -> None:
    assert is_well_formatted(completion, think) is expected


# --- accuracy: adversarial completions ----------------------------------------------------------------------

AIRCRAFT = frozenset({"737-200"})
OPTION_A = frozenset({"left", "a"})  # multiple choice, option A "left"


@pytest.mark.parametrize(
    ("completion", "accepted", "expected"),
    [
        # plain correct answers, and unicode / whitespace / case variants of them
        ("<think>t</think><answer>737-200</answer>", AIRCRAFT, True),
        ("<answer>737-200</answer>", AIRCRAFT, True),
        ("<answer> 737 - 200 </answer>", AIRCRAFT, True),
        ("<answer>\uff17\uff13\uff17\uff0d\uff12\uff10\uff10</answer>", AIRCRAFT, True),  # full-width 737-200
        ("<answer>737\u00a0-200.</answer>", AIRCRAFT, True),
        ("<answer>\n737_200\n</answer>", frozenset({"737 200"}), True),
        ("<answer>737200</answer>", AIRCRAFT, False),  # digits run together are another number
        ("<answer>Left</answer>", OPTION_A, True),
        ("<answer>(A)</answer>", OPTION_A, True),
        ("<answer>A.</answer>", OPTION_A, True),
        # empty answers, even if "" were (wrongly) accepted
        ("<answer></answer>", frozenset({""}), False),
        ("<answer>  </answer>", frozenset({""}), False),
        ("<answer>...</answer>", frozenset({""}), False),
        # hedged answers: exact match, never substring
        ("<answer>737-200 or 737-300</answer>", AIRCRAFT, False),
        ("<answer>A or B</answer>", OPTION_A, False),
        ("<answer>A, B, C, D</answer>", OPTION_A, False),
        ("<answer>737-2000</answer>", AIRCRAFT, False),  # longer answer containing the right one
        ("<answer>737</answer>", AIRCRAFT, False),  # shorter, family-level answer
        # several answer tags, even when both are right
        ("<answer>737-200</answer><answer>737-200</answer>", AIRCRAFT, False),
        ("<think>t</think><answer>737-300</answer><answer>737-200</answer>", AIRCRAFT, False),
        # missing, unclosed or nested tags
        ("<think>it is a 737-200</think>", AIRCRAFT, False),  # think without answer
        ("737-200", AIRCRAFT, False),
        ("<answer>737-200", AIRCRAFT, False),
        ("737-200</answer>", AIRCRAFT, False),
        ("<answer><answer>737-200</answer></answer>", AIRCRAFT, False),
        ("</answer>737-200<answer>", AIRCRAFT, False),
        ("<Answer>737-200</Answer>", AIRCRAFT, False),
        # only the tag content counts, text outside the tags never does
        ("I think 737-200. <answer>737-200</answer> Done.", AIRCRAFT, True),
        ("The answer is 737-200. <answer>737-300</answer>", AIRCRAFT, False),
        ("<think>737-200</think><answer>737-300</answer>", AIRCRAFT, False),
    ],
)
def test_is_correct(completion: str, accepted: frozenset[str], expected: bool) -> None:
    assert is_correct(completion, accepted) is expected


def test_answer_without_think_is_accurate_but_only_no_think_formatted() -> None:
    completion = "<answer>737-200</answer>"
    assert is_correct(completion, AIRCRAFT)
    assert REWARDS["format"](batch([completion], think=True)) == [0.0]
    assert REWARDS["format"](batch([completion], think=False)) == [1.0]


def test_text_outside_tags_fails_format_but_keeps_accuracy() -> None:
    completion = "Let me see. <think>t</think><answer>737-200</answer>"
    x = batch([completion], accepted=[AIRCRAFT])
    assert REWARDS["format"](x) == [0.0]
    assert REWARDS["accuracy"](x) == [1.0]


# --- lenient metric (evaluation only) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "answer", "expected"),
    [
        ("<answer>737-200</answer>", "737-200", True),
        ("<answer>Boeing 737_200</answer>", "737-200", False),  # hyphen is kept by the lenient form
        ("<answer>Boeing 737 200</answer>", "737_200", True),
        ("<answer>737-2000</answer>", "737-200", True),  # hackable: exact match says False
        ("<answer>737-200 or 737-300</answer>", "737-300", True),  # hackable: hedging pays
        ("<answer>737</answer>", "737-200", False),
        ("<answer></answer>", "737-200", False),
        ("<answer>   </answer>", "737-200", False),
        ("737-200", "737-200", False),  # no answer tag
        ("<answer>737-200</answer><answer>x</answer>", "737-200", False),
    ],
)
def test_is_lenient_correct(completion: str, answer: str, expected: bool) -> None:
    assert is_lenient_correct(completion, answer) is expected


def test_lenient_is_hackable_where_exact_is_not() -> None:
    completion = "<answer>737-2000</answer>"
    assert is_lenient_correct(completion, "737-200")
    assert not is_correct(completion, AIRCRAFT)


# --- reward functions ---------------------------------------------------------------------------------------


def test_accuracy_and_format_rewards() -> None:
    x = batch(
        [GOOD, BAD, "<think>t</think><answer>b</answer>", "a"],
        accepted=[frozenset({"a"})] * 4,
        group_size=2,
    )
    assert REWARDS["accuracy"](x) == [1.0, 1.0, 0.0, 0.0]
    assert REWARDS["format"](x) == [1.0, 0.0, 1.0, 0.0]


TARGET_FORMS = ["length_norm", "length_norm_plain"]
GROUP_FORMS = ["length_norm_group", "length_norm_group_plain"]


@pytest.mark.parametrize("name", TARGET_FORMS)
@pytest.mark.parametrize(
    ("completion", "think_tokens", "length_target", "expected"),
    [
        (THOUGHT, 0, 100, 0.0),
        (THOUGHT, 25, 100, 0.25),
        (THOUGHT, 1, 3, 1 / 3),
        (THOUGHT, 100, 100, 1.0),
        (THOUGHT, 250, 100, 1.0),  # capped at 1
        (BAD, 50, 100, 0.0),  # no think block: format invalid
        ("x " + THOUGHT, 50, 100, 0.0),  # text outside tags: format invalid
    ],
)
def test_length_norm(
    name: str, completion: str, think_tokens: int, length_target: int, expected: float
) -> None:
    x = batch([completion], think_tokens=[think_tokens], length_target=length_target)
    assert REWARDS[name](x) == [pytest.approx(expected)]


@pytest.mark.parametrize("name", TARGET_FORMS)
def test_length_norm_is_gated_by_think_format_even_for_no_think_template(name: str) -> None:
    x = batch([THOUGHT, BAD], think_tokens=[50, 50], think=False)
    assert REWARDS[name](x) == [0.5, 0.0]


@pytest.mark.parametrize("name", GROUP_FORMS)
def test_length_norm_group_mixed_valid_and_invalid(name: str) -> None:
    # valid lengths 10, 40, 30 -> min 10, max 40, span 30; the invalid row has the longest think but earns 0
    # and does not move the max.
    x = batch([THOUGHT, THOUGHT, BAD, THOUGHT], think_tokens=[10, 40, 90, 30], group_size=4)
    assert REWARDS[name](x) == [pytest.approx(v) for v in [0.0, 1.0, 0.0, 2 / 3]]


@pytest.mark.parametrize("name", GROUP_FORMS)
@pytest.mark.parametrize(
    ("completions", "think_tokens"),
    [
        ([THOUGHT, THOUGHT, THOUGHT, THOUGHT], [20, 20, 20, 20]),  # all equal
        ([THOUGHT, THOUGHT, BAD, BAD], [20, 20, 5, 90]),  # valid members equal
        ([THOUGHT, BAD, BAD, BAD], [20, 5, 90, 1]),  # fewer than two valid members
        ([BAD, BAD, BAD, BAD], [1, 2, 3, 4]),  # none valid
    ],
)
def test_length_norm_group_degenerate_groups_are_zero(
    name: str, completions: list[str], think_tokens: list[int]
) -> None:
    x = batch(completions, think_tokens=think_tokens, group_size=4)
    assert REWARDS[name](x) == [0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("name", GROUP_FORMS)
def test_length_norm_group_groups_are_independent(name: str) -> None:
    # G=3. group 0 = rows 0..2, lengths 0, 100, 50 -> 0, 1, 0.5.
    # group 1 = rows 3..5, lengths 60, (invalid, 1000), 70 -> 0, 0, 1; group 0's span plays no part.
    x = batch(
        [THOUGHT, THOUGHT, THOUGHT, THOUGHT, BAD, THOUGHT],
        think_tokens=[0, 100, 50, 60, 1000, 70],
        group_size=3,
    )
    assert REWARDS[name](x) == [pytest.approx(v) for v in [0.0, 1.0, 0.5, 0.0, 0.0, 1.0]]


def test_plain_forms_count_every_think_token() -> None:
    # A think of counting is not language: no content, so only the plain forms pay for its 40 tokens.
    counting = "<think>" + " ".join(str(i) for i in range(1, 21)) + "</think><answer>a</answer>"
    x = batch([counting, THOUGHT], think_tokens=[40, 20], group_size=2)
    assert REWARDS["length_norm_plain"](x) == [0.4, 0.2]
    assert REWARDS["length_norm"](x) == [0.0, 0.2]
    assert REWARDS["length_norm_group_plain"](x) == [1.0, 0.0]  # span 20 >= the floor 0.1 * 100
    assert REWARDS["length_norm_group"](x) == [0.0, 1.0]


def test_length_raw_is_ungated() -> None:
    x = batch([GOOD, BAD, ""], completion_tokens=[0, 700, 256])
    assert REWARDS["length_raw"](x) == [pytest.approx(v) for v in [0.0, 0.7, 0.256]]


def test_rewards_registry_names() -> None:
    builtin = {name for name in REWARDS if not name.startswith("test_")}  # conftest registers test-only terms
    assert builtin == {
        "accuracy",
        "format",
        "length_norm",
        "length_norm_group",
        "length_norm_plain",
        "length_norm_group_plain",
        "length_raw",
    }


# --- score and reward_stats ---------------------------------------------------------------------------------


def test_score_weights_and_sums_terms() -> None:
    x = batch(
        [GOOD, "<think>t</think><answer>b</answer>", BAD, "<answer>a"],
        think_tokens=[50, 200, 10, 0],
        completion_tokens=[60, 210, 20, 5],
        group_size=2,
        length_target=100,
    )
    per_term, total = score(x, [("accuracy", 1.0), ("format", 0.5), ("length_norm_plain", 2.0)])
    assert per_term == [
        [1.0, 0.0, 1.0, 0.0],
        [1.0, 1.0, 0.0, 0.0],
        [0.5, 1.0, 0.0, 0.0],
    ]
    # 1 + 0.5 + 2*0.5 = 2.5; 0 + 0.5 + 2*1 = 2.5; 1 + 0 + 0 = 1; 0
    assert total == [pytest.approx(v) for v in [2.5, 2.5, 1.0, 0.0]]


def test_score_without_terms_is_zero() -> None:
    per_term, total = score(batch([GOOD, BAD]), [])
    assert per_term == []
    assert total == [0.0, 0.0]


def test_score_unknown_reward_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown reward 'acuracy'.*accuracy, format, length_norm"):
        score(batch([GOOD]), [("acuracy", 1.0)])


def test_score_repeated_reward_rejected() -> None:
    with pytest.raises(ValueError, match="repeated: format"):
        score(batch([GOOD]), [("format", 1.0), ("format", 0.5)])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("accepted", [frozenset({"a"})], r"accepted has 1 rows but completions has 2"),
        ("think_tokens", [0, 0, 0], r"think_tokens has 3 rows but completions has 2"),
        ("completion_tokens", [], r"completion_tokens has 0 rows but completions has 2"),
        ("group_size", 3, r"2 rows, not a multiple of group_size=3"),
        ("group_size", 0, r"group_size must be >= 1"),
        ("length_target", 0, r"length_target must be >= 1"),
    ],
)
def test_score_validates_inputs(field: str, value: object, message: str) -> None:
    x = batch([GOOD, BAD], group_size=2)
    setattr(x, field, value)
    with pytest.raises(ValueError, match=message):
        score(x, [("accuracy", 1.0)])


def test_reward_stats() -> None:
    stats = reward_stats(["accuracy", "length_norm"], [[1.0, 0.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5]])
    assert stats == {
        "reward/accuracy": 0.5,
        "reward/accuracy_std": 0.5,  # population std of {1, 0, 1, 0}
        "reward/length_norm": 0.5,
        "reward/length_norm_std": 0.0,
    }


def test_reward_stats_population_std() -> None:
    stats = reward_stats(["x"], [[1.0, 2.0, 3.0]])
    assert stats["reward/x"] == pytest.approx(2.0)
    assert stats["reward/x_std"] == pytest.approx(math.sqrt(2 / 3))


def test_reward_stats_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 names but 1 value lists"):
        reward_stats(["a", "b"], [[1.0]])


# --- the length reward pays for content, not padding ------------------------------------------------------------

FGVC_PROMPT = (
    "This is an image containing an aircraft. Please identify the model of the aircraft based on the image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)
REASONING = "Four engines under swept wings and a hump over the cockpit, so this is a 747; the long upper deck says -400."
REASONING_TOKENS = 33  # at least its pieces, as a BPE tokenizer would count it
WRONG = "747-200"  # the accepted set below is {"747-400"}
ACCEPTED_747 = frozenset({"747-400"})


def think(text: str, answer: str = "747-400") -> str:
    return f"<think>{text}</think> <answer>{answer}</answer>"


def test_clean_reasoning_keeps_every_token() -> None:
    units, padding = think_content_units(REASONING, FGVC_PROMPT)
    assert padding == 0 and units > 0
    assert content_think_tokens(REASONING_TOKENS, REASONING, FGVC_PROMPT) == REASONING_TOKENS


@pytest.mark.parametrize(
    "padding",
    [
        " " * 33,
        "\n" * 33,
        "\n \t" * 11,
        " ".join(["wait"] * 33),
        " ".join(["hmm."] * 33),
        "Let me think. " * 8,  # a repeated sentence
        "." * 33,
        "-" * 33,
        "ha" * 33,  # one word, a repeated unit
        FGVC_PROMPT,  # the prompt copied into the think
    ],
    ids=["spaces", "newlines", "mixed-whitespace", "repeated-word", "repeated-word-punct", "repeated-sentence",
         "dots", "dashes", "repeated-unit", "copied-prompt"],
)  # fmt: skip
def test_padding_alone_earns_almost_nothing(padding: str) -> None:
    # 33 padding tokens used to earn exactly what 33 reasoning tokens earn.
    x = batch([think(padding)], accepted=[ACCEPTED_747], think_tokens=[33], length_target=33)
    x.prompts = [FGVC_PROMPT]
    (reward,) = REWARDS["length_norm"](x)
    assert reward <= 4 / 33  # at most the first "wait" or "let me think."


@pytest.mark.parametrize(
    ("once", "padded", "extra_tokens"),
    [
        ("", " " * 40, 40),  # generous: one token per whitespace character
        ("", "\n" * 40, 40),
        (" wait", " wait" * 40, 39),
        (" Let me think.", " Let me think." * 10, 36),
        ("", " " + FGVC_PROMPT, 40),
    ],
    ids=["spaces", "newlines", "repeated-word", "repeated-sentence", "copied-prompt"],
)
def test_a_padded_correct_answer_never_beats_the_concise_one(
    once: str, padded: str, extra_tokens: int
) -> None:
    """Padding earns nothing: the padded think scores at most the concise one (with a repeated phrase written
    once, since its first occurrence is content). `extra_tokens` is what the padding adds beyond `once`."""
    once_tokens = REASONING_TOKENS + {"": 0, " wait": 1, " Let me think.": 4}[once]
    rows = [think(REASONING + once), think(REASONING + padded)]
    x = batch(
        rows,
        accepted=[ACCEPTED_747] * 2,
        think_tokens=[once_tokens, once_tokens + extra_tokens],
        length_target=256,
        group_size=1,
    )
    x.prompts = [FGVC_PROMPT] * 2
    _, total = score(x, [("accuracy", 1.0), ("format", 1.0), ("length_norm", 1.0)])
    assert total[1] <= total[0]
    x.group_size = 2
    concise_r, padded_r = REWARDS["length_norm_group"](x)
    assert padded_r <= concise_r


def test_a_wrong_answer_plus_padding_earns_format_only() -> None:
    # Before: 1 (format) + 0.69 (length) for a wrong answer and newlines.
    x = batch([think("\n" * 177, WRONG)], accepted=[ACCEPTED_747], think_tokens=[177], length_target=256)
    _, total = score(x, [("accuracy", 1.0), ("format", 1.0), ("length_norm", 1.0)])
    assert total == [1.0]


def test_length_requires_correct_pays_only_correct_answers() -> None:
    rows = [think(REASONING), think(REASONING, WRONG)]
    x = batch(
        rows, accepted=[ACCEPTED_747] * 2, think_tokens=[REASONING_TOKENS] * 2, length_target=66, group_size=1
    )
    assert REWARDS["length_norm"](x) == [0.5, 0.5]  # default: paid for thinking, right or wrong
    x.length_requires_correct = True
    assert REWARDS["length_norm"](x) == [0.5, 0.0]


def test_length_requires_correct_in_the_group_form() -> None:
    # G=3: lengths 10 (correct), 40 (wrong), 30 (correct). Only the correct rows are paid and set min/max.
    rows = [think(REASONING), think(REASONING, WRONG), think(REASONING)]
    x = batch(rows, accepted=[ACCEPTED_747] * 3, think_tokens=[10, 40, 30], group_size=3, length_target=100)
    x.length_requires_correct = True
    assert REWARDS["length_norm_group"](x) == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("name", GROUP_FORMS)
def test_group_form_one_extra_token_earns_a_sliver(name: str) -> None:
    # lengths 10 and 11: before, 11 earned the full reward 1.0. The span floor is GROUP_MIN_SPAN * L_target.
    x = batch([THOUGHT, THOUGHT], think_tokens=[10, 11], group_size=2, length_target=256)
    assert REWARDS[name](x) == [0.0, pytest.approx(1 / (GROUP_MIN_SPAN * 256))]
    assert REWARDS[name](x)[1] < 0.05


def test_prompts_must_be_row_aligned() -> None:
    x = batch([GOOD, BAD], group_size=2)
    x.prompts = [FGVC_PROMPT]
    with pytest.raises(
        ValueError, match=r"prompts has 1 rows but completions has 2.*repeat each prompt's text G"
    ):
        score(x, [("length_norm", 1.0)])
