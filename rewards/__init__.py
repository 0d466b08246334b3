"""rtlforge rewards: turn (task, completion) into a RewardResult with real EDA tools.

Public entry points: :func:`rewards.score.score` (one item), :func:`rewards.engine.score_batch`
and :class:`rewards.engine.ScoringEngine` (batches),
the records in :mod:`rewards.types`, and the config in :mod:`rewards.config`.
"""

from rewards.types import RewardResult, Status, Task, TaskError

__all__ = ["RewardResult", "Status", "Task", "TaskError"]
