"""Fixture corpus for the normalised length reward: honest reasoning and filler, with real token counts.

`HONEST`: think texts written the way a model reasons about an FGVC-Aircraft or SAT prompt (observations,
comparisons, elimination, a conclusion), 52 to 657 tokens. `FILLER`: think texts that try to earn length without
reasoning, one per trick, mostly longer than several honest samples; one may start with an honest part
(`Sample.honest`, and must earn no more than that part alone) or restate one statement (`Sample.own`). `OPEN`:
filler the measure does not catch. `count_tokens` counts with the suite's byte-level BPE tokenizer
(`rft/assets/tiny_base/tokenizer.json`, 473 tokens, about 2.5 per English word); `count_pieces` counts one token
per `_PIECE`, close to a Qwen2 tokenizer's count for English. tests/test_thinking.py checks both counts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TOKENIZER = Path(__file__).resolve().parents[1] / "rft" / "assets" / "tiny_base" / "tokenizer.json"

FGVC_PROMPT = (
    "This is an image containing an aircraft. Please identify the model of the aircraft based on the image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n<think> ... </think> <answer>model</answer>\n"
    "Please strictly follow the format."
)
SAT_PROMPT = (
    "Considering the relative positions of the two objects in the image, is the red chair to the left or to the "
    "right of the wooden table? Options: (A) left (B) right  Output the thinking process in <think> </think> "
    "and final answer (option) in <answer> </answer> tags."
)
PROMPTS = {"fgvc": FGVC_PROMPT, "sat": SAT_PROMPT}


@dataclass(frozen=True)
class Sample:
    """One think text: the task whose prompt it answers, the text inside <think>…</think>, and for a filler
    the honest text it starts with ("" for none) and, when it restates one statement, that statement (`own`,
    content the first time it is said)."""

    task: str
    think: str
    honest: str = ""
    own: str = ""

    @property
    def prompt(self) -> str:
        return PROMPTS[self.task]


# --- honest reasoning ------------------------------------------------------------------------------------------

HONEST: dict[str, Sample] = {
    "fgvc_a320_tiny": Sample(
        "fgvc", "Two engines under the wings and a rounded Airbus nose, so it is an A320."
    ),
    "fgvc_747_short": Sample(
        "fgvc", "Four engines under the wings and a hump over the cockpit, so this is a Boeing 747-400."
    ),
    "sat_left_short": Sample(
        "sat",
        "The chair sits near the left edge of the photo and the table is in the middle, so the chair is on "
        "the left. That is option A.",
    ),
    "sat_above": Sample(
        "sat",
        "The lamp hangs from the ceiling and the table stands on the floor below it, so the lamp is above the "
        "table. The answer is A.",
    ),
    "fgvc_atr": Sample(
        "fgvc",
        "The aircraft has two propellers on a high wing, and the main gear sits in pods on the lower fuselage. "
        "That combination is typical of the ATR family rather than the Dash 8, whose gear folds into the "
        "engine nacelles. The fuselage looks long, so this is the ATR 72 and not the ATR 42.",
    ),
    "fgvc_bullets": Sample(
        "fgvc",
        "Observations:\n"
        "- Engines: four, mounted under the wings.\n"
        "- Fuselage: wide body with a hump over the cockpit.\n"
        "- Upper deck: long, extending well behind the wing root.\n"
        "- Winglets: present, canted outward.\n"
        "Comparison: the 747-200 has a short upper deck and no winglets; the 747-8 has raked wingtips instead "
        "of winglets.\nConclusion: Boeing 747-400.",
    ),
    "fgvc_steps": Sample(
        "fgvc",
        "Step 1: The aircraft has four engines mounted under swept wings, so it is a large airliner.\n"
        "Step 2: There is a hump over the cockpit, which only the Boeing 747 has among four-engine jets.\n"
        "Step 3: The upper deck is long and the wingtips carry winglets, which rules out the 747-100 and -200.\n"
        "Step 4: Therefore the model is the Boeing 747-400.",
    ),
    "fgvc_a320": Sample(
        "fgvc",
        "The aircraft is a narrow-body jet with two engines under the wings and a single aisle of windows. "
        "The nose is rounded and the cockpit windows have the typical Airbus shape, so it is not a Boeing 737. "
        "The fuselage is neither short like an A319 nor stretched like an A321, which leaves the A320.",
    ),
    "sat_right_depth": Sample(
        "sat",
        "I need the horizontal positions from the camera's point of view. The table is close to the left wall, "
        "while the red chair stands beside the window on the right side of the room. Even though the chair is "
        "further back, depth does not change left and right here. So the chair is to the right of the table, "
        "which is option B.",
    ),
    "fgvc_crj": Sample(
        "fgvc",
        "Looking at the picture, the jet is small, with two engines mounted on the rear fuselage and a T-tail. "
        "That rules out the Embraer E-Jets, whose engines hang under the wings. Rear engines and a T-tail fit "
        "the Bombardier CRJ family or the Fokker 100. The fuselage is very slender and long for its wing, and "
        "there is no split rudder like on the Fokker, so it should be a stretched CRJ. Counting the cabin "
        "windows gives roughly twenty on this side, which suggests the CRJ-700 rather than the shorter CRJ-200.",
    ),
    "sat_two_step": Sample(
        "sat",
        "First I find both objects. The red chair is in the lower right part of the image, partly hidden by a "
        "plant. The wooden table is on the left, near a lamp. The question asks about left and right from the "
        "viewer, not from the chair's own orientation, so I compare their x positions in the image: the chair's "
        "center is clearly to the right of the table's center. Option A would need the chair on the left, "
        "which it is not. The answer is B.",
    ),
    "fgvc_dash8": Sample(
        "fgvc",
        "The aircraft has two turboprop engines on a high wing, which already narrows it to regional "
        "turboprops such as the ATR 72, the Dash 8 and the Saab 340. The engine nacelles are long and extend "
        "behind the wing, and the landing gear retracts into them; the ATR instead folds its gear into fairings "
        "on the fuselage, so this is a Dash 8. The Saab 340 has a low wing, which rules it out as well. Within "
        "the Dash 8 family, the fuselage here is long, with many windows and a small door behind the wing, and "
        "the propellers have six blades. Those features belong to the Q400, the stretched DHC-8-400, and not to "
        "the shorter -100 or -300.",
    ),
    "sat_counting": Sample(
        "sat",
        "The question is whether the chair is left or right of the table, so I should ignore the other "
        "furniture. There are two chairs in the room: a black office chair next to the desk and a red chair "
        "with wooden legs. The red one is the one that matters. It stands in front of the bookshelf, on the "
        "left half of the picture. The wooden table is a round dining table near the right window. Because the "
        "image is not mirrored and the camera faces the room, the left of the image is the left of the scene. "
        "Therefore the red chair is to the left of the wooden table, and the correct option is A.",
    ),
    "fgvc_737_long": Sample(
        "fgvc",
        "Let me go through what is visible. The plane is a twin-engine narrow-body airliner parked at a gate. "
        "The engines sit under the wings and their nacelles are flattened at the bottom, which is typical of "
        "the CFM56 on the Boeing 737 Classic and Next Generation. The nose has the pointed Boeing shape with "
        "the eyebrow-less cockpit windows, so it is not an Airbus A320 family jet, whose nose is rounder. "
        "The tail has a small dorsal fin extending forward along the fuselage, another 737 trait. Now for the "
        "variant: the wingtips carry large blended winglets, which appear on the Next Generation series and "
        "not on the 737-300 or -400. The fuselage looks long, with an overwing exit pair and a long section "
        "behind the wing, so it is neither the short 737-600 nor the 737-700. Between the 737-800 and the "
        "737-900, the -900 has a slightly longer body, but the door layout here, with one overwing exit on "
        "each side, is more common on the -800. I will answer 737-800.",
    ),
    "sat_long": Sample(
        "sat",
        "To answer this I have to locate two objects and compare their horizontal positions. Scanning the "
        "image from left to right: near the left border there is a tall lamp and a small shelf; in the middle "
        "there is a grey sofa with two cushions; on the right side there is the wooden table with a vase of "
        "flowers on it. I do not see a red chair in the middle or on the right. Looking again, there is a red "
        "chair partly behind the lamp, at the far left. Its legs are visible under the shelf, and the backrest "
        "is red, so this must be the red chair mentioned in the question. The wooden table is clearly to the "
        "right of the sofa, and the sofa is to the right of the chair. So, from the viewer's perspective, the "
        "chair is on the left and the table is on the right. One possible confusion is that the question "
        "might mean the chair's own left, but nothing in the prompt says so, and the options are about the "
        "image. The answer is A, left.",
    ),
}

# --- filler: text that tries to earn length without reasoning ---------------------------------------------------

# Ordinary English content words (nouns, verbs, adjectives), for random-word filler; function words left out.
DICTIONARY = (
    "aircraft engine wing tail window cockpit runway airport pilot cabin fuselage propeller landing gear "
    "cloud mountain river forest ocean desert island valley bridge tower castle garden kitchen bottle table "
    "chair lamp carpet pencil paper letter camera picture screen keyboard button signal battery circuit "
    "orange banana apple cherry grape lemon melon tomato potato carrot onion pepper garlic salad butter "
    "running jumping flying reading writing singing painting building driving sleeping thinking walking "
    "quickly slowly brightly quietly happily carefully gently loudly rarely often always early later "
    "blue green yellow purple silver golden heavy light narrow broad smooth rough ancient modern frozen "
    "elephant tiger rabbit falcon dolphin spider turtle monkey zebra giraffe penguin eagle salmon horse "
    "winter summer autumn spring morning evening midnight weekend holiday festival concert theatre museum "
    "doctor teacher farmer sailor painter writer dancer soldier student driver baker lawyer engineer "
    "triangle circle square pattern shadow mirror crystal marble velvet cotton leather copper iron steel "
    "analyze compute measure observe compare estimate identify classify determine evaluate inspect verify"
).split()
# English function words a salad may sprinkle in (the language check looks for these).
FUNCTION = "the a of and to in is it that with for on as by this at from or which so".split()


def _rng(seed: int) -> random.Random:
    return random.Random(seed)


def _random_words(n: int, seed: int) -> str:
    rng = _rng(seed)
    return " ".join(rng.choice(DICTIONARY) for _ in range(n))


def _salad(n: int, seed: int) -> str:
    """Random dictionary words with function words sprinkled in at English's rate, punctuated into sentences."""
    rng = _rng(seed)
    out = []
    for i in range(n):
        out.append(rng.choice(FUNCTION) if rng.random() < 0.4 else rng.choice(DICTIONARY))
        if i % 11 == 10:
            out[-1] += "."
    return " ".join(out)


def _shuffled(text: str, seed: int) -> str:
    """The words of `text`, shuffled: the vocabulary and function-word rate of honest reasoning, no syntax."""
    words = text.split()
    _rng(seed).shuffle(words)
    return " ".join(words)


SENTENCE = "The aircraft has four engines under its swept wings and a hump over the cockpit."
# Invisible characters an attacker can scatter: variation selectors, zero-width space / joiner, word joiner.
INVISIBLE = ["\ufe0f", "\ufe0e", "\ufe00", "\U000e0100", "\u200b", "\u200d", "\u2060", "\u00ad"]
# Latin letters and a Cyrillic or Greek look-alike of each.
LOOKALIKE = {
    "a": "а",
    "e": "е",
    "o": "ο",
    "p": "р",
    "c": "с",
    "x": "х",
    "i": "і",
    "h": "һ",
    "T": "Т",
    "y": "у",
}


def _invisible_variants(n: int, seed: int) -> str:
    """`SENTENCE` n times, each copy with invisible characters inserted at different places."""
    rng = _rng(seed)
    copies = []
    for _ in range(n):
        chars = list(SENTENCE)
        for _ in range(3):
            chars.insert(rng.randrange(len(chars)), rng.choice(INVISIBLE))
        copies.append("".join(chars))
    return " ".join(copies)


def _lookalike_variants(n: int, seed: int) -> str:
    """`SENTENCE` n times, each copy with a different random subset of letters swapped for look-alikes."""
    rng = _rng(seed)
    copies = []
    for _ in range(n):
        copies.append("".join(LOOKALIKE[c] if c in LOOKALIKE and rng.random() < 0.4 else c for c in SENTENCE))
    return " ".join(copies)


EIGHT_LANGUAGES = " ".join(
    [
        SENTENCE,
        "L'avion a quatre moteurs sous ses ailes en flèche et une bosse au-dessus du cockpit.",
        "El avión tiene cuatro motores bajo sus alas en flecha y una joroba sobre la cabina.",
        "Das Flugzeug hat vier Triebwerke unter seinen gepfeilten Flügeln und einen Buckel über dem Cockpit.",
        "L'aereo ha quattro motori sotto le ali a freccia e una gobba sopra la cabina di pilotaggio.",
        "O avião tem quatro motores sob as asas enflechadas e uma corcova sobre a cabine.",
        "Het vliegtuig heeft vier motoren onder de gepijlde vleugels en een bult boven de cockpit.",
        "У самолёта четыре двигателя под стреловидными крыльями и горб над кабиной.",
        "这架飞机的后掠翼下有四台发动机，驾驶舱上方有一个隆起。",
        "この航空機は後退翼の下に四基のエンジンがあり、操縦席の上にこぶがある。",
    ]
)

PARAPHRASES = [
    "{the} {plane} has four engines under its wings.",
    "{the} {plane} {clearly} has four engines mounted under the wings.",
    "I can see that {the} {plane} has four engines under its wings.",
    "Four engines are under the wings of {the} {plane}.",
    "{the} {plane} {clearly} shows four engines below its wings.",
]


def _restated(n: int, seed: int) -> str:
    """One observation restated n times with small variations of wording."""
    rng = _rng(seed)
    out = []
    for _ in range(n):
        s = rng.choice(PARAPHRASES).format(
            the=rng.choice(["the", "this", "that"]),
            plane=rng.choice(["aircraft", "plane", "airliner", "jet"]),
            clearly=rng.choice(["clearly", "visibly", "obviously", "definitely"]),
        )
        out.append(s[0].upper() + s[1:])
    return " ".join(out)


def _prompt_with_filler(prompt: str, every: int, words: list[str], copies: int) -> str:
    """The prompt copied `copies` times with a filler word inserted after every `every` words."""
    out = []
    for c in range(copies):
        for i, w in enumerate(prompt.split()):
            out.append(w)
            if i % every == every - 1:
                out.append(words[(i + c) % len(words)])
    return " ".join(out)


LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex "
    "ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
    "fugiat nulla pariatur. Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt "
    "mollit anim id est laborum. Curabitur pretium tincidunt lacus, nulla gravida orci a odio, nullam varius "
    "turpis et commodo pharetra, est eros bibendum elit, nec luctus magna felis sollicitudin mauris."
)
SYNONYMS = (
    "big, large, huge, enormous, giant, vast, immense, massive, colossal, gigantic, mighty, towering, bulky, "
    "hefty, sizable, substantial, great, grand, monumental, tremendous, small, little, tiny, minute, miniature, "
    "compact, petite, slight, modest, fast, quick, rapid, swift, speedy, brisk, hasty, fleet, nimble, agile, "
    "plane, aircraft, airplane, jet, airliner, craft, flyer, glider, shuttle, transport, carrier, freighter, "
    "engine, motor, turbine, powerplant, jet engine, turbofan, turboprop, propulsor, thruster, generator"
)
CODE = """def identify(image):
    features = extract_features(image)
    scores = {name: model.score(features, name) for name in CANDIDATES}
    best = max(scores, key=scores.get)
    for name, score in sorted(scores.items(), key=lambda kv: -kv[1]):
        print(f"{name}: {score:.3f}")
    return best

class Classifier(nn.Module):
    def __init__(self, dim=512, classes=100):
        super().__init__()
        self.proj = nn.Linear(dim, classes)
    def forward(self, x):
        return self.proj(x).softmax(-1)"""


def _json_blob(n: int) -> str:
    rows = [
        {"id": i, "model": f"{m}-{100 * (i % 9 + 1)}", "engines": 2 + i % 3, "wing": ["low", "high"][i % 2]}
        for i, m in zip(range(n), ["737", "A320", "CRJ", "E190", "ATR72", "Q400", "MD80"] * n, strict=False)
    ]
    return json.dumps({"candidates": rows, "confidence": 0.87, "source": "image"}, indent=1)


def _hashes(n: int) -> str:
    return " ".join(hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(n))


def _random_strings(n: int, seed: int) -> str:
    rng = _rng(seed)
    return " ".join(base64.b64encode(rng.randbytes(9)).decode() for _ in range(n))


def _arithmetic(n: int) -> str:
    return " ".join(f"{i} + 3 = {i + 3}." for i in range(2, 2 + 3 * n, 3))


# An honest reasoning (HONEST["fgvc_a320"], extended) translated: the same content in another language.
TRANSLATED = {
    "spanish": (
        "Primero observo el avión. Tiene dos motores montados bajo las alas y un fuselaje estrecho con un solo "
        "pasillo. La nariz es redondeada y las ventanas de la cabina tienen la forma típica de Airbus, así que no "
        "es un Boeing 737. El fuselaje no es corto como el de un A319 ni alargado como el de un A321, por lo que "
        "queda el A320. Además, las puntas de las alas llevan pequeñas aletas verticales, comunes en la familia."
    ),
    "portuguese": (
        "Primeiro observo o avião. Ele tem dois motores montados sob as asas e uma fuselagem estreita com um só "
        "corredor. O nariz é arredondado e as janelas da cabine têm a forma típica da Airbus, então não é um "
        "Boeing 737. A fuselagem não é curta como a de um A319 nem alongada como a de um A321, por isso resta o "
        "A320. Além disso, as pontas das asas têm pequenas aletas verticais, que são comuns no avião da Airbus."
    ),
    "german": (
        "Zuerst betrachte ich das Flugzeug. Es hat zwei Triebwerke unter den Tragflächen und einen schmalen Rumpf "
        "mit einem Gang. Die Nase ist abgerundet und die Cockpitfenster haben die typische Airbus-Form, also ist "
        "es keine Boeing 737. Der Rumpf ist weder kurz wie bei einer A319 noch gestreckt wie bei einer A321, so "
        "bleibt die A320 übrig. Außerdem haben die Flügelspitzen kleine Winglets, die in der Familie üblich sind."
    ),
}

HEDGES = [
    "Let me think again.",
    "Let me look more carefully.",
    "Let me double check this.",
    "Let me reconsider the image.",
    "Let me verify once more.",
    "Hmm, wait a moment.",
    "Actually, let me re-examine it.",
    "I should be careful here.",
    "Let me go over it again.",
    "Okay, let me check one more time.",
]


def _hedging(n: int, seed: int) -> str:
    """n sentences that announce more thinking without doing any."""
    rng = _rng(seed)
    return " ".join(rng.choice(HEDGES) for _ in range(n))


NUMBER_WORDS = (
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred"
).split()

SHORT = HONEST["fgvc_747_short"].think
SHORT_SAT = HONEST["sat_left_short"].think

FILLER: dict[str, Sample] = {
    # the eight classes of the review
    "counting": Sample("fgvc", " ".join(str(i) for i in range(1, 151))),
    "numbered_list": Sample(
        "fgvc", "\n".join(f"{i}. Consider the aircraft in the image." for i in range(1, 26))
    ),
    "numbered_nouns": Sample("fgvc", "\n".join(f"{i}. {w}" for i, w in enumerate(DICTIONARY[:70], 1))),
    "random_words": Sample("fgvc", _random_words(120, 1)),
    "hashes": Sample("fgvc", _hashes(24)),
    "random_strings": Sample("fgvc", _random_strings(30, 2)),
    "invisible_variants": Sample("fgvc", _invisible_variants(14, 3), own=SENTENCE),
    "lookalike_variants": Sample("fgvc", _lookalike_variants(14, 4), own=SENTENCE),
    "eight_languages": Sample("fgvc", EIGHT_LANGUAGES, own=SENTENCE),
    "prompt_filler_every_3": Sample("fgvc", _prompt_with_filler(FGVC_PROMPT, 3, ["um", "so", "well"], 2)),
    "prompt_filler_every_2_sat": Sample(
        "sat", _prompt_with_filler(SAT_PROMPT, 2, ["hmm", "okay", "right", "indeed"], 2)
    ),
    # more tricks
    "lorem_ipsum": Sample("fgvc", LOREM),
    "repeated_answer": Sample(
        "fgvc", " ".join(["The answer is Boeing 747-400."] * 30), own="The answer is Boeing 747-400."
    ),
    "repeated_model": Sample("fgvc", " ".join(["747-400"] * 80)),
    "synonyms": Sample("fgvc", SYNONYMS),
    "json_blob": Sample("fgvc", _json_blob(12)),
    "code_blob": Sample("fgvc", CODE),
    "options_again": Sample("sat", " ".join(["Options: (A) left (B) right."] * 30)),
    "options_numbered": Sample(
        "sat", "\n".join(f"{i}. Option A is left and option B is right." for i in range(1, 21))
    ),
    "step_by_step_numbered": Sample(
        "fgvc", "\n".join(f"Step {i}: Let me think step by step." for i in range(1, 31))
    ),
    "restated_variations": Sample("fgvc", _restated(30, 5), own=_restated(1, 5)),
    "restated_five_times": Sample("fgvc", _restated(5, 12), own=_restated(1, 12)),
    "arithmetic": Sample("fgvc", _arithmetic(40)),
    "number_words": Sample("fgvc", " ".join(NUMBER_WORDS * 3)),
    "word_salad": Sample("fgvc", _salad(150, 6)),
    "shuffled_honest": Sample("fgvc", _shuffled(HONEST["fgvc_737_long"].think, 7)),
    "emoji": Sample("fgvc", "✈️ " * 120),
    "dots_and_dashes": Sample("fgvc", ". . . - - - * * * " * 30),
    "markdown_table": Sample(
        "fgvc",
        "| model | engines | wing |\n|---|---|---|\n"
        + "\n".join(
            f"| {m} | {e} | {w} |"
            for m, e, w in [("737", 2, "low"), ("A320", 2, "low"), ("747", 4, "low"), ("Q400", 2, "high")] * 8
        ),
    ),  # fmt: skip
    "spelled_out": Sample("fgvc", " ".join("-".join("BOEING") for _ in range(40))),
    "translated_spanish": Sample("fgvc", TRANSLATED["spanish"]),
    "translated_portuguese": Sample("fgvc", TRANSLATED["portuguese"]),
    "translated_german": Sample("fgvc", TRANSLATED["german"]),
    "zalgo": Sample("fgvc", " ".join("".join(c + "\u0301\u0308" for c in SENTENCE) for _ in range(5))),
    "math_letters": Sample(
        "fgvc", " ".join([SENTENCE.translate({c: 0x1D41A + c - 97 for c in range(97, 123)})] * 10)
    ),
    "counting_sentences": Sample("fgvc", " ".join(f"There are {i} engines." for i in range(1, 50))),
    "ordinal_words": Sample(
        "fgvc", " ".join("first second third fourth fifth sixth seventh eighth ninth tenth".split() * 8)
    ),
    "spaced_letters": Sample("fgvc", " ".join(" ".join(SENTENCE) for _ in range(3))),
    "answer_formats": Sample(
        "fgvc", " ".join(["747-400, B747-400, Boeing 747-400, 747-4, B744, the 747 Jumbo."] * 10)
    ),
    "long_words": Sample("fgvc", "pneumonoultramicroscopicsilicovolcanoconiosis " * 20),
    "whitespace": Sample("fgvc", "\n\n \t " * 60),
    "hedging": Sample("fgvc", _hedging(40, 14)),
    "answer_variants": Sample(
        "fgvc",
        " ".join(
            f"So the answer is {x}." for x in ["747-400", "the 747-400", "Boeing 747-400", "a 747-400"] * 8
        ),
        own="So the answer is 747-400.",
    ),
    "question_restated": Sample(
        "sat", SAT_PROMPT.split(" Options")[0] + " " + SAT_PROMPT.split(" Options")[0] * 3
    ),
    "honest_copied_3x": Sample(
        "fgvc", " ".join([HONEST["fgvc_a320"].think] * 3), honest=HONEST["fgvc_a320"].think
    ),
    "honest_then_wait": Sample("fgvc", SHORT + " Wait, let me think." * 30, honest=SHORT),
    "honest_then_random_words": Sample("fgvc", SHORT + " " + _random_words(120, 8), honest=SHORT),
    "honest_then_restated": Sample("fgvc", SHORT + " " + _restated(25, 9), honest=SHORT),
    "honest_then_restated_3x": Sample("fgvc", SENTENCE + " " + _restated(3, 13), honest=SENTENCE),
    "honest_then_prompt": Sample("sat", SHORT_SAT + " " + SAT_PROMPT * 3, honest=SHORT_SAT),
    "honest_then_salad": Sample("sat", SHORT_SAT + " " + _salad(150, 10), honest=SHORT_SAT),
    "honest_then_hedging": Sample("fgvc", SHORT + " " + _hedging(30, 15), honest=SHORT),
    "honest_then_translation": Sample(
        "fgvc", HONEST["fgvc_a320"].think + " " + TRANSLATED["spanish"], honest=HONEST["fgvc_a320"].think
    ),
}


def _nonsense(n: int, seed: int) -> str:
    """Grammatical sentences from a template, filled with random dictionary words."""
    rng = _rng(seed)
    out = []
    for _ in range(n):
        a, b, c, d, e = (rng.choice(DICTIONARY) for _ in range(5))
        out.append(f"The {a} {b} is near the {c} of the {d}, so it has a {e}.")
    return " ".join(out)


# Filler the measure does not catch (docs/protocol.md): fluent English that is nonsense or beside the point needs a
# reader who knows what the image shows. Tests mark these as expected failures, so a fix shows up.
OPEN: dict[str, Sample] = {
    "template_nonsense": Sample("fgvc", _nonsense(15, 11)),
    "irrelevant_prose": Sample(
        "fgvc",
        "Bread is one of the oldest prepared foods. Flour is mixed with water and yeast, and the dough is left to "
        "rise for a few hours while the yeast turns sugar into gas. Then it is shaped, rested again and baked in "
        "a hot oven until the crust is brown. Different regions have their own traditions: some add milk or "
        "butter, others use a sourdough starter that has been kept alive for years, and flatbreads skip the "
        "rising entirely. The result is eaten with almost every meal in many countries.",
    ),
}


@cache
def _tokenizer():
    """The tiny base model's tokenizer, or None when it cannot be loaded (then `count_tokens` uses pieces)."""
    try:
        from tokenizers import Tokenizer

        return Tokenizer.from_file(str(TOKENIZER))
    except Exception:  # noqa: BLE001 - any failure means: fall back to pieces
        return None


# Letter runs, single digits, runs of other non-space characters: the pieces a Qwen2 / GPT pre-tokeniser cuts.
_PIECE = re.compile(r"[^\W\d_]+|\d|[^\w\s]+|_+")


def count_pieces(text: str) -> int:
    """One token per piece (letter run, digit, punctuation run): about a Qwen2 tokenizer's count for English."""
    return len(_PIECE.findall(text))


def count_tokens(text: str) -> int:
    """Tokens of `text` by the tiny base model's byte-level BPE tokenizer (`count_pieces` if it does not load)."""
    tok = _tokenizer()
    return len(tok.encode(text).ids) if tok is not None else count_pieces(text)
