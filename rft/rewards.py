"""Verifiable rewards for GRPO, and the answer matcher that evaluation shares with them.

Every reward is a pure function of a `RewardInputs` batch and returns one float per completion, in rollout row
order (rows `b*G .. b*G+G-1` answer prompt `b`). `REWARDS` maps the names in `conf/reward/*.yaml` to them and
`score` sums a weighted list. Accuracy (`is_correct`, one extractor for the reward and evaluation) reads the
`<answer>` as tokens and asks whether it names one of the sample's accepted names (a class with its parent names,
an option's text or letter) and none of its rival names (the other classes or options), as a careful grader
would: "It is a Boeing 737-800." and `\\boxed{B}` score, "737-800 or 737-900" and "(A) left" do not. Visual-RFT's
two-way substring metric (`is_visualrft_correct`) is for evaluation only.
The normalised length reward (`length_norm`, target form;
`length_norm_group`, group form) counts only the think tokens that carry content (`rft.thinking`: filler such as
repeats, counting, hashes, other languages or prompt copies earns nothing); `length_norm_plain` and
`length_norm_group_plain` count every think token, as the paper most likely did. All four pay only with a valid
format and, when asked, only with a correct answer (docs/protocol.md).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from rft.thinking import content_think_tokens

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Visual-RFT's format regex; the tag counts in is_well_formatted close the loopholes a lazy `.*?` leaves open
# (e.g. a second <answer> block hidden inside the first one).
_THINK_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_ANSWER_FORMAT = re.compile(r"<answer>.*?</answer>", re.DOTALL)


# Dashes and minus signs that NFKC keeps; every one of them reads as "-".
_DASHES = str.maketrans(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63", "-"))
# A LaTeX command word (`\boxed`, `\text`) is dropped and braces separate tokens, so `\boxed{B}` reads as "B".
_LATEX_COMMAND = re.compile(r"\\[a-z]+")
# The negation of a contraction ("isn't", "don't") becomes the word "not", which `grade_answer` looks for.
_CONTRACTED_NOT = re.compile(r"n['\u2019]t\b")
# A token is a number with its decimals ("1.5") and its sign, when the sign follows no letter or digit ("-30"
# but "737-800"); a run of letters; or "%". Every other character separates tokens, and letters and digits are
# separate runs, so "A-320", "A320" and "a 320" all read as "a", "320", and "737-800", "737 800" as "737", "800".
_TOKEN = re.compile(r"(?:(?<![^\W_])[+-])?\d+(?:\.\d+)?|[^\W\d_]+|%")
_APOSTROPHES = ("'", "\u2019")
# After "a" or "i", these words leave it an option letter ("A or B"), not the article or the pronoun.
_CONNECTIVES = frozenset({"or", "and", "nor", "vs", "versus"})


class _Scan(NamedTuple):
    """An answer read as tokens."""

    tokens: tuple[str, ...]  # canonical tokens, in order
    slots: tuple[bool, ...]  # per token: a lone letter written where an option letter can stand


def _is_slot(text: str, found: list[re.Match[str]], k: int) -> bool:
    """Whether token `k` of `text` is a lone letter that can be an option letter.

    A lone letter stands between characters that are neither letters (the token is a whole letter run) nor digits
    ("B2") nor apostrophes ("it's"). "a" and "i" followed by a space and a word are the article and the pronoun
    ("A left turn", "I think B"), unless the word joins options ("A or B") or is itself a lone letter ("A B").
    """
    match = found[k]
    token = match.group()
    if len(token) != 1 or not "a" <= token <= "z":
        return False
    before, after = text[match.start() - 1 : match.start()], text[match.end() : match.end() + 1]
    if before.isdigit() or after.isdigit() or before in _APOSTROPHES or after in _APOSTROPHES:
        return False
    if token in "ai" and k + 1 < len(found):
        following = found[k + 1]
        gap = text[match.end() : following.start()]
        if gap and gap.isspace() and following.group() not in _CONNECTIVES and len(following.group()) > 1:
            return False
    return True


@functools.lru_cache(maxsize=1 << 14)
def _scan(text: str) -> _Scan:
    """`text` as canonical tokens (`normalize_answer` says how), and which are lone letters that may be option
    letters."""
    if not text.isascii():  # ASCII is already NFKC and holds no dash, minus sign or format character
        text = unicodedata.normalize("NFKC", text).translate(_DASHES)
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = _CONTRACTED_NOT.sub(" not", _LATEX_COMMAND.sub(" ", text.lower()))
    found = list(_TOKEN.finditer(text))
    tokens: list[str] = []
    for k, match in enumerate(found):
        token = match.group()
        if "." in token:  # one number, one spelling: 12.50 and 12.5, 3.0 and 3
            token = token.rstrip("0").rstrip(".")
        gap = text[found[k - 1].end() : match.start()] if k else ""
        if token[0] in "+-" and tokens and tokens[-1][-1].isdigit() and gap.isspace():
            token = token[1:]  # "737 -200" is a spaced hyphen, not a negative number
        tokens.append(token)
    slots = tuple(len(token) == 1 and _is_slot(text, found, k) for k, token in enumerate(tokens))
    return _Scan(tuple(tokens), slots)


def normalize_answer(text: str) -> str:
    """Canonical form of an answer or a name: its tokens, joined by single spaces.

    Strings that write one answer with a different case, width, spacing or punctuation get the same form.
    Steps, in order:

    1. Unicode NFKC (full-width letters and digits become ASCII, a ligature its letters), lowercase, every dash
       and minus sign becomes "-", invisible format characters (zero-width space) go, LaTeX command words go
       (`\\boxed{B}` reads as "b"), and "n't" becomes " not".
    2. Split into tokens: numbers with their decimals and sign ("1.5", "-30"; a sign counts only where it follows
       no letter or digit), runs of letters, and "%". Everything else separates tokens, and so does each boundary
       between a letter and a digit: "A-320", "A320", "a 320" all give "a 320"; "737-800", "737_800", "737 800"
       give "737 800"; "737800" stays one number. A decimal drops its trailing zeros ("12.50" gives "12.5").

    A sign and a decimal point are content: "-30%" gives "-30 %", "30%" gives "30 %", "1.5" and "15" differ.

    Args:
        text: Raw text, e.g. the content of the `<answer>` tag or a dataset label.

    Returns:
        The tokens joined by spaces; "" when the text has none.
    """
    return " ".join(_scan(text).tokens)


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


# Words that name no answer by themselves: the frame of a sentence ("It is a", "The answer is"), hedges, and
# generic nouns that also occur inside names (FGVC's "Douglas Aircraft Company", "King Air", "Model B200").
# Without rival names they are all an answer may add to an accepted name; with rival names they never count as
# a piece of a rival's name.
_FRAME_WORDS = frozenset(
    """a an the this that these those it its s is are was were be been i me my we our
    think believe guess would could should might may must will can
    probably likely maybe perhaps possibly presumably most definitely clearly certainly
    looks look like seems seem appears appear
    answer final correct option choice letter
    aircraft airplane aeroplane plane airliner jet air model variant type family version series
    aviation aerospace company corporation
    image picture photo shown depicted visible
    in on of from to with by as at here there so therefore thus hence which""".split()
)
# Words that negate. The matcher does not parse what they negate, so an answer holding one outside a name names
# nothing ("not A320, it's A321", "not 737-800"); inside a name ("no", "does not move") they are that name.
_NEGATIONS = frozenset(
    {"not", "no", "never", "neither", "nor", "none", "nothing", "without", "except", "cannot"}
)


class _Names(NamedTuple):
    """A set of names (accepted or rival answers) ready for matching; built once per set (`_names`)."""

    texts: frozenset[tuple[str, ...]]  # the token sequences of the names that are not a lone letter
    letters: frozenset[str]  # the names that are a lone letter: option letters
    words: frozenset[str]  # every token of every name, with and without its sign
    firsts: frozenset[str]  # the first token of every text
    longest: int  # tokens in the longest text


@functools.lru_cache(maxsize=4096)
def _names(names: frozenset[str]) -> _Names:
    """`names` as token sequences. Cached: a task's rows share their sets by reference, so this runs once a
    set."""
    seqs = {_scan(name).tokens for name in names} - {()}
    letters = {seq[0] for seq in seqs if len(seq) == 1 and len(seq[0]) == 1 and "a" <= seq[0] <= "z"}
    texts = {seq for seq in seqs if not (len(seq) == 1 and seq[0] in letters)}
    words = {token for seq in seqs for token in seq}
    return _Names(
        texts=frozenset(texts),
        letters=frozenset(letters),
        words=frozenset(words | {token.lstrip("+-") for token in words}),
        firsts=frozenset(seq[0] for seq in texts),
        longest=max((len(seq) for seq in texts), default=0),
    )


def _mentions(
    tokens: tuple[str, ...], accepted: _Names, rivals: _Names | None
) -> list[tuple[int, int, bool]]:
    """The names that `tokens` mention: (start, end, accepted?) spans of whole token sequences.

    At each start the longest name wins, and a mention inside a longer one is no mention of its own: "737" inside
    "737 800", "left" inside a rival option "slightly left". Overlapping mentions that do not nest both count.
    """
    longest = max(accepted.longest, rivals.longest if rivals else 0)
    found = []
    for i, token in enumerate(tokens):
        if token not in accepted.firsts and (rivals is None or token not in rivals.firsts):
            continue
        for j in range(min(len(tokens), i + longest), i, -1):
            key = tokens[i:j]
            if key in accepted.texts or (rivals is not None and key in rivals.texts):
                found.append((i, j, key in accepted.texts))
                break
    kept, reach = [], 0
    for i, j, ok in found:  # by start; a span that ends within an earlier one lies inside it
        if j > reach:
            kept.append((i, j, ok))
            reach = j
    return kept


def grade_answer(answer: str, accepted: frozenset[str], rivals: frozenset[str] | None = None) -> bool:
    """Whether an answer text names the ground truth and nothing else, as a careful grader reads it.

    The answer is read as tokens (`normalize_answer`). It names a name when the name's tokens occur in it as one
    run (so "It is a Boeing 737-800.", "\\boxed{737-800}" and "737 800" name "737-800"; "737" and "737800" do
    not). It names an option letter only where a letter stands alone: "B", "(B)", "B.", "B) left",
    "The answer is B", "Option B", "\\boxed{B}", but not the article in "A left turn" nor the "b" of "B2".
    The answer is correct when it names an accepted name, names no rival, and

    - holds no negation outside a name ("not 737-800", "not A320, it's A321");
    - with `rivals`: holds no other word of a rival's name that the accepted names lack, besides frame words
      ("737-800/900": "900" is part of "737-900"; "Airbus 707-320": "Airbus" is another maker);
    - for multiple choice, holds no lone letter but the accepted one ("(A) left", "C or E");
    - without `rivals` (no knowledge of what else the answer could name): holds nothing but frame words besides
      accepted names ("It is a 737-800" passes, "737-800 (Next Generation)" does not).

    Args:
        answer: The raw answer text (the content of the `<answer>` tag).
        accepted: Names of the ground truth (`rft.data.base.accepted_answers`: the label and its aliases, or the
            correct option's text and letter); raw or normalised, they are read the same way.
        rivals: Names of every other answer the question allows (`rft.data.base.rival_answers`: the other classes
            with their aliases, or the other options' texts and letters); a name also in `accepted` counts as
            accepted. None: unknown.

    Returns:
        True when the answer names the ground truth and nothing that contradicts it.
    """
    scan = _scan(answer)
    tokens = scan.tokens
    ok_names = _names(accepted)
    rival_names = _names(rivals) if rivals is not None else None
    spans = _mentions(tokens, ok_names, rival_names)
    named_ok = any(ok for _, _, ok in spans)
    if not all(ok for _, _, ok in spans):
        return False
    inside = {k for i, j, _ in spans for k in range(i, j)}
    multiple_choice = bool(ok_names.letters or (rival_names and rival_names.letters))
    for k, token in enumerate(tokens):
        if k in inside:
            continue
        if multiple_choice and scan.slots[k]:
            if token not in ok_names.letters:
                return False  # another option's letter ("(A) left"), or one no option has ("C or E")
            named_ok = True
            continue
        if token in _NEGATIONS:
            return False
        if token in _FRAME_WORDS:
            continue
        if rival_names is None:
            return False
        bare = token.lstrip("+-")
        piece_of_rival = token in rival_names.words or bare in rival_names.words
        if piece_of_rival and bare not in ok_names.words and not (len(token) == 1 and token.isalpha()):
            return False
    return named_ok


def is_correct(completion: str, accepted: frozenset[str], rivals: frozenset[str] | None = None) -> bool:
    """Accuracy, the one matcher of the reward and of evaluation: the `<answer>` names the ground truth.

    Only the content of the single answer tag counts (`extract_answer`); text outside the tags never does, and a
    missing, repeated or malformed tag scores False. The content is graded by `grade_answer`: it must name an
    accepted name (a class with or without its parent names, an option's text or letter) and no rival, so
    "737-200 or 737-300", "A320 A321", every option at once, "(A) left" where "left" is option B, a family alone
    ("Boeing 737"), a bare number ("707") and an empty answer all score False.

    Args:
        completion: Decoded completion text.
        accepted: The ground truth's names (`rft.data.base.accepted_answers`), e.g. {"left", "b"} for option B
            "left".
        rivals: The other answers' names (`rft.data.base.rival_answers`); None falls back to the strict rule of
            `grade_answer`.

    Returns:
        Whether the answer names the ground truth.
    """
    answer = extract_answer(completion)
    return answer is not None and grade_answer(answer, accepted, rivals)


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


# --- what a think block is worth: content units (`rft.thinking`) and the length rewards ----------------------


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
    # [B*G] the other answers' names per row (`rft.data.base.rival_answers`), which tell "737-800" from
    # "737-800 or 737-900"; None (the list or a row): no rival knowledge, `is_correct` falls back to its strict
    # rule.
    rivals: list[frozenset[str] | None] | None = None

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
        names = (
            ["accepted", "think_tokens", "completion_tokens"]
            + (["prompts"] if self.prompts is not None else [])
            + (["rivals"] if self.rivals is not None else [])
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


def _correct(x: RewardInputs) -> list[bool]:
    """[B*G] `is_correct` of each row, with its rival names when `x` has them."""
    rivals = x.rivals if x.rivals is not None else [None] * len(x.completions)
    return [is_correct(c, acc, riv) for c, acc, riv in zip(x.completions, x.accepted, rivals, strict=True)]


def accuracy(x: RewardInputs) -> list[float]:
    """1.0 where `is_correct` holds, else 0.0. Returns [B*G]."""
    return [float(ok) for ok in _correct(x)]


# Named after its config key; shadowing the builtin is harmless because this module never calls format().
def format(x: RewardInputs) -> list[float]:
    """1.0 where the completion follows the prompt template (`x.think` picks which), else 0.0. [B*G]."""
    return [float(is_well_formatted(c, x.think)) for c in x.completions]


def _length_paid(x: RewardInputs) -> list[bool]:
    """[B*G] whether a row may earn a length reward: a valid think-template format and, when
    `x.length_requires_correct`, a correct answer."""
    paid = [is_well_formatted(c, think=True) for c in x.completions]
    if x.length_requires_correct:
        paid = [p and ok for p, ok in zip(paid, _correct(x), strict=True)]
    return paid


def content_lengths(x: RewardInputs) -> list[float]:
    """[B*G] L of the length rewards: each row's think tokens that carry content (`content_think_tokens`)."""
    prompts = x.prompts if x.prompts is not None else [""] * len(x.completions)
    return [
        content_think_tokens(n, extract_think(c) or "", p)
        for c, n, p in zip(x.completions, x.think_tokens, prompts, strict=True)
    ]


def _target_form(x: RewardInputs, lengths: list[float]) -> list[float]:
    """[B*G] `min(L / L_target, 1)` for the rows `_length_paid` pays, else 0; `lengths` is L, [B*G]."""
    return [
        min(n / x.length_target, 1.0) if ok else 0.0 for n, ok in zip(lengths, _length_paid(x), strict=True)
    ]


# The group form's smallest span, as a fraction of L_target: a group whose lengths differ by one token pays
# 1 / (GROUP_MIN_SPAN * L_target) for it, not the full reward.
GROUP_MIN_SPAN = 0.1


def _group_form(x: RewardInputs, lengths: list[float]) -> list[float]:
    """[B*G] `(L - min L) / max(max L - min L, GROUP_MIN_SPAN * L_target)` within each group; `lengths` is L.

    The min and max run over the paid rows of the group only (`_length_paid`); unpaid rows get 0, and the whole
    group gets 0 when it has fewer than two paid rows or all their lengths are equal. The span floor keeps a
    one-token difference from earning the full reward.
    """
    paid = _length_paid(x)
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


def length_norm(x: RewardInputs) -> list[float]:
    """The normalised length reward, target form (the default): `min(L / L_target, 1)`.

    L is the think's content tokens (`content_lengths`): filler (whitespace, repeats and restatements, counting,
    strings that are not language, other languages, copies of the prompt) earns nothing. Paid only where
    `_length_paid` holds (valid format; and a correct answer when `x.length_requires_correct`), so a model
    cannot earn it by rambling outside the tags.

    Returns:
        [B*G] rewards in [0, 1].
    """
    return _target_form(x, content_lengths(x))


def length_norm_group(x: RewardInputs) -> list[float]:
    """Group-normalised length reward on the content length L (`content_lengths`), see `_group_form`.

    Returns:
        [B*G] rewards in [0, 1].
    """
    return _group_form(x, content_lengths(x))


def length_norm_plain(x: RewardInputs) -> list[float]:
    """The paper's plain target form: `min(think tokens / L_target, 1)`, every think token counted, still gated
    by `_length_paid`. Kept by name to reproduce the paper exactly; filler earns it (docs/protocol.md).

    Returns:
        [B*G] rewards in [0, 1].
    """
    return _target_form(x, [float(n) for n in x.think_tokens])


def length_norm_group_plain(x: RewardInputs) -> list[float]:
    """The paper's plain group form: `_group_form` on the think token counts, every think token counted.

    Returns:
        [B*G] rewards in [0, 1].
    """
    return _group_form(x, [float(n) for n in x.think_tokens])


def length_raw(x: RewardInputs) -> list[float]:
    """VisualThinker-R1-Zero's un-normalised length reward, `0.001 * completion tokens`, ungated. [B*G]."""
    return [0.001 * n for n in x.completion_tokens]


REWARDS: dict[str, Callable[[RewardInputs], list[float]]] = {
    "accuracy": accuracy,
    "format": format,
    "length_norm": length_norm,
    "length_norm_group": length_norm_group,
    "length_norm_plain": length_norm_plain,
    "length_norm_group_plain": length_norm_group_plain,
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
