"""The GRPO rollout: B prompts, G sampled completions each, their rewards and group-normalised advantages.

`Rollout` is the batch the GRPO loop passes between its phases (and what the benchmarks time): `sample_rollout`
fills prompts and completions (phase 1), `score_rollout` the per-term rewards and their weighted sum (phase 2),
and the loop adds advantages (phase 3, `rft.losses.group_advantages`). Rows are grouped by prompt: row b*G+g is
completion g of prompt b, and `prompt_index` maps each row back to its prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rft.config import ConfigError
from rft.data.base import Sample, Task, accepted_answers, rival_answers
from rft.prompts import Prompts, chat_text, encode_prompts
from rft.rewards import RewardInputs, score
from rft.sampling import SAMPLERS, completion_texts, count_think_tokens, stop_token_ids


@dataclass
class Rollout:
    """One step's batch.

    Attributes:
        samples: The B task rows prompted.
        prompts: The B encoded prompts with their vision inputs.
        group_size: G, completions per prompt.
        prompt_index: [N] the prompt of each completion row (N = B*G).
        ids: [N, T] completion token ids, right-padded.
        mask: [N, T] 1 up to and including the first end-of-turn token.
        completions: N decoded completions.
        think_tokens: N token counts inside `<think>...</think>`.
        finished: [N] True where the completion ended with a stop token within the token limit.
        term_rewards: Per reward term, N scores (in the order of the configured terms).
        rewards: N weighted sums of the terms.
        advantages: [N] group-normalised rewards.
    """

    samples: list[Sample]
    prompts: Prompts
    group_size: int
    prompt_index: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    completions: list[str]
    think_tokens: list[int]
    finished: torch.Tensor
    term_rewards: list[list[float]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    advantages: torch.Tensor | None = None

    @property
    def num_rows(self) -> int:
        """N = B*G."""
        return self.ids.shape[0]


def encode_samples(
    processor, task: Task, samples: list[Sample], think: bool, device: torch.device | str = "cpu"
) -> Prompts:
    """The chat-formatted, tokenised prompts of `samples` with their images, on `device`."""
    texts = [chat_text(processor, task.prompt(s, think), len(s.images)) for s in samples]
    return encode_prompts(processor, texts, [s.images for s in samples], device)


def prompt_tokens(processor, task: Task, sample: Sample, think: bool) -> int:
    """The length of `sample`'s encoded prompt, image tokens included, from its text and image sizes alone.

    The processor expands each image's one `<|image_pad|>` into patches / merge_size^2 tokens (Qwen's
    `smart_resize` under the configured pixel budget), so no pixels are processed here.
    """
    text = chat_text(processor, task.prompt(sample, think), len(sample.images))
    n = len(processor.tokenizer(text)["input_ids"]) - len(sample.images)
    image_processor = processor.image_processor
    for img in sample.images:
        width, height = img.size() if callable(img.size) else img.size  # LazyImage reads only the header
        n += image_processor.get_number_of_image_patches(height, width) // image_processor.merge_size**2
    return n


def check_prompt_lengths(processor, task: Task, samples: list[Sample], think: bool, limit: int) -> None:
    """Refuse, before training, a training prompt longer than `method.max_prompt_tokens` (image tokens included).

    Raises:
        ConfigError: naming the first sample too long, its length, and the fixes.
    """
    for sample in samples:
        n = prompt_tokens(processor, task, sample, think)
        if n > limit:
            raise ConfigError(
                f"the prompt of sample {sample.uid!r} is {n} tokens (image tokens included), more than "
                f"method.max_prompt_tokens={limit}; raise method.max_prompt_tokens or lower model.max_pixels "
                "(fewer image tokens)"
            )


def sample_rollout(
    model,
    processor,
    task: Task,
    samples: list[Sample],
    *,
    think: bool,
    group_size: int,
    sampler: str,
    max_new_tokens: int,
    temperature: float,
    min_new_tokens: int = 0,
    device: torch.device | str = "cpu",
    **sampler_options,
) -> Rollout:
    """Phase 1: encode the B prompts and sample G completions for each in one batched call.

    Args:
        model: The policy (unwrapped transformers model; under ZeRO-3 with its weights gathered).
        sampler: A key of `rft.sampling.SAMPLERS` (`method.sampler`).
        device: The policy's device; prompts, completions and `prompt_index` live there.
        sampler_options: Passed to the sampler (the lean sampler's `compile`).
    """
    tok = processor.tokenizer
    prompts = encode_samples(processor, task, samples, think, device)
    ids, mask = SAMPLERS[sampler](
        model,
        tok,
        prompts,
        num_return_sequences=group_size,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        min_new_tokens=min_new_tokens,
        **sampler_options,
    )  # [N, T], [N, T]
    completions = completion_texts(tok, ids, mask)
    stops = torch.tensor(stop_token_ids(model, tok), device=ids.device)
    return Rollout(
        samples=samples,
        prompts=prompts,
        group_size=group_size,
        prompt_index=torch.arange(len(samples), device=ids.device).repeat_interleave(group_size),  # [N]
        ids=ids,
        mask=mask,
        completions=completions,
        think_tokens=count_think_tokens(tok, completions),
        finished=torch.isin(ids, stops).any(dim=1),  # [N]
    )


def score_rollout(
    rollout: Rollout,
    terms: list[tuple[str, float]],
    *,
    think: bool,
    length_target: int,
    prompts: list[str] | None = None,
    length_requires_correct: bool = False,
) -> Rollout:
    """Phase 2: score every completion with the weighted reward terms; fills `term_rewards` and `rewards`.

    Args:
        prompts: The B prompt texts; the length rewards do not pay for text copied from them (None: no check).
        length_requires_correct: Pay the length rewards only to correct answers.
    """
    G = rollout.group_size
    inputs = RewardInputs(
        completions=rollout.completions,
        accepted=[accepted_answers(s) for s in rollout.samples for _ in range(G)],
        think_tokens=rollout.think_tokens,
        completion_tokens=rollout.mask.sum(1).tolist(),
        group_size=G,
        think=think,
        length_target=length_target,
        prompts=None if prompts is None else [p for p in prompts for _ in range(G)],  # [N]
        length_requires_correct=length_requires_correct,
        rivals=[rival_answers(s) for s in rollout.samples for _ in range(G)],  # [N], shared sets
    )
    rollout.term_rewards, rollout.rewards = score(inputs, terms)
    return rollout
