"""Held-out functional pass@1 with honest statistics: per-task results, bootstrap intervals, paired gain.

A measurement samples ``n`` completions for every held-out task at a fixed temperature and scores them
with the reward (only ``passed`` counts: a full functional pass). pass@1 is the mean over tasks of
each task's pass rate (the unbiased pass@1 estimator, averaged over tasks). Its 95% interval, and
the interval of a before/after gain, come from a bootstrap over *tasks* (10,000 resamples,
percentile interval): a paired bootstrap for the gain, since both measurements use the same tasks,
so task difficulty cancels. Samples of one task are not independent, which is why tasks, not samples,
are resampled. Completions that could not be scored (``INFRA_ERROR``) are left out of their task's rate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class HeldOutResult:
    """One pass@1 measurement: per-task counts plus the status mix."""

    split: str
    task_ids: tuple[str, ...]
    passed: tuple[int, ...]  # per task: samples that passed
    scored: tuple[int, ...]  # per task: samples with a verdict (INFRA_ERROR left out)
    infra_errors: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    mean_reward: float = 0.0

    @property
    def rates(self) -> list[float]:
        """Per-task pass rate (tasks without any scored sample are dropped)."""
        return [p / s for p, s in zip(self.passed, self.scored, strict=True) if s]

    @property
    def pass_at_1(self) -> float:
        rates = self.rates
        return sum(rates) / len(rates) if rates else 0.0

    @property
    def samples(self) -> int:
        return sum(self.scored) + self.infra_errors

    def to_dict(self, seed: int = 0) -> dict[str, Any]:
        return {
            "split": self.split,
            "pass@1": self.pass_at_1,
            "ci95": list(bootstrap_ci(self.rates, seed=seed)),
            "samples": self.samples,
            "tasks": len(self.task_ids),
            "passed": sum(self.passed),
            "infra_errors": self.infra_errors,
            "statuses": dict(sorted(self.statuses.items())),
            "mean_reward": self.mean_reward,
            "per_task": {t: [p, s] for t, p, s in zip(self.task_ids, self.passed, self.scored, strict=True)},
        }


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values, ``q`` in [0, 1]."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def bootstrap_ci(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (one value per task)."""
    import numpy as np

    data = np.asarray(list(values), dtype=np.float64)
    if not data.size:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = np.sort(data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1))
    tail = (1.0 - level) / 2
    return (_percentile(means.tolist(), tail), _percentile(means.tolist(), 1.0 - tail))


def paired_gain(
    before: HeldOutResult,
    after: HeldOutResult,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The gain in pass@1 from ``before`` to ``after`` on the same tasks, with a paired bootstrap interval.

    Returns ``{"gain", "ci95": [lo, hi], "tasks", "method"}``; the gain is in pass@1 units (0.1 = 10 points).

    Raises:
        ValueError: the two measurements are not over the same tasks.
    """
    if before.task_ids != after.task_ids:
        raise ValueError(
            f"paired gain needs the same tasks before and after ({len(before.task_ids)} vs "
            f"{len(after.task_ids)} tasks, or another order); measure both on one task list"
        )
    diffs = [
        a_p / a_s - b_p / b_s
        for b_p, b_s, a_p, a_s in zip(before.passed, before.scored, after.passed, after.scored, strict=True)
        if b_s and a_s
    ]
    gain = sum(diffs) / len(diffs) if diffs else 0.0
    lo, hi = bootstrap_ci(diffs, resamples=resamples, seed=seed, level=level)
    return {
        "gain": gain,
        "ci95": [lo, hi],
        "tasks": len(diffs),
        "method": f"paired bootstrap over tasks ({resamples} resamples, percentile interval)",
    }


Sampler = Callable[[Sequence[Any], int], list[list[str]]]
Scorer = Callable[[list[dict]], list]


def measure(
    split: str, tasks: Sequence[Any], completions: Sequence[Sequence[str]], scorer: Scorer
) -> HeldOutResult:
    """Score ``completions`` (one list per task) with ``scorer`` and collect a :class:`HeldOutResult`.

    Args:
        split: name recorded with the result (e.g. "test").
        tasks: the held-out tasks (objects with an ``id``).
        completions: ``completions[i]`` are the samples of ``tasks[i]``.
        scorer: ``[{"task_id", "completion"}] -> [RewardResult]`` in item order.
    """
    items = [
        {"task_id": t.id, "completion": c} for t, group in zip(tasks, completions, strict=True) for c in group
    ]
    results = scorer(items)
    passed, scored, statuses = [], [], Counter()
    rewards = []
    index = 0
    for group in completions:
        chunk = results[index : index + len(group)]
        index += len(group)
        passed.append(sum(1 for r in chunk if r.reward is not None and r.passed))
        scored.append(sum(1 for r in chunk if r.reward is not None))
        statuses.update(r.status.value for r in chunk)
        rewards += [r.reward for r in chunk if r.reward is not None]
    return HeldOutResult(
        split=split,
        task_ids=tuple(t.id for t in tasks),
        passed=tuple(passed),
        scored=tuple(scored),
        infra_errors=sum(1 for r in results if r.reward is None),
        statuses=dict(statuses),
        mean_reward=sum(rewards) / len(rewards) if rewards else 0.0,
    )
