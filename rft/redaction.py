"""Secret redaction: no token or password reaches W&B, the run folder or the results table.

`redact` returns a copy of a config, row, metrics dict or sample with secrets replaced by `REDACTED`:
the values of secret-looking keys (`_SECRET_KEY`: api keys, secrets, passwords, a standalone `token` word)
and any string equal to, or embedding, the value of one of `SECRET_ENV_VARS` in the environment.

Everything that leaves the process goes through it first: the W&B config, summary and tables (`rft.tracking`),
sample dumps, `results.json` and the shared results CSV (`rft.results`), and Hydra's own files and `sys.argv`
(`experiments/run.py`).

A leaf module: it imports nothing from `rft`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"
# Key names whose values are secrets. "token" must stand alone between separators so that config keys such
# as max_new_tokens or tokenizer_name stay readable on the dashboard, while hf_token or auth-token are masked.
_SECRET_KEY = re.compile(r"api[_-]?key|secret|password|passwd|(?:^|[^a-z])token(?:$|[^a-z])", re.IGNORECASE)
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
# A secret this long is also masked where it is embedded in a longer string (a URL, a command line); shorter
# values are masked only on an exact match so a short variable cannot mangle ordinary text.
_MIN_EMBEDDED_SECRET_LEN = 8


def redact(obj: Any) -> Any:
    """A copy of `obj` with secrets replaced by `"***"`, at any nesting depth.

    Masked are:

    * the value of every key whose name matches `api_key` / `api-key` / `apikey`, `secret`, `password`,
      `passwd` or a standalone `token` word (`hf_token`, `auth-token`, but not `max_new_tokens` or
      `tokenizer`), case-insensitively; `None` and `""` stay as they are, so an unset secret still reads as
      unset;
    * every string equal to the value of `WANDB_API_KEY`, `HF_TOKEN`, `HUGGING_FACE_HUB_TOKEN` or
      `OPENAI_API_KEY` (when set and non-empty); such a value of 8 or more characters is also masked where
      it is embedded in a longer string.

    Dicts, lists and tuples are copied; other values are returned as they are. The environment is read on
    every call, so a token set after import is still caught.

    Args:
        obj: Config, row, metrics or any nesting of them.

    Returns:
        The redacted copy.
    """
    secrets = sorted({v for name in SECRET_ENV_VARS if (v := os.environ.get(name))}, key=len, reverse=True)
    return _redact(obj, secrets)


def _redact(obj: Any, secrets: list[str]) -> Any:
    if isinstance(obj, str):
        for secret in secrets:
            if obj == secret:
                return REDACTED
            if len(secret) >= _MIN_EMBEDDED_SECRET_LEN and secret in obj:
                obj = obj.replace(secret, REDACTED)
        return obj
    if isinstance(obj, Mapping):
        return {
            key: REDACTED
            if _SECRET_KEY.search(str(key)) and not _is_unset(value)
            else _redact(value, secrets)
            for key, value in obj.items()
        }
    if isinstance(obj, list):
        return [_redact(item, secrets) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(item, secrets) for item in obj)
    return obj


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value)
