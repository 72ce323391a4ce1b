"""Which :class:`~film_rl.tasks.base.Task` serves a config: ``env.kind`` names the family.

Families are imported when first asked for, so a run of one family never loads another's
emulator. A new family is one line here.
"""

from __future__ import annotations

import importlib

from film_rl.config import ExperimentConfig
from film_rl.tasks.base import Task
from film_rl.tasks.instructions import Vocabulary

#: ``env.kind`` -> ``module:class`` of its task
TASKS = {
    "babyai": "film_rl.tasks.babyai:BabyAITask",
    "atari": "film_rl.tasks.atari:AtariTask",
    "minatar": "film_rl.tasks.minatar:MinAtarTask",
}


def task_class(kind: str) -> type[Task]:
    module, name = TASKS[kind].split(":")
    cls: type[Task] = getattr(importlib.import_module(module), name)
    return cls


def task_for(config: ExperimentConfig, vocab: Vocabulary | None = None) -> Task:
    """The task of ``config``, for a run whose vocabulary is ``vocab`` (default: BabyAI's)."""
    return task_class(config.env.kind)(config, vocab if vocab is not None else Vocabulary.babyai())
