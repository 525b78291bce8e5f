"""What a think block is worth: how much of a `<think>` text is reasoning, for the normalised length rewards.

`content_think_tokens` shares a row's real think-token count out as `tokens * C / (C + P)`, with the content and
padding units of `think_content_units`. The think is normalised first (`normalize_think`: NFKC, invisible
characters dropped, look-alike Cyrillic / Greek letters read as Latin). Padding is what filler is made of:
whitespace and symbols, words that are not word-shaped (hashes, random strings, other scripts), list markers, runs
of numbers, text that is not English (random words, word salad, code, other languages), copies of the prompt even
with words inserted, repeated n-grams, and clauses that restate others (zlib and content-word overlap). Units are
bytes; padding weighs more than content (`HARD_WEIGHT`, `SOFT_WEIGHT`) so that adding it does not raise L. Pure
functions, standard library only; the figures on tests/length_corpus.py are in docs/protocol.md.
"""

from __future__ import annotations

import re
import string
import unicodedata
import zlib
from functools import lru_cache
from typing import NamedTuple

# --- normalisation ---------------------------------------------------------------------------------------------

# Cyrillic, Greek and a few other letters that look like Latin ones, mapped to them. NFKC leaves these alone
# (they are letters of their own scripts), so "аіrсrаft" (Cyrillic а, і, с) would read as a new word.
_LOOKALIKES = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i", "ј": "j", "к": "k", "м": "m",
    "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ӏ": "l", "ү": "y", "г": "r", "п": "n", "ɡ": "g",
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "І": "I", "Ї": "I", "Ј": "J", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "Ү": "Y", "Ԁ": "D", "Ԛ": "Q",
    "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "ω": "w", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian, Latin IPA and small capitals
    "օ": "o", "ս": "u", "հ": "h", "ո": "n", "ց": "g", "ɑ": "a", "ı": "i", "ȷ": "j", "ʀ": "r", "ᴀ": "a",
    "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l",
    "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y",
    "ᴢ": "z",
}  # fmt: skip
_LOOKALIKE_TABLE = str.maketrans(_LOOKALIKES)
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


# Non-ASCII punctuation read as its ASCII kind, so "tail—a" and “wide-body” stay word-shaped.
_PUNCTUATION = {"Pd": "-", "Pi": "'", "Pf": "'", "Ps": "(", "Pe": ")", "Pc": "_", "Po": "."}


@lru_cache(maxsize=4096)
def _fold(ch: str) -> str:
    """One non-ASCII character after NFKD: "" for a mark, format character or variation selector (they are
    invisible, or decorate a letter that stays), " " for a space or separator, ASCII for punctuation
    (`_PUNCTUATION`), else the character itself."""
    cat = unicodedata.category(ch)
    if cat in ("Mn", "Me", "Cf", "Cc", "Co", "Cn"):  # variation selectors are Mn; ZWSP, ZWJ, tags are Cf
        return ""
    if cat.startswith("Z"):
        return " "
    return _PUNCTUATION.get(cat, ch)


@lru_cache(maxsize=4096)
def _hidden_bytes(ch: str) -> int:
    """UTF-8 bytes of one non-ASCII character that normalisation makes vanish: all of an invisible character, the
    extra bytes of a compatibility or look-alike form ("𝐚" for "a"). Punctuation, spaces and a letter with one
    accent ("é") cost nothing."""
    cat = unicodedata.category(ch)
    if cat[0] in "PZ" or (cat[0] == "L" and len(unicodedata.normalize("NFD", ch)) == 2):
        return 0
    compat = unicodedata.normalize("NFKC", ch).translate(_LOOKALIKE_TABLE)
    folded = "".join(_fold(c) for c in unicodedata.normalize("NFKD", compat))
    return max(len(ch.encode()) - len(folded.encode()), 0)


def _normalize(text: str) -> tuple[str, int]:
    """`normalize_think`'s text, and the UTF-8 bytes normalisation made vanish (`_hidden_bytes`)."""
    if text.isascii():
        return text.lower(), 0
    hidden = sum(_hidden_bytes(ch) for ch in _NON_ASCII.findall(text))
    text = unicodedata.normalize("NFKC", text).translate(_LOOKALIKE_TABLE)
    text = unicodedata.normalize("NFKD", text)
    return _NON_ASCII.sub(lambda m: _fold(m.group()), text).lower(), hidden


def normalize_think(text: str) -> str:
    """The canonical form the content measure reads: two texts that look the same map to the same string.

    Steps: Unicode NFKC (full-width and mathematical letters become ASCII); look-alike Cyrillic, Greek and other
    letters become Latin (`_LOOKALIKES`); NFKD, then every combining mark, format character (category Cf, e.g.
    zero-width space), variation selector (U+FE00–FE0F, U+E0100–E01EF) and unassigned or private character is
    dropped (accents go: "é" becomes "e"); separators become spaces, punctuation its ASCII kind; lowercase.

    Args:
        text: Any text, e.g. a think block.

    Returns:
        The normalised text; ASCII text only changes case.
    """
    return _normalize(text)[0]


# --- words and their kinds ----------------------------------------------------------------------------------

_STRIP = string.punctuation + " "
# A word that is one short unit repeated three times or more ("hahaha", "1111", "zzz").
_REPEATED_UNIT = re.compile(r"(.{1,4}?)\1{2,}")
# Shapes a word of language takes once stripped of outer punctuation: a letter word, possibly hyphenated or with
# an apostrophe ("wide-body", "aircraft's"); a number ("1,200", "3.5", "40%"); or a short code mixing letters and
# digits as model names do ("a320", "747-400", "f/a-18", "crj-700", "dhc-8-400").
_WORD = re.compile(r"[a-z]+(?:['-][a-z]+)*")
_NUMBER = re.compile(r"\d{1,7}(?:[.,]\d+)*%?")
_CODE = re.compile(r"(?=.*\d)[a-z0-9]+(?:[-/.][a-z0-9]+){0,3}")
# A list marker at the start of a line: "1.", "2)", "(3)", "a.", "b)" ("-", "*" have no letter: padding anyway).
_MARKER = re.compile(r"\(?(?:\d{1,3}|[a-z])[.):]")
_VOWEL = re.compile(r"[aeiouy]")
_CONSONANTS = re.compile(r"[b-df-hj-np-tv-xz]{5,}")
_DIGITS = re.compile(r"\d+")
_SENTENCE_END = re.compile(r"[.!?;:]$")
_CLAUSE_END = re.compile(r"[.!?;:,]$")
# Longest letter word and code taken as language (English words rarely pass 20 letters; model codes 10 characters).
MAX_WORD, MAX_CODE = 20, 10


def _is_wordlike(core: str) -> bool:
    """Whether a word (normalised, outer punctuation stripped) has the shape of a word of language: an English-
    shaped letter word (a vowel, no run of five consonants), a number or a short model code; hashes, random
    strings, other scripts and "hahaha" do not."""
    if not core.isascii() or _REPEATED_UNIT.fullmatch(core):
        return False
    if _WORD.fullmatch(core):
        return len(core) <= MAX_WORD and (
            len(core) <= 3 or (bool(_VOWEL.search(core)) and not _CONSONANTS.search(core))
        )
    if _NUMBER.fullmatch(core):
        return True
    return len(core) <= MAX_CODE and _CODE.fullmatch(core) is not None


class _Info(NamedTuple):
    """What the measure needs of one normalised word."""

    key: str  # stripped of outer punctuation, digit runs read as "0" ("step 3" = "step 4"); "" if no letter/digit
    wordlike: bool  # `_is_wordlike`
    number: bool  # a plain number ("12", "3.5")
    marker: bool  # shaped like a list marker ("1.", "b)")
    sentence_end: bool  # ends with . ! ? ; :
    clause_end: bool  # ends with . ! ? ; : ,
    size: int  # UTF-8 bytes


@lru_cache(maxsize=65536)
def _word(word: str) -> _Info:
    """`_Info` of one normalised word (cached: a think repeats most of its words)."""
    core = word.strip(_STRIP)
    return _Info(
        key=_DIGITS.sub("0", core),
        wordlike=bool(core) and _is_wordlike(core),
        number=bool(core) and _NUMBER.fullmatch(core) is not None,
        marker=_MARKER.fullmatch(word) is not None,
        sentence_end=_SENTENCE_END.search(word) is not None,
        clause_end=_CLAUSE_END.search(word) is not None,
        size=len(word.encode()),
    )


@lru_cache(maxsize=1024)
def _prompt_keys(prompt: str) -> list[str]:
    """Keys (`_Info.key`) of the prompt's words (cached: the G completions of a group share their prompt)."""
    return [_word(w).key for w in normalize_think(prompt).split()]


# --- is it English? ----------------------------------------------------------------------------------------

# English function words. English prose is 40-50 % function words and reasoning about an image still about 30 %;
# random words, lists, code and other languages have almost none of these (the prompts are English).
FUNCTION_WORDS = frozenset(
    """a an the this that these those its it it's their there here his her our your my them they we i you he she
    of in on at to from by with without into onto over under above below behind beside between near next
    through across along around about against after before since until during for as than like
    and or but so because if then though although while whereas nor yet also too not no only even just
    is are was were be been being am has have had do does did can could will would should may might must
    which what who whom whose where when why how whether all any each every both either neither some most
    more less much many few other another such same very rather quite""".split()
)
# A word is English when the window of LANG_WINDOW words around it, and the sentence it sits in, hold at least
# LANG_SHARE function words of at least two kinds (a salad with one sprinkled "the" fails). A sentence
# shorter than LANG_LONG words needs one function word, and one shorter than LANG_SENTENCE (a heading,
# "Conclusion: Boeing 747-400.") none: its window judges it.
LANG_WINDOW = 15
LANG_SHARE = 0.2
LANG_SENTENCE, LANG_LONG = 4, 8
# A think of fewer words is terse notes ("delta, 3 dots, upper left"), judged by the shape of its words alone: the
# window check would call it not English, and however it is written it can earn at most these few words.
TERSE_WORDS = 12

# Word pairs English does not form, which a salad of random words and function words does: a determiner followed
# by a preposition, conjunction, auxiliary, pronoun or determiner ("the of", "its is") or ending a clause ("of
# the."); a preposition followed by an auxiliary, conjunction, subject pronoun or another of the core prepositions
# ("of is", "to and", "in of"); a function word twice ("the the"). "a" is left out: it is also an option letter
# ("option a is", "the answer is a."), and so are "his", "these" and "those", which are also pronouns ("those are
# larger"). None of the pairs occurs in the honest reasoning of tests/length_corpus.py.
_DETERMINERS = frozenset("the an its their our your my every".split())
_PREPOSITIONS = frozenset(
    "of in on at to from by with without into onto through across during for than".split()
)
_AUXILIARIES = frozenset(
    "is are was were be been being am has have had do does did can could will would should may might must".split()
)
_CONJUNCTIONS = frozenset("and or but so because if then though although while whereas nor".split())
_SUBJECTS = frozenset("i he she we they".split())
_NOT_AFTER_DETERMINER = (
    _PREPOSITIONS | _AUXILIARIES | _CONJUNCTIONS | _SUBJECTS | _DETERMINERS
    | frozenset("a this that her it you them which who whom whose where when why how whether".split())
)  # fmt: skip
_NOT_AFTER_PREPOSITION = (
    _AUXILIARIES | _CONJUNCTIONS | _SUBJECTS | frozenset("of to for by at from with into onto during".split())
)
# A word is not English when the SYNTAX_WINDOW words on either side of it hold SYNTAX_ERRORS such pairs; no word
# of the think is when the whole think holds SYNTAX_ERRORS of them or more, at one per SYNTAX_RATE words or more.
SYNTAX_WINDOW = 20
SYNTAX_ERRORS = 2
SYNTAX_RATE = 60


def _syntax_errors(keys: list[str], stops: list[bool]) -> list[int]:
    """[W] 1 where word i and the next one form a pair English does not form (see `_DETERMINERS`), else 0.
    `stops[i]`: punctuation or a line end follows word i."""
    out = [0] * len(keys)
    for i, k in enumerate(keys):
        nxt = keys[i + 1] if i + 1 < len(keys) else ""
        if k in _DETERMINERS:
            out[i] = int(stops[i] or nxt in _NOT_AFTER_DETERMINER)
        elif k in _PREPOSITIONS and not stops[i]:
            out[i] = int(nxt in _NOT_AFTER_PREPOSITION)
        if k == nxt and k in FUNCTION_WORDS:
            out[i] = 1
    return out


def _english(keys: list[str], ends: list[bool], stops: list[bool]) -> list[bool]:
    """[W] whether each word sits in English text: its sentence and its window hold enough function words
    (`LANG_SHARE`, two kinds; a text shorter than the window is judged whole) and the syntax check passes
    (`_syntax_errors`). `ends[i]`: word i ends a sentence; `stops[i]`: it ends a clause."""
    n = len(keys)
    if not n:
        return []
    fw = [k in FUNCTION_WORDS for k in keys]  # [W]
    errors = _syntax_errors(keys, stops)  # [W]
    total = sum(errors)
    if total >= SYNTAX_ERRORS and total * SYNTAX_RATE >= n:
        return [False] * n

    def passes(lo: int, hi: int) -> bool:
        if hi - lo < LANG_LONG:  # "The long upper deck says -400."
            return any(fw[lo:hi])
        kinds = {keys[i] for i in range(lo, hi) if fw[i]}
        return len(kinds) >= 2 and sum(fw[lo:hi]) >= LANG_SHARE * (hi - lo)

    ok = [True] * n
    start = 0
    for end in [i + 1 for i in range(n - 1) if ends[i]] + [n]:  # sentence by sentence
        if end - start >= LANG_SENTENCE and not passes(start, end):
            ok[start:end] = [False] * (end - start)
        start = end
    # window_ok[lo] for the window [lo, lo + size): enough function words (prefix counts), of two kinds: the last
    # function word in the window has one of another kind before it, inside the window (`other`)
    size = min(LANG_WINDOW, n)
    count = [0]  # count[i]: function words before word i
    last = []  # [W] the last function word at or before word i, -1 for none
    other = [-1] * n  # for a function word: the nearest function word before it of another kind, -1 for none
    prev = -1
    for i, f in enumerate(fw):
        if f:
            if prev >= 0:
                other[i] = prev if keys[prev] != keys[i] else other[prev]
            prev = i
        count.append(count[-1] + f)
        last.append(prev)
    need = LANG_SHARE * size
    window_ok = [
        n < TERSE_WORDS
        or (
            count[lo + size] - count[lo] >= need
            and last[lo + size - 1] >= lo
            and other[last[lo + size - 1]] >= lo
        )
        for lo in range(n - size + 1)
    ]
    # each word reads the window centred on it (clamped at the ends) and the errors within SYNTAX_WINDOW
    half = size // 2
    centred = [window_ok[0]] * half + window_ok + [window_ok[-1]] * (size - 1 - half)  # [W]
    err = [0] * (SYNTAX_WINDOW + 1)  # err[j + SYNTAX_WINDOW]: errors before word j, clamped at both ends
    for e in errors:
        err.append(err[-1] + e)
    err += [err[-1]] * SYNTAX_WINDOW
    return [
        o and c and err[i + 2 * SYNTAX_WINDOW + 1] - err[i] < SYNTAX_ERRORS
        for i, (o, c) in enumerate(zip(ok, centred, strict=True))
    ]


# --- copies and repeats ----------------------------------------------------------------------------------------

# Word n-gram length of the repeat check: a repeat of 4 words, at least 2 of them not function words, earns
# nothing; shorter repeats ("it is a", "the tail") and function-word phrases ("to the left of") are ordinary.
NGRAM = 4
# The prompt-copy check works on content words (not function words): a chain of at least COPY_RUN of them that
# follow the prompt's content words in order, with at most COPY_SKIP content words inserted between two of them
# in the think and COPY_SKIP of the prompt's left out, is a copy, and so is every word between its ends. Six, so
# an honest conclusion in the question's words ("the red chair is to the left of the wooden table") is not one.
COPY_RUN = 6
COPY_SKIP = 2


def _copied(keys: list[str], prompt_keys: list[str]) -> list[bool]:
    """[W] whether each think word belongs to a copy of the prompt (`COPY_RUN`, `COPY_SKIP`), so a copy with a
    filler word inserted every few words, or some words left out, is still a copy."""
    out = [False] * len(keys)
    where: dict[str, list[int]] = {}
    for p, k in enumerate(k for k in prompt_keys if k and k not in FUNCTION_WORDS):
        where.setdefault(k, []).append(p)
    if not where:
        return out
    # chains[c]: for the c-th think content word, prompt position -> (chain length, think index of its start)
    chains: list[dict[int, tuple[int, int]]] = []
    for i, k in enumerate(keys):
        if not k or k in FUNCTION_WORDS:
            continue
        here: dict[int, tuple[int, int]] = {}
        for p in where.get(k, ()):
            best = (1, i)
            for prev in chains[-1 - COPY_SKIP :]:
                for dp in range(1, COPY_SKIP + 2):
                    got = prev.get(p - dp)
                    if got is not None and got[0] >= best[0]:
                        best = (got[0] + 1, got[1])
            here[p] = best
            if best[0] >= COPY_RUN:
                out[best[1] : i + 1] = [True] * (i + 1 - best[1])
        chains.append(here)
    return out


def _repeated(keys: list[str]) -> list[bool]:
    """[W] every word of an `NGRAM`-word window that already started earlier (and has at least two words that
    are not function words), so a repeated phrase keeps only its first occurrence."""
    n = len(keys)
    out = [False] * n
    content = [0]
    for k in keys:
        content.append(content[-1] + (k not in FUNCTION_WORDS))
    first: dict[tuple[str, ...], int] = {}
    for s in range(n - NGRAM + 1):
        if content[s + NGRAM] - content[s] < 2:  # "to the left of" recurs in honest reasoning
            continue
        if first.setdefault(tuple(keys[s : s + NGRAM]), s) < s:
            out[s : s + NGRAM] = [True] * NGRAM
    return out


# The novelty check works clause by clause (a clause ends at . ! ? ; : , or a line end, and has CLAUSE_MIN to
# CLAUSE_MAX words) and takes the smaller of two weights:
# - compression: zlib compresses each clause after all the clauses before it, and again after all the clauses after
#   it (the think read backwards); the smaller share of the clause's bytes it could not find maps linearly to a
#   weight, 0 at NOVEL_LOW and 1 at NOVEL_HIGH. New English costs about a byte per character in a small deflate
#   block. Reading both ways judges every copy of a long run of restatements, the first too, against the others: on
#   tests/length_corpus.py such runs score 0.06-0.23 and honest clauses 0.29-0.9, mostly above 0.45.
# - overlap: a clause with at least OVERLAP_WORDS content words (not function words or `_HEDGES`), most of them in
#   one earlier clause, restates it ("The jet clearly has four engines below its wings." after "The aircraft has
#   four engines under its wings."), which a few restatements do not give zlib the context to see. The share of its
#   content words found in the earlier clause that shares most maps to a weight, 1 up to OVERLAP_LOW and 0 from
#   OVERLAP_HIGH. Restatements of the corpus share three quarters or more (weight 0.2 or less); honest clauses
#   share at most half, but for an honest spatial comparison that reuses its nouns ("the table is to the right of
#   the sofa" after "on the right side there is the wooden table").
CLAUSE_MIN, CLAUSE_MAX = 4, 16
NOVEL_LOW, NOVEL_HIGH = 0.2, 0.4
OVERLAP_WORDS = 4
OVERLAP_LOW, OVERLAP_HIGH = 0.55, 0.8
# Adverbs that restate a claim more firmly without adding to it.
_HEDGES = frozenset(
    """clearly obviously visibly definitely certainly indeed actually really basically simply probably likely
    maybe perhaps surely apparently evidently""".split()
)
_FLUSH_BYTES = 5  # what Z_SYNC_FLUSH adds to a clause: an empty stored block


def _costs(clauses: list[bytes]) -> list[float]:
    """[N] the share of each clause's bytes zlib cannot find in the clauses before it."""
    comp = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
    return [
        (len(comp.compress(c)) + len(comp.flush(zlib.Z_SYNC_FLUSH)) - _FLUSH_BYTES) / len(c) for c in clauses
    ]


def _overlaps(clauses: list[list[str]]) -> list[float]:
    """[N] per clause of at least `OVERLAP_WORDS` content words, the largest share of them that one earlier clause
    also holds; 0 for shorter clauses."""
    where: dict[str, list[int]] = {}  # content word -> earlier clauses holding it
    out = []
    for c, clause in enumerate(clauses):
        words = {k for k in clause if k and k not in FUNCTION_WORDS and k not in _HEDGES}
        shared: dict[int, int] = {}
        for k in words:
            for d in where.get(k, ()):
                shared[d] = shared.get(d, 0) + 1
            where.setdefault(k, []).append(c)
        out.append(max(shared.values(), default=0) / len(words) if len(words) >= OVERLAP_WORDS else 0.0)
    return out


def _ramp(x: float, zero: float, one: float) -> float:
    """x mapped linearly from 0 at `zero` to 1 at `one`, clipped to [0, 1]."""
    return min(max((x - zero) / (one - zero), 0.0), 1.0)


def _novelty(keys: list[str], stops: list[bool]) -> list[float]:
    """[W] each word's weight in [0, 1]: how new its clause is to the rest of the think (compression and overlap,
    see `CLAUSE_MIN`). `stops[i]`: word i ends a clause."""
    clauses: list[list[str]] = []
    start = 0
    for i in range(len(keys)):
        size = i + 1 - start
        if size >= CLAUSE_MAX or (stops[i] and size >= CLAUSE_MIN) or i == len(keys) - 1:
            clauses.append(keys[start : i + 1])
            start = i + 1
    raw = [(" " + " ".join(clause)).encode() for clause in clauses]
    forward, backward = _costs(raw), _costs(raw[::-1])[::-1]
    out: list[float] = []
    for clause, f, b, shared in zip(clauses, forward, backward, _overlaps(clauses), strict=True):
        weight = min(_ramp(min(f, b), NOVEL_LOW, NOVEL_HIGH), _ramp(shared, OVERLAP_HIGH, OVERLAP_LOW))
        out += [weight] * len(clause)
    return out


# --- the measure ---------------------------------------------------------------------------------------------

# Weights of a byte of padding against a byte of content. L shares the real token count out in proportion to the
# units, so padding must weigh at least its tokens' share or adding it would raise L. Padding that is not language
# (HARD_WEIGHT): a byte-level BPE spends at most one token on a byte, and English content costs a large vocabulary
# (Qwen2's) about 4.5 bytes per token, so 5. Padding that is language (SOFT_WEIGHT: repeats, copies, restatements):
# its token density is near the content's, but numbers are split digit by digit and short words cost more per byte,
# so 2. With these, appending any filler of tests/length_corpus.py to any honest sample never raises L, counted by
# the tiny tokenizer or by pieces.
HARD_WEIGHT = 5.0
SOFT_WEIGHT = 2.0


def think_content_units(think: str, prompt: str = "") -> tuple[float, float]:
    """Split a think block into content units C and padding units P: bytes of the normalised text, padding
    weighted (`HARD_WEIGHT`, `SOFT_WEIGHT`).

    The think is normalised (`normalize_think`) and cut into words (runs of non-whitespace). What earns nothing:

    - not language, counted at `HARD_WEIGHT` per byte: whitespace beyond one separator between words (one space or
      line break at each end, the template's, is free); characters
      normalisation dropped (invisible ones); words with no letter or digit; words that are not word-shaped
      (`_is_wordlike`: hashes, random strings, other scripts, "hahaha"); list markers at a line start; the
      third and later numbers of a run ("1 2 3 4"); words whose sentence or window is not English (`_english`:
      random words, lists of words, code, other languages, word salad);
    - language that adds nothing, counted at `SOFT_WEIGHT` per byte: copies of the prompt, also with words
      inserted (`_copied`); repeated `NGRAM`-grams (`_repeated`; digit runs compare equal); and the share of each
      clause that zlib finds in the rest of the think (`_novelty`: restatements, near-copies).

    Args:
        think: The text inside `<think>…</think>`.
        prompt: The user-turn text of the prompt ("" when unknown: nothing counts as copied).

    Returns:
        (content units C, padding units P), floats >= 0; both 0 for an empty think.
    """
    text, hidden = _normalize(think)
    text = text[1:] if text[:1].isspace() else text  # the template's own space or line break after <think>
    text = text[:-1] if text[-1:].isspace() else text  # and before </think>
    padding = HARD_WEIGHT * hidden  # invisible characters, compatibility forms
    lines = [line.split() for line in text.splitlines()]
    words = [w for parts in lines for w in parts]
    n = len(words)
    padding += HARD_WEIGHT * max(len(text) - sum(map(len, words)) - max(n - 1, 0), 0)  # one separator is free
    if not n:
        return 0.0, padding
    infos = [_word(w) for w in words]  # [W]
    stops = [info.clause_end for info in infos]  # [W] punctuation or a line end follows the word
    hard = [not info.wordlike for info in infos]  # [W] not language
    first = 0
    for parts in lines:
        if parts:
            hard[first] = hard[first] or infos[first].marker  # a list marker opening a line
            first += len(parts)
            stops[first - 1] = True
    keys = [info.key for info in infos]  # [W]
    run = 0
    for i, info in enumerate(infos):  # a run of numbers: the first two may be content, the rest are counting
        run = run + 1 if info.number else 0
        if run >= 3:
            hard[i] = hard[i - 1] = hard[i - 2] = True
    lang = [i for i in range(n) if keys[i]]
    english = _english(
        [keys[i] for i in lang], [infos[i].sentence_end for i in lang], [stops[i] for i in lang]
    )
    for i, ok in zip(lang, english, strict=True):
        if not ok:
            hard[i] = True
    padding += HARD_WEIGHT * sum(info.size for info, h in zip(infos, hard, strict=True) if h)
    kept = [i for i in range(n) if not hard[i]]  # language: the rest of the checks read only these words
    if not kept:
        return 0.0, padding
    kept_keys = [keys[i] for i in kept]
    copied = _copied(kept_keys, _prompt_keys(prompt))
    repeated = _repeated(kept_keys)
    weights = _novelty(kept_keys, [stops[i] for i in kept])
    content = 0.0
    for i, c, r, weight in zip(kept, copied, repeated, weights, strict=True):
        size = infos[i].size
        if c or r:
            weight = 0.0
        content += weight * size
        padding += SOFT_WEIGHT * (1.0 - weight) * size
    return content, padding


def content_think_tokens(think_tokens: int, think: str, prompt: str = "") -> float:
    """The think tokens that carry content: `think_tokens * C / (C + P)` from `think_content_units`.

    The row's real token count is shared out in proportion to the units, so a think free of padding keeps every
    token (C / (C + P) = 1) and one that is all padding keeps none. Padding weighs at least its tokens' share
    (`HARD_WEIGHT`, `SOFT_WEIGHT`), so adding it to a think does not raise the result (checked on
    tests/length_corpus.py; not a proof: the measure never sees the tokens).

    Args:
        think_tokens: Tokens inside `<think>…</think>`, as the tokenizer counted them.
        think: The text inside `<think>…</think>`.
        prompt: The user-turn prompt text, for the copy check ("" to skip it).

    Returns:
        A float in [0, think_tokens].
    """
    units, padding = think_content_units(think, prompt)
    return think_tokens * units / (units + padding) if units > 0 else 0.0
