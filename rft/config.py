"""Typed configuration: one dataclass per config group, and `validate()` for rules that span groups.

Defaults live here and only here. Hydra (in `experiments/`) registers these classes as schemas, so a misspelt key
or a wrong type fails at compose time and names the key. `__post_init__` checks rules within one config; the
messages say how to fix the problem. This module never imports Hydra.

GRPO defaults follow the Visual-RFT / R1-V lineage (docs/protocol.md): G = 8, temperature 1.0,
lr 1e-6, beta = 0.04 (k3), one update per rollout, (r - mean) / (std + 1e-4), seq-mean-token-mean aggregation,
completions up to 256 tokens, 3,136 to 401,408 pixels.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from rft.losses import LOSS_AGGREGATIONS
from rft.rewards import REWARDS

BUDGET_KINDS = ("shots", "samples", "full")
DTYPES = ("float32", "bfloat16", "float16", "auto")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
WANDB_MODES = ("auto", "online", "offline", "disabled")
SAMPLERS = ("lean", "hf")  # rft.sampling.SAMPLERS
LR_SCHEDULES = ("cosine", "constant")


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and says how to fix it."""


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


@dataclass
class TaskConfig:
    """A task (`task=`). Sizes of synthetic tasks are per class for classification tasks.

    The fields after `test_size` apply to the real datasets (rft.data.fgvc, sat, banner); synthetic tasks ignore them.

    Attributes:
        root: Data folder: fgvc `fgvc-aircraft-2013b/` (or its `data/`), sat the folder of SAT_*.parquet, banner
            the folder holding train.jsonl/test.jsonl and the images.
        source: fgvc only: "official" (the archive layout under root) or "hf" (a Hugging Face copy, hf_path).
        train_source: fgvc: where the train pool comes from, "official" or "hf"; null = `source`. Visual-RFT's
            setup is train_source=hf (its 4-shot HF copy) with source=official (the archive's test split).
        annotation_level: fgvc class granularity: variant (100), family (70) or manufacturer (30).
        train_split: The source split that becomes the train pool (fgvc train|trainval|val, sat train|static).
        crop_bottom: fgvc: pixels cut off the bottom of every image of either source (the official protocol
            removes the 20-px copyright banner; Visual-RFT does not); set 0 for a copy that is already cropped.
        hf_path: source=hf: a hub id, a `save_to_disk` folder, or a folder of parquet/arrow files.
        hf_files: source=hf: explicit split -> parquet/arrow file (or glob); empty infers splits from file names.
            On the command line: `'+task.hf_files={train: /d/train*.parquet, test: /d/test*.parquet}'` (the `+`
            is needed to add keys to the empty dict).
        image_column: source=hf: the image column (an HF Image struct or raw bytes).
        label_column: source=hf: the label column (a ClassLabel int, a string, or `<answer>…</answer>`).
        keep_multi_image: sat: keep questions with 2 images (motion) in the train pool; false keeps single-image
            questions only (VisualThinker-R1-Zero).
        eval_multi_image: sat: keep the 2-image questions in the evaluated splits (Qwen2-VL takes several images).
        first_n: sat: read only the first N rows of the train pool, before filtering (0 = all rows).
        shuffle_options: sat/banner: shuffle the options per question, seeded by the run seed and the uid.
    """

    name: str = "sat_synth"
    data_seed: int = 0
    image_size: int = 112
    train_size: int = 256
    test_size: int = 64
    root: str | None = None
    source: str = "official"
    train_source: str | None = None
    annotation_level: str = "variant"
    train_split: str = "train"
    crop_bottom: int = 20
    hf_path: str | None = None
    hf_files: dict[str, str] = field(default_factory=dict)
    image_column: str = "image"
    label_column: str = "label"
    keep_multi_image: bool = False
    eval_multi_image: bool = True
    first_n: int = 0
    shuffle_options: bool = True

    def __post_init__(self) -> None:
        _require(self.train_size > 0, f"task.train_size must be > 0, got {self.train_size}")
        _require(self.test_size > 0, f"task.test_size must be > 0, got {self.test_size}")
        _require(self.image_size >= 28, f"task.image_size must be >= 28 pixels, got {self.image_size}")
        _require(self.source in ("official", "hf"), f"task.source={self.source!r} must be official or hf")
        _require(
            self.train_source in (None, "official", "hf"),
            f"task.train_source={self.train_source!r} must be official, hf or null (= task.source)",
        )
        _require(
            self.annotation_level in ("variant", "family", "manufacturer"),
            f"task.annotation_level={self.annotation_level!r} must be variant, family or manufacturer",
        )
        _require(self.crop_bottom >= 0, f"task.crop_bottom must be >= 0 pixels, got {self.crop_bottom}")
        _require(self.first_n >= 0, f"task.first_n must be >= 0 (0 = all rows), got {self.first_n}")
        _require(
            "hf" not in (self.source, self.train_source) or bool(self.hf_path) or bool(self.hf_files),
            f"task.{'source' if self.source == 'hf' else 'train_source'}=hf needs task.hf_path=<hub id or local "
            "folder> or '+task.hf_files={train: ..., test: ...}'",
        )


@dataclass
class LoraConfig:
    """LoRA adapters (peft) on the language model's attention projections; off by default.

    With LoRA only the adapters train, the saved result is the adapter, and the reference policy (beta > 0) is
    the same model with its adapter disabled (no second copy in memory).
    """

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        _require(self.r > 0, f"model.lora.r must be > 0, got {self.r}")
        _require(0 <= self.dropout < 1, f"model.lora.dropout must be in [0, 1), got {self.dropout}")
        _require(len(self.target_modules) > 0, "model.lora.target_modules is empty; name at least one module")


@dataclass
class ModelConfig:
    """A model (`model=`): a hub id or a built-in tiny preset, loaded through AutoModelForImageTextToText."""

    id: str = "tiny"
    path: str | None = None
    builtin: bool = True
    seed: int = 0
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    min_pixels: int = 3136
    max_pixels: int = 401408
    trust_remote_code: bool = False
    cache_dir: str = "~/.cache/rft-suite/models"
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)

    def __post_init__(self) -> None:
        _require(self.dtype in DTYPES, f"model.dtype={self.dtype!r} is not one of {DTYPES}")
        _require(
            self.attn_implementation in ATTN_IMPLEMENTATIONS,
            f"model.attn_implementation={self.attn_implementation!r} is not one of {ATTN_IMPLEMENTATIONS}",
        )
        _require(
            0 < self.min_pixels <= self.max_pixels,
            f"model.min_pixels ({self.min_pixels}) must be > 0 and <= model.max_pixels ({self.max_pixels})",
        )


@dataclass
class RewardTerm:
    """One reward function and its weight in the sum."""

    fn: str = "accuracy"
    weight: float = 1.0


@dataclass
class RewardConfig:
    """A reward (`reward=`): a named weighted list of reward functions plus the prompt template they assume.

    Attributes:
        think: True for the <think>…</think><answer>…</answer> template, False for the answer-only one.
        length_target: L_target of the target-form length reward (`length_norm`); null means the method's max_new_tokens.
        length_requires_correct: Pay the length rewards only to correct answers, so a wrong answer cannot buy
            reward with a long think.
    """

    name: str = "acc_format"
    think: bool = True
    terms: list[RewardTerm] = field(default_factory=lambda: [RewardTerm("accuracy"), RewardTerm("format")])
    length_target: int | None = None
    length_requires_correct: bool = False

    def __post_init__(self) -> None:
        _require(
            len(self.terms) > 0,
            f"reward {self.name!r} has an empty terms list; add at least one {{fn, weight}}",
        )
        for t in self.terms:
            _require(
                t.fn in REWARDS,
                f"reward {self.name!r}: unknown reward function {t.fn!r}; known: {sorted(REWARDS)}",
            )
            _require(math.isfinite(t.weight), f"reward {self.name!r}: weight of {t.fn!r} must be finite")
            _require(
                self.think or not t.fn.startswith("length_") or t.fn == "length_raw",
                f"reward {self.name!r}: {t.fn} measures <think> length but think=false; set think=true",
            )
        _require(
            self.length_target is None or self.length_target > 0,
            f"reward.length_target must be > 0 or null, got {self.length_target}",
        )


@dataclass
class BudgetConfig:
    """A training-set budget (`budget=`): k shots per class, N samples, or the full pool.

    Attributes:
        seed: Which subset is drawn; the same seed gives nested subsets for growing sizes.
    """

    kind: str = "samples"
    size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.kind in BUDGET_KINDS, f"budget.kind={self.kind!r} is not one of {BUDGET_KINDS}")
        _require(self.kind == "full" or self.size > 0, f"budget.size must be > 0, got {self.size}")


@dataclass
class MethodConfig:
    """Fields every method has. `max_new_tokens` also bounds evaluation, so all methods are compared alike."""

    name: str = "zeroshot"
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        _require(self.max_new_tokens > 0, f"method.max_new_tokens must be > 0, got {self.max_new_tokens}")


@dataclass
class ZeroShotConfig(MethodConfig):
    """Evaluate the base model without training (`method=zeroshot`)."""


@dataclass
class RFTConfig(MethodConfig):
    """GRPO (`method=rft`).

    Attributes:
        steps: Optimizer steps (each with a fresh rollout when mu = 1).
        rollout_batch_size: Completions per step over all ranks, B*G (B prompts times G generations).
        group_size: G, completions per prompt.
        micro_batch_size: Completions per forward/backward on one rank; gradients accumulate over the rest.
        mu: Policy updates per rollout (old log-probs are computed only when mu > 1).
        beta: KL coefficient of the k3 penalty (the reference model is loaded only when beta > 0).
        clip_eps: PPO clip range for the ratio (only active when mu > 1).
        log_ratio_clamp: |log pi_ref - log pi| is clamped to this before exp, so k3 cannot overflow.
        loss_agg: seq-mean-token-mean (GRPO/Visual-RFT), token-mean (DAPO) or seq-mean-token-sum-norm (Dr. GRPO).
        scale_adv_by_std: Divide group-centred rewards by the group std (GRPO); false is Dr. GRPO's choice.
        samples_every: Write samples/step_*.jsonl (and the W&B completions table) every N steps.
        sampler: Rollout sampler: "lean" (`rft.sampling.sample_lean`: one prefill per prompt, static KV cache,
            minimal loop) or "hf" (HF generate, the reference). Both sample the same distribution.
        share_prompt: Log-prob forwards run each prompt once and reuse its K/V for its G completions
            (`rft.logprobs.shared_prompt_logprobs`); false runs G full prompt+completion copies. Same loss and gradient.
        min_new_tokens: EOS is suppressed before this many tokens (0 = off); benchmarks force equal lengths.
        compile_sampler: Compile the lean sampler's per-token step (`torch.compile`); the eager step is the
            reference. Pays off on a GPU for long rollouts; the first step pays the compile time.
    """

    name: str = "rft"
    steps: int = 200
    rollout_batch_size: int = 16
    group_size: int = 8
    micro_batch_size: int = 8
    mu: int = 1
    lr: float = 1e-6
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    beta: float = 0.04
    clip_eps: float = 0.2
    log_ratio_clamp: float = 20.0
    adv_eps: float = 1e-4
    loss_agg: str = "seq-mean-token-mean"
    scale_adv_by_std: bool = True
    max_prompt_tokens: int = 1024
    samples_every: int = 10
    sampler: str = "lean"
    share_prompt: bool = True
    min_new_tokens: int = 0
    compile_sampler: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("lr", "max_grad_norm", "weight_decay", "beta", "temperature", "clip_eps", "adv_eps"):
            value = getattr(self, key)
            _require(
                math.isfinite(value),
                f"method.{key} must be finite, got {value}; pass a finite number",
            )
        _require(self.sampler in SAMPLERS, f"method.sampler={self.sampler!r} is not one of {SAMPLERS}")
        _require(
            0 <= self.min_new_tokens <= self.max_new_tokens,
            f"method.min_new_tokens ({self.min_new_tokens}) must be in [0, method.max_new_tokens="
            f"{self.max_new_tokens}]",
        )
        _require(
            self.group_size >= 2,
            f"method.group_size (G) must be >= 2 for group advantages, got {self.group_size}",
        )
        _require(
            self.rollout_batch_size > 0,
            f"method.rollout_batch_size must be > 0, got {self.rollout_batch_size}; e.g. "
            f"method.rollout_batch_size={4 * self.group_size}",
        )
        _require(
            self.rollout_batch_size % self.group_size == 0,
            f"method.rollout_batch_size ({self.rollout_batch_size}) must be divisible by method.group_size "
            f"({self.group_size}); e.g. set method.rollout_batch_size={self.group_size * max(1, self.rollout_batch_size // self.group_size)}",
        )
        _require(
            self.micro_batch_size > 0 and self.rollout_batch_size % self.micro_batch_size == 0,
            f"method.micro_batch_size ({self.micro_batch_size}) must divide method.rollout_batch_size "
            f"({self.rollout_batch_size})",
        )
        _require(self.steps > 0, f"method.steps must be > 0, got {self.steps}")
        _require(self.mu >= 1, f"method.mu (updates per rollout) must be >= 1, got {self.mu}")
        _require(self.lr > 0, f"method.lr must be > 0, got {self.lr}")
        _require(self.beta >= 0, f"method.beta (KL coefficient) must be >= 0, got {self.beta}")
        _require(self.temperature > 0, f"method.temperature must be > 0, got {self.temperature}")
        _require(self.clip_eps > 0, f"method.clip_eps must be > 0, got {self.clip_eps}")
        _require(
            self.loss_agg in LOSS_AGGREGATIONS,
            f"method.loss_agg={self.loss_agg!r} is not one of {LOSS_AGGREGATIONS}",
        )
        _require(self.samples_every > 0, f"method.samples_every must be > 0, got {self.samples_every}")

    @property
    def prompts_per_step(self) -> int:
        """B: prompts per step, over all ranks."""
        return self.rollout_batch_size // self.group_size


@dataclass
class SFTConfig(MethodConfig):
    """Supervised fine-tuning on `<answer>{label}</answer>` targets (`method=sft`).

    Attributes:
        epochs: Passes over the budgeted train set (when `steps` is 0).
        steps: Optimizer steps; 0 lets `epochs` decide. Set, the run takes that many batches, reshuffling the
            train set at each pass, as GRPO does: the tiny study matches SFT's steps to GRPO's this way.
        batch_size: Examples per optimizer step over all ranks.
        micro_batch_size: Examples per forward/backward (gradient accumulation over batch_size / micro_batch_size).
        warmup_ratio: Fraction of steps with linear LR warm-up (under a schedule grid: of the grid's first
            point, so every point's LR path is the same whatever the run's length).
        lr_schedule: "cosine" (warm-up, then cosine decay to 0 over the run: LLaMA-Factory's SFT default) or
            "constant" (warm-up, then constant, as GRPO). A schedule grid needs "constant": a checkpoint at a
            grid point equals a shorter run only when the LR does not depend on the run's length.
    """

    name: str = "sft"
    epochs: int = 2
    steps: int = 0
    batch_size: int = 16
    micro_batch_size: int = 8
    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_schedule: str = "cosine"
    max_grad_norm: float = 1.0
    max_prompt_tokens: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("lr", "max_grad_norm", "weight_decay"):
            value = getattr(self, key)
            _require(
                math.isfinite(value),
                f"method.{key} must be finite, got {value}; pass a finite number",
            )
        _require(self.epochs > 0, f"method.epochs must be > 0, got {self.epochs}")
        _require(self.steps >= 0, f"method.steps must be >= 0 (0 = method.epochs decides), got {self.steps}")
        _require(self.lr > 0, f"method.lr must be > 0, got {self.lr}")
        _require(
            self.micro_batch_size > 0 and self.batch_size % self.micro_batch_size == 0,
            f"method.micro_batch_size ({self.micro_batch_size}) must divide method.batch_size ({self.batch_size})",
        )
        _require(
            0 <= self.warmup_ratio < 1, f"method.warmup_ratio must be in [0, 1), got {self.warmup_ratio}"
        )
        _require(
            self.lr_schedule in LR_SCHEDULES,
            f"method.lr_schedule={self.lr_schedule!r} is not one of {LR_SCHEDULES}",
        )

    def total_steps(self, n_train: int) -> int:
        """Optimizer steps of a run on `n_train` examples: `steps`, or `epochs` passes of `batch_size`."""
        return self.steps or math.ceil(n_train * self.epochs / self.batch_size)


@dataclass
class ScheduleConfig:
    """How long a trained method runs, stated the same way for every method (`schedule=`; docs/protocol.md).

    Empty `epochs` (the default): the method's own length decides (`method.steps`, or SFT's `method.epochs`).
    A grid of `epochs`: the run trains to its longest point and, at each point, scores the model on the
    `select_split` (to choose a length without looking at the test split) and on the test split; the result row
    gets `grid_e<E>/*` beside the final `eval/*`. One run then serves every length of the grid, and both methods
    get the same lengths in passes over the budgeted data (docs/protocol.md, "Training budgets").

    Attributes:
        epochs: The grid, in passes over the budgeted train set (`train/epochs`), e.g. [1, 2, 4, 8].
            A point's optimizer steps are ceil(E x n_train / examples per step) (GRPO: prompts per step).
        max_steps: Grid points beyond this many optimizer steps are not trained (0 = no cap); the first point
            always is, so a large budget still gets at least its first point.
        select_split: The split each grid point is scored on for choosing a length ("val"); "" scores none.
        select_limit: Score selection on the first N questions of `select_split`, in a fixed seeded order
            shared by every run (0 = all).
    """

    name: str = "method"
    epochs: list[float] = field(default_factory=list)
    max_steps: int = 0
    select_split: str = "val"
    select_limit: int = 0

    def __post_init__(self) -> None:
        _require(
            all(math.isfinite(e) and e > 0 for e in self.epochs),
            f"schedule.epochs must be positive numbers of passes, got {list(self.epochs)}",
        )
        _require(
            len(set(self.epochs)) == len(self.epochs),
            f"schedule.epochs lists a length twice: {list(self.epochs)}; list each once",
        )
        _require(self.max_steps >= 0, f"schedule.max_steps must be >= 0 (0 = no cap), got {self.max_steps}")
        _require(
            self.select_limit >= 0, f"schedule.select_limit must be >= 0 (0 = all), got {self.select_limit}"
        )


@dataclass
class EvalConfig:
    """Evaluation on the task's test split: greedy decoding with the training prompt.

    Attributes:
        limit: Evaluate only the first N test samples (0 = the full split).
        batch_size: Prompts per generate call.
        before: Also evaluate the model before training; the result row gets `eval_before/*` beside `eval/*`.
    """

    split: str = "test"
    limit: int = 0
    batch_size: int = 32
    before: bool = False

    def __post_init__(self) -> None:
        _require(self.limit >= 0, f"eval.limit must be >= 0 (0 = full split), got {self.limit}")
        _require(self.batch_size > 0, f"eval.batch_size must be > 0, got {self.batch_size}")


@dataclass
class LoggerConfig:
    """Experiment tracking (`logger=`). metrics.jsonl is always written; W&B is optional on top.

    Attributes:
        backend: "wandb" or "none".
        mode: "auto" is online when logged in and offline otherwise (with a `wandb sync` hint).
        group: Runs of one sweep share a group.
    """

    backend: str = "wandb"
    project: str = "rft-vs-sft"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    mode: str = "auto"

    def __post_init__(self) -> None:
        _require(self.backend in ("wandb", "none"), f"logger.backend={self.backend!r} must be wandb or none")
        _require(self.mode in WANDB_MODES, f"logger.mode={self.mode!r} is not one of {WANDB_MODES}")


@dataclass
class DistConfig:
    """Distributed training (`dist=`): none (one process) or DeepSpeed ZeRO over all launched ranks.

    Batch sizes are not configured here: they derive from the method (micro-batch, accumulation) and the world
    size; bf16 follows model.dtype and gradient clipping follows method.max_grad_norm.

    Attributes:
        backend: "none" or "deepspeed".
        zero_stage: 2 (optimizer + gradients sharded) or 3 (parameters too).
        offload_optimizer: Keep optimizer state on the CPU.
        offload_params: Keep ZeRO-3 parameters on the CPU.
    """

    name: str = "none"
    backend: str = "none"
    zero_stage: int = 2
    offload_optimizer: bool = False
    offload_params: bool = False

    def __post_init__(self) -> None:
        _require(
            self.backend in ("none", "deepspeed"), f"dist.backend={self.backend!r} must be none or deepspeed"
        )
        _require(self.zero_stage in (2, 3), f"dist.zero_stage must be 2 or 3, got {self.zero_stage}")
        _require(
            not self.offload_params or self.zero_stage == 3,
            "dist.offload_params needs ZeRO-3 (dist=zero3_offload); ZeRO-2 does not shard parameters",
        )


@dataclass
class CheckpointConfig:
    """Checkpoints under `run_dir/checkpoints/step_NNNNNN/` (rft.checkpoint): model, optimizer, scheduler, RNGs, data
    position. One is always written after the last step and when SIGTERM/SIGINT stops a run.

    Attributes:
        every: Also save every N optimizer steps (0 = only at the end).
        keep_last: Keep the newest K complete checkpoints; older ones are deleted after a new one is complete.
    """

    every: int = 0
    keep_last: int = 1

    def __post_init__(self) -> None:
        _require(self.every >= 0, f"checkpoint.every must be >= 0 (0 = only at the end), got {self.every}")
        _require(self.keep_last >= 1, f"checkpoint.keep_last must be >= 1, got {self.keep_last}")


@dataclass
class RunConfig:
    """The whole run: the five axes (task, method, model, reward, budget) plus seed, eval and logging.

    Attributes:
        method: A ZeroShotConfig, RFTConfig or SFTConfig (the `method=` option picks the schema).
        results_csv: The shared results table every run appends one row to.
        threads: torch intra-op threads (0 leaves torch's default).
        resume_allow_changes: A resume continues the same run: a checkpoint written under other task, method,
            model, reward, budget or seed settings is refused unless this is true (e.g. to add method.steps).
        device: Where the policy, the reference, every batch and evaluation live: "auto" (`cuda:LOCAL_RANK` when
            CUDA is available, else the CPU), "cpu", "cuda" (this rank's GPU) or "cuda:N". Resolved once per run
            (`rft.distributed.resolve_device`); asking for CUDA where there is none fails at start.
        resume: "none" (start fresh), "auto" (the latest complete checkpoint in this run directory; a finished
            run is skipped) or the path of a checkpoint folder (or of a run directory holding checkpoints/).
    """

    task: TaskConfig = field(default_factory=TaskConfig)
    method: Any = "???"  # MISSING until a conf/method option (or the caller) provides one
    model: ModelConfig = field(default_factory=ModelConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    resume: str = "none"
    resume_allow_changes: bool = False
    seed: int = 0
    name: str = "run"
    results_csv: str = "outputs/results.csv"
    threads: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        _require(self.threads >= 0, f"threads must be >= 0 (0 = torch's default), got {self.threads}")
        _require(
            self.device in ("auto", "cpu", "cuda") or re.fullmatch(r"cuda:\d+", self.device) is not None,
            f"device={self.device!r} is not one of auto, cpu, cuda, cuda:N (e.g. cuda:0)",
        )
        _require(
            0 <= self.seed < 2**32,
            f"seed={self.seed} is outside [0, 2**32), the range numpy's and torch's generators accept; pass e.g. seed=0",
        )


def validate(cfg: RunConfig, world_size: int = 1) -> None:
    """Rules that span config groups; run before any data or model is loaded.

    Args:
        world_size: Number of ranks (processes) training together.

    Raises:
        ConfigError: with a message that names the keys and the fix.
    """
    _require(
        isinstance(cfg.method, MethodConfig),
        f"method must be one of the conf/method options, got {type(cfg.method).__name__}",
    )
    _require(
        world_size == 1 or cfg.dist.backend == "deepspeed",
        f"{world_size} processes were launched but dist=none trains in one process; pass dist=zero2 or dist=zero3",
    )
    m = cfg.method
    _require(
        not (isinstance(m, RFTConfig) and m.sampler == "lean" and cfg.model.lora.enabled),
        "method.sampler=lean samples from the raw layer weights and would ignore the LoRA adapters; "
        "pass method.sampler=hf with model.lora.enabled=true",
    )
    if isinstance(m, RFTConfig):
        # Convention: a group lives on one rank. rollout_batch_size is global, so each rank takes
        # rollout_batch_size / (G * world_size) whole prompts and group statistics never cross ranks.
        per_rank = m.rollout_batch_size // world_size
        _require(
            m.rollout_batch_size % (m.group_size * world_size) == 0,
            f"method.rollout_batch_size ({m.rollout_batch_size}) must be divisible by group_size x world_size "
            f"({m.group_size} x {world_size}) so every rank holds whole groups; "
            f"e.g. method.rollout_batch_size={m.group_size * world_size * max(1, m.prompts_per_step // world_size)}",
        )
        _require(
            per_rank % m.micro_batch_size == 0,
            f"method.micro_batch_size ({m.micro_batch_size}) must divide the per-rank batch "
            f"({m.rollout_batch_size} / {world_size} ranks = {per_rank})",
        )
    if isinstance(m, SFTConfig):
        per_rank = m.batch_size // world_size
        _require(
            m.batch_size % world_size == 0 and per_rank % m.micro_batch_size == 0,
            f"method.batch_size ({m.batch_size}) must split into {world_size} ranks x whole micro-batches of "
            f"{m.micro_batch_size}; e.g. method.batch_size={m.micro_batch_size * world_size}",
        )
    if isinstance(m, SFTConfig) and len(cfg.schedule.epochs) > 1:
        _require(
            m.lr_schedule == "constant",
            "schedule.epochs scores the run at each grid point, which stands for a shorter run only when the LR "
            "does not depend on the run's length; pass method.lr_schedule=constant (SFT's cosine decay does)",
        )
    _require(
        not cfg.schedule.epochs or cfg.schedule.select_split != cfg.eval.split,
        f"schedule.select_split and eval.split are both {cfg.eval.split!r}: a length chosen on the split it is "
        "reported on flatters it; select on another split (schedule.select_split=val)",
    )
    if isinstance(cfg.method, RFTConfig) and cfg.reward.length_target is not None:
        _require(
            cfg.reward.length_target <= cfg.method.max_new_tokens,
            f"reward.length_target ({cfg.reward.length_target}) exceeds method.max_new_tokens "
            f"({cfg.method.max_new_tokens}); the length reward could never reach 1. Lower it or set it to null",
        )
