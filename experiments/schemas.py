"""Register the typed config schemas (rft.config dataclasses) with Hydra's ConfigStore.

Every group YAML starts with `defaults: [<name>_schema]`, so its keys and types are checked against the dataclass
at compose time: a misspelt key or a wrong type fails and names the key. Imported by experiments/run.py and by
the config tests.
"""

import dataclasses
import math

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from rft.config import (
    BudgetConfig,
    ConfigError,
    DistConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RewardConfig,
    RFTConfig,
    RunConfig,
    ScheduleConfig,
    SFTConfig,
    TaskConfig,
    ZeroShotConfig,
)


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="task", name="task_schema", node=TaskConfig)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="reward", name="reward_schema", node=RewardConfig)
    cs.store(group="budget", name="budget_schema", node=BudgetConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    cs.store(group="eval", name="eval_schema", node=EvalConfig)
    cs.store(group="dist", name="dist_schema", node=DistConfig)
    cs.store(group="schedule", name="schedule_schema", node=ScheduleConfig)
    cs.store(group="method", name="rft_schema", node=RFTConfig)
    cs.store(group="method", name="sft_schema", node=SFTConfig)
    cs.store(group="method", name="zeroshot_schema", node=ZeroShotConfig)


def reject_unknown_keys(node: DictConfig, path: str = "") -> None:
    """Fail on keys a schema does not declare (Hydra's `+key=value` can add them even in struct mode)."""
    schema = OmegaConf.get_type(node)
    if dataclasses.is_dataclass(schema):
        known = {f.name for f in dataclasses.fields(schema)}
        for key in node.keys():
            if key not in known:
                raise ConfigError(
                    f"unknown key {path}{key}: {schema.__name__} has no field {key!r}; check the spelling. "
                    f"Known fields: {', '.join(sorted(known))}"
                )
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            reject_unknown_keys(child, f"{path}{key}.")


def reject_non_finite(node: object, path: str = "") -> None:
    """Fail on a NaN or infinite number anywhere (`method.lr=inf`, `method.max_grad_norm=nan`): no key means it."""
    if isinstance(node, dict):
        for key, child in node.items():
            reject_non_finite(child, f"{path}{key}.")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            reject_non_finite(child, f"{path}{i}.")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"{path[:-1]}={node} is not a finite number; pass a finite value")


def to_run_config(cfg: DictConfig) -> RunConfig:
    """The typed RunConfig of a composed config; every __post_init__ rule runs here."""
    reject_unknown_keys(cfg)
    reject_non_finite(OmegaConf.to_container(cfg, resolve=True))
    return OmegaConf.to_object(cfg)


register()
