"""Check a task with the reward core: its golden must pass against itself and its mutants must fail.

A mutant that still passes may be an equivalent design (it is dropped, not held against the task);
a task none of whose mutants is caught by the simulation is dropped, because the co-simulation
could not tell a wrong answer from a right one there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewards.config import RewardConfig
from rewards.types import RewardResult, Status, Task
from train.corpus.mutants import Mutant, pick_mutants

log = logging.getLogger(__name__)

KILLING = (Status.SIM_MISMATCH, Status.SIM_TIMEOUT)
"""Statuses that count as the simulation catching a mutant (lint rejections prove nothing)."""

Scorer = Callable[[Sequence[tuple[Task, str]], RewardConfig, int | None], list[RewardResult]]


class VerifyInfraError(RuntimeError):
    """The reward core could not run (tool missing, sandbox broken): no verdict on any task."""


@dataclass
class Verdict:
    """What verification found for one task."""

    task_id: str
    ok: bool
    reason: str = ""
    killed: list[int] = field(default_factory=list)
    survived: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    mutant_notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "id": self.task_id,
            "ok": self.ok,
            "reason": self.reason,
            "killed": self.killed,
            "survived": self.survived,
            "invalid": self.invalid,
            "mutants": self.mutant_notes,
        }


def fenced(code: str) -> str:
    """A completion holding ``code`` the way a model would answer."""
    return f"```verilog\n{code.strip()}\n```\n"


def verification_config(**overrides) -> RewardConfig:
    """The reward config verification uses: the defaults without PPA (it does not affect pass/fail)."""
    from rewards.config import load_reward_config

    return load_reward_config(ppa_enabled=False, **overrides)


def task_mutants(task: Task, count: int) -> list[Mutant]:
    """The mutants verification uses for ``task`` (deterministic in the task's reference)."""
    return pick_mutants(task.reference, count, seed=task.reference)


def _default_scorer(items, config, jobs):
    from rewards.engine import score_batch

    return score_batch(items, config, jobs=jobs)


def verify_tasks(
    tasks: Sequence[Task],
    *,
    config: RewardConfig | None = None,
    mutants: int = 3,
    jobs: int | None = None,
    scorer: Scorer | None = None,
) -> list[Verdict]:
    """Verdicts for ``tasks`` in order (one scoring batch for all goldens and mutants).

    Raises:
        VerifyInfraError: any item came back INFRA_ERROR (the toolchain, not the task, is broken),
            unless it is the golden itself, which then marks the task as failed.
    """
    config = config or verification_config()
    scorer = scorer or _default_scorer
    items: list[tuple[Task, str]] = []
    spans = []
    picked = []
    for task in tasks:
        chosen = task_mutants(task, mutants)
        picked.append(chosen)
        spans.append(len(items))
        items.append((task, fenced(task.reference)))
        items += [(task, fenced(m.code)) for m in chosen]
    results = scorer(items, config, jobs)
    verdicts = []
    for task, start, chosen in zip(tasks, spans, picked, strict=True):
        verdicts.append(_verdict(task, results[start], results[start + 1 : start + 1 + len(chosen)], chosen))
    return verdicts


def _verdict(
    task: Task, golden: RewardResult, mutant_results: Sequence[RewardResult], chosen: Sequence[Mutant]
) -> Verdict:
    if not golden.passed:
        return Verdict(task.id, False, f"golden scores {golden.status.value}: {golden.log[-300:]}")
    verdict = Verdict(task.id, True)
    for index, (result, mutant) in enumerate(zip(mutant_results, chosen, strict=True)):
        verdict.mutant_notes.append(f"{mutant.kind} {mutant.where}: {result.status.value}")
        if result.status is Status.INFRA_ERROR:
            raise VerifyInfraError(
                f"scoring a mutant of {task.id} hit an infrastructure error: {result.log[-300:]}"
            )
        if result.status in KILLING:
            verdict.killed.append(index)
        elif result.passed:
            verdict.survived.append(index)
        else:
            verdict.invalid.append(index)
    if not chosen:
        verdict.ok = False
        verdict.reason = "no mutant could be made, so the co-simulation's power on this task is unknown"
    elif not verdict.killed:
        verdict.ok = False
        verdict.reason = (
            f"no mutant caught by co-simulation ({len(verdict.survived)} passed, "
            f"{len(verdict.invalid)} rejected before simulation)"
        )
    return verdict
