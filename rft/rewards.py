"""Verifiable rewards for GRPO, and the answer matcher that evaluation shares with them.

Every reward is a pure function of a `RewardInputs` batch and returns one float per completion, in rollout row
order (rows `b*G .. b*G+G-1` answer prompt `b`). `REWARDS` maps the names in `conf/reward/*.yaml` to them and
`score` sums a weighted list. Accuracy (`is_correct`) is an exact match of the normalised `<answer>` against the
sample's accepted names (a class with its parent names, an option's letter or text), or a letter and text that
name the same option; an empty answer, several answers or "A or B" score 0. Visual-RFT's two-way substring
metric (`is_visualrft_correct`) is for evaluation only. The normalised length reward (`length_norm`, target form;
`length_norm_group`, group form) counts only the think tokens that carry content (`think_content_units`), pays
only with a valid format and, when asked, only with a correct answer (docs/grpo.md).
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


# A multiple-choice answer that writes both the option letter and its text, e.g. "(B) left", "B. left", "B) left",
# "B: left", "B left" or "left (B)". Matched on the raw answer, where the separating space still exists.
_LETTER_THEN_TEXT = re.compile(r"[(\[]?\s*([A-Za-z])\s*(?:[)\]]\s*[.:,\-]?|[.:,\-]|\s)\s*(\S.*)", re.DOTALL)
_TEXT_THEN_LETTER = re.compile(r"(.*\S)\s*[(\[]\s*([A-Za-z])\s*[)\]]\s*\.?", re.DOTALL)


def split_option(answer: str) -> tuple[str, str] | None:
    """The (letter, text) parts of an answer that writes a multiple-choice letter together with a text.

    Args:
        answer: Raw answer text, e.g. "(B) left", "B. left", "B) left", "B: left", "B left" or "left (B)".

    Returns:
        The raw letter and the raw text, e.g. ("B", "left"); None when the answer is not of that shape.
    """
    text = unicodedata.normalize("NFKC", answer).strip()
    match = _LETTER_THEN_TEXT.fullmatch(text)
    if match:
        return match.group(1), match.group(2)
    match = _TEXT_THEN_LETTER.fullmatch(text)
    if match:
        return match.group(2), match.group(1)
    return None


def is_correct(completion: str, accepted: frozenset[str]) -> bool:
    """Accuracy, the one matcher of the reward and of evaluation: the answer names the ground truth.

    Only the tag content counts; text outside the tags is ignored whether or not it holds the right answer.
    Never a substring test, so "737-200 or 737-300" does not match {"737-200"} and "707" does not match
    {"707-320"}. The answer is correct when either

    - its normalised form is one of `accepted` (a class name, or that name written with its parent names, e.g.
      "Boeing 707-320"; for multiple choice the option letter or the option text), or
    - it writes a letter and a text (`split_option`: "(B) left", "B. left", "left (B)") and both are in
      `accepted`. A multiple-choice set holds exactly one letter and one text, those of the correct option, so
      both being in it means they agree; "(A) left" where "left" is option B scores 0.

    Args:
        completion: Decoded completion text.
        accepted: Already-normalised accepted answers (`rft.data.base.accepted_answers`), e.g.
            {"left", "b"} for multiple-choice option B "left".

    Returns:
        False when the answer tag is missing, repeated or malformed, or normalises to ""; otherwise whether the
        answer names an accepted answer as above.
    """
    answer = extract_answer(completion)
    if answer is None:
        return False
    normalised = normalize_answer(answer)
    if normalised == "":
        return False
    if normalised in accepted:
        return True
    parts = split_option(answer)
    if parts is None:
        return False
    letter, text = (normalize_answer(part) for part in parts)
    return letter in accepted and text in accepted


def _lenient_form(text: str) -> str:
    """Visual-RFT's comparison form: lowercase, with whitespace and underscores removed."""
    return "".join(ch for ch in text.lower() if not ch.isspace() and ch != "_")


def is_lenient_correct(completion: str, answer: str) -> bool:
    """One-way containment, the suite's loose upper bound: the label occurs inside the answer.

    Not Visual-RFT's metric (that is `is_visualrft_correct`, which also accepts an answer inside the label).
    Still hackable: "737-2000" contains "737-200", and an answer listing every label contains all of them.
    Both sides are lowercased and stripped of whitespace and underscores; surrounding punctuation is kept.

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


# Visual-RFT's answer parser: the first pair, without DOTALL (a multi-line answer falls back to the whole text).
_VISUALRFT_ANSWER = re.compile(r"<answer>(.*?)</answer>")


def is_visualrft_correct(completion: str, answer: str) -> bool:
    """Visual-RFT's classification accuracy, reproduced for comparison with its published numbers only.

    Its rule (the accuracy reward of Visual-RFT, arXiv 2503.01785, which its FGVC tables report): take the first
    `<answer>…</answer>` (or, without one, the whole completion), strip it, delete spaces and underscores,
    lowercase both sides, and count it correct when either side contains the other. It is an upper bound, not a
    fair accuracy: an empty answer, "737" for "737-200", a bare letter inside an option text ("e" in "left"),
    and an untagged completion that quotes the label all count. Never a training reward.

    Args:
        completion: Decoded completion text.
        answer: The raw ground-truth label, e.g. "707-320".

    Returns:
        Whether the extracted answer and the label contain one another.
    """
    match = _VISUALRFT_ANSWER.search(completion)
    got = (match.group(1) if match else completion).strip()
    got = got.replace(" ", "").replace("_", "").lower()
    truth = answer.strip().replace(" ", "").replace("_", "").lower()
    return truth in got or got in truth


# --- what a think block is worth: content units ---------------------------------------------------------------

# Word n-gram length of the repetition and copy checks. A repeat of 4 words or more earns nothing; shorter repeats
# ("it is a", "the tail") are ordinary language.
NGRAM = 4
# Pieces a word would at least be tokenised into: letter runs, single digits, punctuation runs (the shape of the
# Qwen2 / GPT pre-tokeniser, so a word's units rarely exceed its tokens).
_PIECE = re.compile(r"[^\W\d_]+|\d|[^\w\s]+|_+")
# A word that is one short unit repeated three times or more ("hahaha", "1111", "........").
_REPEATED_UNIT = re.compile(r"(.{1,8}?)\1{2,}", re.DOTALL)


def _units(word: str) -> int:
    """Pieces of a word (`_PIECE`), at least 1."""
    return max(len(_PIECE.findall(word)), 1)


def think_content_units(think: str, prompt: str = "") -> tuple[int, int]:
    """Split a think block into units that carry content and units of padding.

    The text is cut into words (maximal runs of non-whitespace); each word is worth its pieces (`_PIECE`),
    which approximate its tokens from below. Padding, which earns no length reward:

    - whitespace beyond one separator between two words (runs of spaces or newlines, leading and trailing
      whitespace), one unit per character, an upper bound on its tokens;
    - words with no letter or digit ("...", "---") and invisible words;
    - repeated n-grams: every word of an `NGRAM`-word window that already started earlier in the think, so
      a repeated phrase keeps only its first occurrence ("wait wait wait" keeps one "wait");
    - text copied from the prompt: every word of an `NGRAM`-word window that also occurs in the prompt;
    - within a word, all but one copy of a repeated short unit ("hahahaha" keeps "ha", and its other copies
      count as padding units).

    Words compare by `normalize_answer` (case, width and surrounding punctuation ignored).

    Args:
        think: The text inside `<think>…</think>`.
        prompt: The user-turn text of the prompt ("" when unknown: nothing counts as copied).

    Returns:
        (content units C, padding units P); both 0 for an empty think.
    """
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", think)]
    words = [think[a:b] for a, b in spans]  # [W]
    keys = [normalize_answer(w) for w in words]  # [W]
    whitespace = len(think) - sum(len(w) for w in words)
    padding = whitespace - max(len(words) - 1, 0)  # one separator between two words is free
    content = [any(ch.isalnum() for ch in k) for k in keys]  # [W]
    prompt_keys = [normalize_answer(w) for w in prompt.split()]
    prompt_grams = {tuple(prompt_keys[i : i + NGRAM]) for i in range(len(prompt_keys) - NGRAM + 1)}
    first: dict[tuple[str, ...], int] = {}  # n-gram -> where it first starts
    for start in range(len(words) - NGRAM + 1):
        gram = tuple(keys[start : start + NGRAM])
        if gram in prompt_grams or first.setdefault(gram, start) < start:
            for i in range(start, start + NGRAM):
                content[i] = False
    units = 0
    for word, key, ok in zip(words, keys, content, strict=True):
        if not ok:
            padding += _units(word)
            continue
        repeated = _REPEATED_UNIT.fullmatch(key)
        if repeated:  # "hahaha": one copy of the unit is content, the other copies padding
            unit = _units(repeated.group(1))
            units += unit
            padding += unit * (len(key) // len(repeated.group(1)) - 1)
        else:
            units += _units(word)
    return units, padding


def content_think_tokens(think_tokens: int, think: str, prompt: str = "") -> float:
    """The think tokens that carry content: `think_tokens * C / (C + P)` from `think_content_units`.

    The row's real token count is shared out in proportion to the units, so a think block free of padding keeps
    every token (C / (C + P) = 1) and one that is all padding keeps none. Padding whitespace is counted at one
    unit per character (at least its tokens) and content at its pieces (at most its tokens), so adding padding
    to a think never raises the result.

    Args:
        think_tokens: Tokens inside `<think>…</think>`, as the tokenizer counted them.
        think: The text inside `<think>…</think>`.
        prompt: The user-turn prompt text, for the copy check ("" to skip it).

    Returns:
        A float in [0, think_tokens].
    """
    units, padding = think_content_units(think, prompt)
    return think_tokens * units / (units + padding) if units else 0.0


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
    # [B*G] the user-turn prompt text of each row (`Task.prompt`); think text copied from it earns no length
    # reward. None: no copy check.
    prompts: list[str] | None = None
    # Pay the length rewards only to completions whose answer is correct (`reward.length_requires_correct`).
    length_requires_correct: bool = False

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
        names = ["accepted", "think_tokens", "completion_tokens"] + (
            ["prompts"] if self.prompts is not None else []
        )
        for name in names:
            got = len(getattr(self, name))
            if got != n:
                raise ValueError(
                    f"RewardInputs.{name} has {got} rows but completions has {n}; every list must be [B*G]"
                    + (" (repeat each prompt's text G times)" if name == "prompts" else "")
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


def _length_paid(x: RewardInputs) -> list[bool]:
    """[B*G] whether a row may earn a length reward: a valid think-template format and, when
    `x.length_requires_correct`, a correct answer."""
    paid = [is_well_formatted(c, think=True) for c in x.completions]
    if x.length_requires_correct:
        paid = [p and is_correct(c, acc) for p, c, acc in zip(paid, x.completions, x.accepted, strict=True)]
    return paid


def content_lengths(x: RewardInputs) -> list[float]:
    """[B*G] L of the length rewards: each row's think tokens that carry content (`content_think_tokens`)."""
    prompts = x.prompts if x.prompts is not None else [""] * len(x.completions)
    return [
        content_think_tokens(n, extract_think(c) or "", p)
        for c, n, p in zip(x.completions, x.think_tokens, prompts, strict=True)
    ]


def length_norm(x: RewardInputs) -> list[float]:
    """The normalised length reward, target form (the default): `min(L / L_target, 1)`.

    L is the think's content tokens (`content_lengths`): whitespace, repeated n-grams and copied prompt text
    earn nothing. Paid only where `_length_paid` holds (valid format; and a correct answer when
    `x.length_requires_correct`), so a model cannot earn it by rambling outside the tags.

    Returns:
        [B*G] rewards in [0, 1].
    """
    return [
        min(n / x.length_target, 1.0) if ok else 0.0
        for n, ok in zip(content_lengths(x), _length_paid(x), strict=True)
    ]


# The group form's smallest span, as a fraction of L_target: a group whose content lengths differ by one token
# pays 1 / (GROUP_MIN_SPAN * L_target) for it, not the full reward.
GROUP_MIN_SPAN = 0.1


def length_norm_group(x: RewardInputs) -> list[float]:
    """Group-normalised length reward: `(L - min L) / max(max L - min L, GROUP_MIN_SPAN * L_target)`.

    L is the content length (`content_lengths`). The min and max run over the paid rows of the group only
    (`_length_paid`); unpaid rows get 0, and the whole group gets 0 when it has fewer than two paid rows or
    all their lengths are equal. The span floor keeps a one-token difference from earning the full reward.

    Returns:
        [B*G] rewards in [0, 1].
    """
    paid = _length_paid(x)
    lengths = content_lengths(x)  # [B*G]
    floor = GROUP_MIN_SPAN * x.length_target
    out = [0.0] * len(x.completions)
    for start in range(0, len(out), x.group_size):
        rows = [i for i in range(start, start + x.group_size) if paid[i]]
        if len(rows) < 2:
            continue
        lo = min(lengths[i] for i in rows)
        hi = max(lengths[i] for i in rows)
        if hi == lo:
            continue
        for i in rows:
            out[i] = (lengths[i] - lo) / max(hi - lo, floor)
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
