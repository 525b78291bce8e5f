"""What every task is made of: `Sample` (one row), `Task` (named splits plus its prompt rules) and the prompts.

The prompt templates are Visual-RFT's (arXiv 2503.01785): a think template that asks for
`<think> ... </think> <answer> ... </answer>`, an answer-only template, and their multiple-choice forms. A task owns
its prompt, its splits, what counts as a correct answer (`accepted_answers`) and what else an answer could name
(`rival_answers`), which the answer matcher `rft.rewards.is_correct` needs to tell "737-800" from "737-800 or
737-900". `DataError` is the one error every loader raises for bad or missing data; its message names the file or
field and the fix.
"""

from __future__ import annotations

import dataclasses
import random
import string
from collections.abc import Iterable
from dataclasses import dataclass, field

from PIL import Image

from rft.rewards import normalize_answer

THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n<think> ... </think> <answer>{slot}</answer>\n"
    "Please strictly follow the format."
)
NOTHINK_INSTRUCTION = (
    "Output the final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n<answer>{slot}</answer>\nPlease strictly follow the format."
)
MC_THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
)
MC_NOTHINK_INSTRUCTION = "Output the final answer (option) in <answer> </answer> tags."


@dataclass(frozen=True)
class Sample:
    """One task row.

    Attributes:
        uid: Stable id, unique within the task.
        images: The image(s) shown before the question: PIL images, or `rft.data.images.LazyImage` objects that
            decode on `.convert(mode)` (real datasets, too large to hold decoded).
        question: The task's question text, without the output-format instruction.
        answer: Canonical ground truth: a class name, or the text of the correct option.
        options: Multiple-choice options in display order (already shuffled); empty for open answers.
        label: Class label for k-shot budgets; empty for tasks without classes.
        qtype: Question type, for per-type accuracy.
        rationale: A short reasoning trace; when set, SFT imitates `<think> rationale </think> <answer>…`.
            Empty for every target task (docs/protocol.md: no traces exist); only the tiny_base corpus
            (rft.testbed) has them.
        aliases: Other written forms of `answer` that also count as correct, raw text (FGVC-Aircraft: the
            variant with its manufacturer and/or family, `rft.data.fgvc.qualified_names`). SFT still trains on
            `answer`.
        rivals: Classification only: the normalised names of every other class of the task, with their aliases,
            which `rival_answers` hands to the matcher. `Task` fills it (`with_rivals`) with one set per class,
            shared by that class's rows, so it costs nothing per row. Multiple choice leaves it empty: the other
            options are in `options`.
    """

    uid: str
    images: tuple[Image.Image, ...]
    question: str
    answer: str
    options: tuple[str, ...] = ()
    label: str = ""
    qtype: str = ""
    rationale: str = ""
    aliases: tuple[str, ...] = ()
    # derived from the task, too long to print, and not part of what the row is
    rivals: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


def option_letter(i: int) -> str:
    return string.ascii_uppercase[i]


def accepted_answers(sample: Sample) -> frozenset[str]:
    """The normalised names of a sample's ground truth, which `rft.rewards.is_correct` matches against.

    The answer text and its `aliases` (FGVC: `Boeing 707-320` for `707-320`); for multiple choice also the
    option's letter. A multiple-choice set therefore holds exactly one letter and one option text, which is what
    lets `is_correct` accept "(B) left" (letter and text agree) and reject "(A) left".
    """
    accepted = {normalize_answer(sample.answer), *(normalize_answer(a) for a in sample.aliases)}
    if sample.options:
        accepted.add(normalize_answer(option_letter(sample.options.index(sample.answer))))
    accepted.discard("")
    return frozenset(accepted)


def rival_answers(sample: Sample) -> frozenset[str] | None:
    """The normalised names of every other answer the question allows, which `rft.rewards.is_correct` reads as
    rivals: an answer that names one of them as well ("737-800 or 737-900", "(A) left") names neither.

    Multiple choice: the other options' texts and letters. Classification: `sample.rivals`, the other classes
    with their aliases (filled in by `Task`). None when a classification row carries none (a row made by hand, or
    a task of one class): the matcher then falls back to its strict rule.
    """
    if sample.options:
        right = sample.options.index(sample.answer)
        rivals = {
            normalize_answer(name)
            for j, text in enumerate(sample.options)
            if j != right
            for name in (text, option_letter(j))
        }
        rivals.discard("")
        return frozenset(rivals)
    return sample.rivals or None


def with_rivals(splits: dict[str, list[Sample]], classes: Iterable[str]) -> dict[str, list[Sample]]:
    """The classification rows of `splits` with `Sample.rivals` filled in: for a row of class c, the normalised
    names of every other class (`classes` and every label in `splits`) with the aliases its rows carry.

    One frozenset per class, shared by reference by its rows. A row that already has rivals keeps them.
    """
    names: dict[str, set[str]] = {c: {normalize_answer(c)} for c in classes}
    for rows in splits.values():
        for s in rows:
            names.setdefault(s.answer, {normalize_answer(s.answer)}).update(
                normalize_answer(a) for a in s.aliases
            )
    every = set().union(*names.values()) - {""}
    rivals = {c: frozenset(every - own) for c, own in names.items()}
    return {
        split: [s if s.rivals else dataclasses.replace(s, rivals=rivals[s.answer]) for s in rows]
        for split, rows in splits.items()
    }


def format_options(options: tuple[str, ...]) -> str:
    return " ".join(f"({option_letter(i)}) {o}" for i, o in enumerate(options))


@dataclass
class Task:
    """A task: named splits of Samples plus the prompt rules.

    Attributes:
        name: Task name (the `task=` option).
        kind: "classification" (k-shot budgets, open answers) or "multiple_choice".
        splits: Split name -> samples.
        object_noun: For classification prompts, what the image contains ("an aircraft").
        answer_slot: For classification prompts, the placeholder in the format example ("species name").
        classes: Class names of a classification task.

    A classification task's rows get their `Sample.rivals` when the task is made (`with_rivals`), so every
    task's rows reach the matcher with the other answers it must tell apart.
    """

    name: str
    kind: str
    splits: dict[str, list[Sample]]
    object_noun: str = ""
    answer_slot: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind == "classification":
            self.splits = with_rivals(self.splits, self.classes)

    def prompt(self, sample: Sample, think: bool) -> str:
        """The user-turn text for a sample (the image comes before it in the chat message)."""
        if self.kind == "classification":
            instruction = (THINK_INSTRUCTION if think else NOTHINK_INSTRUCTION).format(slot=self.answer_slot)
            return (
                f"This is an image containing {self.object_noun}. Please identify the model of the "
                f"{self.object_noun.split()[-1]} based on the image.\n{instruction}"
            )
        instruction = MC_THINK_INSTRUCTION if think else MC_NOTHINK_INSTRUCTION
        return f"{sample.question} Options: {format_options(sample.options)}  {instruction}"

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise DataError(
                f"task {self.name!r} has no split {name!r}; it has {sorted(self.splits)}: pass eval.split= (or "
                "task.train_split=) one of them"
            )
        return self.splits[name]


class DataError(ValueError):
    """Bad or missing data; the message names the file or field and how to fix it."""


def option_problem(options: tuple[str, ...] | list[str], shuffled: bool) -> str | None:
    """Why a multiple-choice question's options would let a wrong answer score as correct, or None if they are fine.

    `rft.rewards.is_correct` accepts the correct option's normalised text or its letter, so the options must be at
    least 2, distinct once normalised, and no option's text may be the letter of another option (options
    `["B", "A"]`: answering "B" would match option A's letter). With `shuffled`, the letter an option lands on
    depends on the seed, so no option's text may be an option letter at all.
    """
    if len(options) < 2:
        return f"it has {len(options)} option(s) {list(options)}; a multiple-choice question needs at least 2"
    norms = [normalize_answer(o) for o in options]
    if "" in norms:
        return f"option {options[norms.index('')]!r} is empty once normalised; give it some text"
    seen: dict[str, str] = {}
    for o, n in zip(options, norms, strict=True):
        if n in seen:
            return (
                f"options {seen[n]!r} and {o!r} are the same answer once normalised ({n!r}), so a wrong answer "
                "would score as correct; make them distinct"
            )
        seen[n] = o
    letters = {normalize_answer(option_letter(j)): j for j in range(len(options))}
    for i, (o, n) in enumerate(zip(options, norms, strict=True)):
        if n in letters and (shuffled or letters[n] != i):
            where = "an option letter (options are shuffled)" if shuffled else "the letter of another option"
            return (
                f"option {o!r} is {where}, so answering with it would match another option's letter; write "
                f"the option out (e.g. 'option {o}')"
            )
    return None


def shuffled_options(options: list[str], seed: int, uid: str) -> tuple[str, ...]:
    """The options in an order fixed by (run seed, uid): reproducible per question, different across seeds."""
    order = list(options)
    random.Random(f"options-{seed}-{uid}").shuffle(order)
    return tuple(order)
