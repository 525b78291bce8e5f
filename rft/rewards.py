"""Verifiable rewards for GRPO, and the answer parsing that evaluation shares with them.

Every reward is a pure function of a `RewardInputs` batch and returns one float per completion, in rollout row
order (rows `b*G .. b*G+G-1` answer prompt `b`). `REWARDS` maps the names in `conf/reward/*.yaml` to them and
`score` sums a weighted list. Departures from Visual-RFT: accuracy is an exact match of the normalised
`<answer>` (an empty answer, several answers or "A or B" score 0), and its lenient substring metric is kept for
evaluation only (`is_lenient_correct`). The normalised length reward has two forms, `length_norm` (target form)
and `length_norm_group` (group form); both count think tokens and pay only with a valid format (docs/grpo.md).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Visual-RFT's format regex; the tag counts in is_well_formatted close the loopholes a lazy `.*?` leaves open
# (e.g. a second <answer> block hidden inside the first one).
_THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER_FORMAT = re.compile(r"<answer>.*?</answer>", re.DOTALL)


def _is_punctuation(ch: str) -> bool:
    """True for ASCII punctuation (`string.punctuation`) and any Unicode punctuation category (P*)."""
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """Canonical form of an answer string, used for exact-match accuracy.

    Steps, in order:

    1. Unicode NFKC: full-width characters become ASCII (U+FF21 U+FF13 U+FF12 U+FF10 becomes "A320") and
       a non-breaking space becomes a plain space.
    2. Lowercase.
    3. Remove every whitespace character, every underscore and every invisible format character
       (Unicode category Cf, e.g. zero-width space), as Visual-RFT does for spaces and underscores:
       "Boeing 737_200" becomes "boeing737200".
    4. Strip leading and trailing punctuation (ASCII and Unicode), keeping internal punctuation:
       '"A."' becomes "a", "F/A-18" stays "f/a-18".

    Args:
        text: Raw answer text, e.g. the content of the `<answer>` tag or a dataset label.

    Returns:
        The normalised string; "" when nothing survives.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch for ch in text if not ch.isspace() and ch != "_" and unicodedata.category(ch) != "Cf")
    start, end = 0, len(text)
    while start < end and _is_punctuation(text[start]):
        start += 1
    while end > start and _is_punctuation(text[end - 1]):
        end -= 1
    return text[start:end]


def _extract_single(completion: str, open_tag: str, close_tag: str) -> str | None:
    """Content between the only `open_tag` and the only `close_tag`; None unless one ordered pair."""
    if completion.count(open_tag) != 1 or completion.count(close_tag) != 1:
        return None
    start = completion.index(open_tag) + len(open_tag)
    end = completion.index(close_tag)
    if end < start:  # closing tag before (or overlapping) the opening one
        return None
    return completion[start:end]


def extract_answer(completion: str) -> str | None:
    """Raw content of the single `<answer>…</answer>` pair of a completion.

    This is the one parser that both the training rewards and evaluation use, so they cannot disagree.
    Tags are matched case-sensitively and exactly.

    Args:
        completion: Decoded completion text.

    Returns:
        The text between the tags, unnormalised (may be "" or whitespace); None when there is not exactly one
        `<answer>` and one `</answer>`, or when the closing tag comes before the opening one.
    """
    return _extract_single(completion, ANSWER_OPEN, ANSWER_CLOSE)


def extract_think(completion: str) -> str | None:
    """Raw content of the single `<think>…</think>` pair; same contract as `extract_answer`."""
    return _extract_single(completion, THINK_OPEN, THINK_CLOSE)


def is_well_formatted(completion: str, think: bool) -> bool:
    """Whether a completion follows the prompt template exactly.

    Outer whitespace is ignored; any other text outside the tags fails the check.

    Args:
        completion: Decoded completion text.
        think: True for the think template, `<think>…</think> <answer>…</answer>` (Visual-RFT's regex,
            plus exactly one of each of the four tags). False for the no-think template,
            `<answer>…</answer>` alone, with exactly one answer pair and no think tag anywhere.

    Returns:
        True when the completion matches the template.
    """
    text = completion.strip()
    one_answer = text.count(ANSWER_OPEN) == 1 and text.count(ANSWER_CLOSE) == 1
    if think:
        one_think = text.count(THINK_OPEN) == 1 and text.count(THINK_CLOSE) == 1
        return one_answer and one_think and _THINK_FORMAT.fullmatch(text) is not None
    no_think = THINK_OPEN not in text and THINK_CLOSE not in text
    return one_answer and no_think and _ANSWER_FORMAT.fullmatch(text) is not None


def is_correct(completion: str, accepted: frozenset[str]) -> bool:
    """Exact-match accuracy: the normalised answer is one of the accepted strings.

    Only the tag content counts; text outside the tags is ignored whether or not it holds the right answer.
    Never a substring test, so "737-200 or 737-300" does not match {"737-200"}.

    Args:
        completion: Decoded completion text.
        accepted: Already-normalised accepted answers, e.g. {"left", "a"} for multiple-choice option A "left".

    Returns:
        False when the answer tag is missing, repeated or malformed, or normalises to ""; otherwise
        whether the normalised answer is in `accepted`.
    """
    answer = extract_answer(completion)
    if answer is None:
        return False
    normalised = normalize_answer(answer)
    return normalised != "" and normalised in accepted


def _lenient_form(text: str) -> str:
    """Visual-RFT's comparison form: lowercase, with whitespace and underscores removed."""
    return "".join(ch for ch in text.lower() if not ch.isspace() and ch != "_")


def is_lenient_correct(completion: str, answer: str) -> bool:
    """Visual-RFT's lenient accuracy, for evaluation tables only: ground truth is a substring of the answer.

    This metric is hackable ("737-2000" contains "737-200", and an answer listing every label contains all of
    them), which is why training uses `is_correct` instead. Both sides are lowercased and stripped of
    whitespace and underscores, as in Visual-RFT; surrounding punctuation is kept.

    Args:
        completion: Decoded completion text.
        answer: The raw ground-truth label, e.g. "737-200".

    Returns:
        False when the answer tag is missing or malformed, or either side is empty after normalisation;
        otherwise whether the ground truth occurs in the extracted answer.
    """
    extracted = extract_answer(completion)
    if extracted is None:
        return False
    got, truth = _lenient_form(extracted), _lenient_form(answer)
    return got != "" and truth != "" and truth in got


@dataclass
class RewardInputs:
    """Everything the rewards need about one rollout batch of B prompts, G completions each.

    Every list is row-aligned and grouped: rows `g*G .. g*G+G-1` share prompt `g`.
    """

    completions: list[str]  # [B*G] decoded completion texts
    accepted: list[frozenset[str]]  # [B*G] normalised accepted answers per row
    think_tokens: list[int]  # [B*G] tokens inside <think>…</think>, 0 when absent
    completion_tokens: list[int]  # [B*G] tokens in the whole completion
    group_size: int  # G
    think: bool  # whether the prompt template asks for <think>
    length_target: int  # L_target of length_norm (default: the max completion length)

    def validate(self) -> None:
        """Check that the lists are row-aligned and split into whole groups.

        Raises:
            ValueError: If a list's length differs from `len(completions)`, the row count is not a multiple
                of `group_size`, or `group_size` / `length_target` is not positive.
        """
        if self.group_size < 1:
            raise ValueError(f"RewardInputs.group_size must be >= 1, got {self.group_size}")
        if self.length_target < 1:
            raise ValueError(
                f"RewardInputs.length_target must be >= 1 (tokens), got {self.length_target}; "
                "set it to the max completion length"
            )
        n = len(self.completions)
        for name in ("accepted", "think_tokens", "completion_tokens"):
            got = len(getattr(self, name))
            if got != n:
                raise ValueError(
                    f"RewardInputs.{name} has {got} rows but completions has {n}; every list must be [B*G]"
                )
        if n % self.group_size != 0:
            raise ValueError(
                f"RewardInputs has {n} rows, not a multiple of group_size={self.group_size}; "
                "rows must come in whole groups of G completions per prompt"
            )


def accuracy(x: RewardInputs) -> list[float]:
    """1.0 where `is_correct` holds, else 0.0. Returns [B*G]."""
    return [float(is_correct(c, acc)) for c, acc in zip(x.completions, x.accepted, strict=True)]


# Named after its config key; shadowing the builtin is harmless because this module never calls format().
def format(x: RewardInputs) -> list[float]:
    """1.0 where the completion follows the prompt template (`x.think` picks which), else 0.0. [B*G]."""
    return [float(is_well_formatted(c, x.think)) for c in x.completions]


def _think_valid(x: RewardInputs) -> list[bool]:
    """[B*G] whether each row has the valid think-template format, which gates the length rewards."""
    return [is_well_formatted(c, think=True) for c in x.completions]


def length_norm(x: RewardInputs) -> list[float]:
    """The normalised length reward, target form (the default): `min(L_think / L_target, 1)`.

    Paid only when the think-template format is valid, so a model cannot earn it by rambling outside the tags.

    Returns:
        [B*G] rewards in [0, 1].
    """
    return [
        min(n / x.length_target, 1.0) if ok else 0.0
        for n, ok in zip(x.think_tokens, _think_valid(x), strict=True)
    ]


def length_norm_group(x: RewardInputs) -> list[float]:
    """Group-normalised length reward: `(L - min L) / (max L - min L)` within each prompt's group.

    The min and max run over the format-valid rows of the group only. Format-invalid rows get 0, and the whole
    group gets 0 when it has fewer than two valid rows or all valid lengths are equal.

    Returns:
        [B*G] rewards in [0, 1].
    """
    valid = _think_valid(x)
    out = [0.0] * len(x.completions)
    for start in range(0, len(out), x.group_size):
        rows = [i for i in range(start, start + x.group_size) if valid[i]]
        if len(rows) < 2:
            continue
        lo = min(x.think_tokens[i] for i in rows)
        hi = max(x.think_tokens[i] for i in rows)
        if hi == lo:
            continue
        for i in rows:
            out[i] = (x.think_tokens[i] - lo) / (hi - lo)
    return out


def length_raw(x: RewardInputs) -> list[float]:
    """VisualThinker-R1-Zero's un-normalised length reward, `0.001 * completion tokens`, ungated. [B*G]."""
    return [0.001 * n for n in x.completion_tokens]


REWARDS: dict[str, Callable[[RewardInputs], list[float]]] = {
    "accuracy": accuracy,
    "format": format,
    "length_norm": length_norm,
    "length_norm_group": length_norm_group,
    "length_raw": length_raw,
}


def score(x: RewardInputs, terms: list[tuple[str, float]]) -> tuple[list[list[float]], list[float]]:
    """Evaluate weighted reward terms on a batch.

    Args:
        x: The batch; validated here.
        terms: `[(name, weight), ...]` with names from `REWARDS`, each at most once.

    Returns:
        `(per_term, total)`: per_term is [R][B*G] unweighted values in the order of `terms`; total is
        [B*G], the weighted sum over terms (all zeros when `terms` is empty).

    Raises:
        ValueError: On an unknown or repeated reward name, or when `x` fails `RewardInputs.validate`.
    """
    names = [name for name, _ in terms]
    for name in names:
        if name not in REWARDS:
            raise ValueError(f"unknown reward {name!r}; valid names are: {', '.join(sorted(REWARDS))}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"reward terms repeated: {', '.join(repeated)}; list each reward once with one weight"
        )
    x.validate()
    per_term = [REWARDS[name](x) for name in names]  # [R][B*G]
    total = [0.0] * len(x.completions)  # [B*G]
    for (_, weight), values in zip(terms, per_term, strict=True):
        total = [t + weight * v for t, v in zip(total, values, strict=True)]
    return per_term, total


def reward_stats(names: list[str], per_term: list[list[float]]) -> dict[str, float]:
    """Batch mean and population std of each reward term, for logging.

    Args:
        names: Term names, aligned with `per_term`.
        per_term: [R][B*G] unweighted values, as returned by `score`.

    Returns:
        `{"reward/<name>": mean, "reward/<name>_std": std}` for each term; both 0.0 for an empty batch.

    Raises:
        ValueError: If `names` and `per_term` differ in length.
    """
    if len(names) != len(per_term):
        raise ValueError(
            f"reward_stats got {len(names)} names but {len(per_term)} value lists; pass one per term"
        )
    stats: dict[str, float] = {}
    for name, values in zip(names, per_term, strict=True):
        n = len(values)
        mean = sum(values) / n if n else 0.0
        var = sum((v - mean) ** 2 for v in values) / n if n else 0.0
        stats[f"reward/{name}"] = mean
        stats[f"reward/{name}_std"] = var**0.5
    return stats
