"""Register the typed config schemas (rft.config dataclasses) with Hydra's ConfigStore.

Every group YAML starts with `defaults: [<name>_schema]`, so its keys and types are checked against the dataclass
at compose time: a misspelt key or a wrong type fails and names the key. Imported by experiments/run.py and by
the config tests.
"""

from hydra.core.config_store import ConfigStore

from rft.config import (
    BudgetConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RewardConfig,
    RFTConfig,
    RunConfig,
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
    cs.store(group="method", name="rft_schema", node=RFTConfig)
    cs.store(group="method", name="sft_schema", node=SFTConfig)
    cs.store(group="method", name="zeroshot_schema", node=ZeroShotConfig)


register()
