"""Evaluation on a task's test split: greedy decoding with the training prompt, batched.

Reports accuracy with the accuracy reward's own matcher (`rft.rewards.is_correct` on `accepted_answers` and
`rival_answers`, in `prediction_row`), the one-way lenient accuracy, format rate, mean completion and think
tokens, and accuracy per question type where the task has types (SAT's `question_type`). Classification tasks
also get FGVC's official metric (mean per-class accuracy) and Visual-RFT's two-way substring accuracy, which is
only for setting beside its published numbers: it accepts empty answers and "707" for "707-320"
(docs/protocol.md).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from tqdm import tqdm

from rft.data.base import Sample, Task, accepted_answers, rival_answers
from rft.prompts import chat_text, encode_prompts
from rft.rewards import (
    extract_answer,
    is_correct,
    is_lenient_correct,
    is_visualrft_correct,
    is_well_formatted,
)
from rft.sampling import completion_texts, count_think_tokens, sample_hf


@torch.no_grad()
def evaluate(
    model,
    processor,
    task: Task,
    samples: list[Sample],
    *,
    think: bool,
    max_new_tokens: int,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], list[dict]]:
    """Greedy-decode every sample and score it; batches go to `device`, the model's.

    Returns:
        (metrics keyed `eval/<name>`, one prediction row per sample).
    """
    tok = processor.tokenizer
    was_training = model.training
    model.eval()
    rows: list[dict] = []
    for start in tqdm(range(0, len(samples), batch_size), desc="eval", mininterval=2):
        batch = samples[start : start + batch_size]
        texts = [chat_text(processor, task.prompt(s, think), len(s.images)) for s in batch]
        prompts = encode_prompts(processor, texts, [s.images for s in batch], device)
        ids, mask = sample_hf(
            model, tok, prompts, num_return_sequences=1, max_new_tokens=max_new_tokens, temperature=None
        )  # [b, T], [b, T]
        completions = completion_texts(tok, ids, mask)
        think_counts = count_think_tokens(tok, completions)
        for s, c, n_tokens, n_think in zip(
            batch, completions, mask.sum(1).tolist(), think_counts, strict=True
        ):
            rows.append(prediction_row(s, c, think=think, completion_tokens=n_tokens, think_tokens=n_think))
    if was_training:
        model.train()
    return eval_metrics(rows), rows


def prediction_row(
    sample: Sample, completion: str, *, think: bool, completion_tokens: int, think_tokens: int
) -> dict:
    """One sample's prediction row: its ids, the completion, and every per-sample metric of `eval_metrics`.

    `correct` is the accuracy reward's matcher on the same accepted and rival names that training uses.
    """
    return {
        "uid": sample.uid,
        "qtype": sample.qtype,
        "label": sample.label,
        "answer": sample.answer,
        "completion": completion,
        "extracted": extract_answer(completion),
        "correct": is_correct(completion, accepted_answers(sample), rival_answers(sample)),
        "lenient": is_lenient_correct(completion, sample.answer),
        "visualrft": is_visualrft_correct(completion, sample.answer),
        "formatted": is_well_formatted(completion, think),
        "completion_tokens": completion_tokens,
        "think_tokens": think_tokens,
    }


def eval_metrics(rows: list[dict]) -> dict[str, float]:
    """Metrics over prediction rows (e.g. every rank's rows, gathered).

    Keys: `eval/accuracy` (the matcher), `eval/lenient_accuracy` (the label occurs in the answer),
    `eval/format_rate`, `eval/completion_tokens`, `eval/think_tokens`, `eval/n`; `eval/accuracy_<qtype>` per
    question type; and, when every row has a class `label` (classification), `eval/class_mean_accuracy`
    (FGVC-Aircraft's official metric: the mean over classes of each class's accuracy) and
    `eval/visualrft_accuracy` (Visual-RFT's two-way substring metric, an upper bound).
    """
    n = max(len(rows), 1)
    metrics = {
        "eval/accuracy": sum(r["correct"] for r in rows) / n,
        "eval/lenient_accuracy": sum(r["lenient"] for r in rows) / n,
        "eval/format_rate": sum(r["formatted"] for r in rows) / n,
        "eval/completion_tokens": sum(r["completion_tokens"] for r in rows) / n,
        "eval/think_tokens": sum(r["think_tokens"] for r in rows) / n,
        "eval/n": float(len(rows)),
    }
    by_type: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        if r["qtype"]:
            by_type[r["qtype"]].append(r["correct"])
    for qtype, hits in sorted(by_type.items()):
        metrics[f"eval/accuracy_{qtype}"] = sum(hits) / len(hits)
    if rows and all(r.get("label") for r in rows):
        by_class: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            by_class[r["label"]].append(r["correct"])
        metrics["eval/class_mean_accuracy"] = sum(sum(h) / len(h) for h in by_class.values()) / len(by_class)
        metrics["eval/visualrft_accuracy"] = sum(r["visualrft"] for r in rows) / n
    return metrics
