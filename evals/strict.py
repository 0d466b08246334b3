"""The strict verdict: the official bench's pass, confirmed against the reference design.

An official benchmark bench only checks what its author thought of. RTLLM's ``comparator_3bit``
bench tests ``!A_greater``; an undriven output reads ``z``, ``!z`` is ``x``, an ``if`` treats ``x``
as false, and a module with no logic passes. So every graded sample carries two verdicts:

- ``passed_official``: the benchmark's own bench passes (decided from the harness-owned trace, as
  the reward core grades benchmark tasks with ``testbench_cosim`` off);
- ``passed`` (strict): the official verdict AND a co-simulation against the problem's reference
  passes. The co-simulation compares every output bit by bit, so an output that is x/z where the
  reference's is 0/1 fails it (undriven, or driven only on some paths); AND, where the formal
  level runs, it did not refute the design (``metrics["formal"] == "counterexample"``).

A problem whose reference cannot be co-simulated (it does not compile or elaborate alone, defines
no output bit, or the co-simulation hit an infrastructure fault) falls back to the official verdict
for ``passed``; such samples are marked ``basis: "official"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rewards.config import RewardConfig
from rewards.engine import score_batch
from rewards.types import RewardResult, Status, Task

BASIS_REFERENCE = "reference"
"""The strict verdict was decided by a co-simulation against the reference (or by the official fail)."""
BASIS_OFFICIAL = "official"
"""No usable reference: the strict verdict is the official one (marked in samples and reports)."""


@dataclass(frozen=True)
class StrictVerdict:
    """The strict verdict of one sample and why it differs from the official one (if it does).

    ``checked`` is true when the co-simulation against the reference ran for this sample (it runs
    only for official passes); ``status``/``log`` are that check's outcome, ``formal`` the formal
    level's ``proved | bounded:K | counterexample | unknown`` when it ran.
    """

    passed: bool
    basis: str = BASIS_REFERENCE
    checked: bool = False
    status: str | None = None
    log: str = ""
    formal: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "checked": self.checked,
            "status": self.status,
            "formal": self.formal,
            "log": self.log,
        }


def formal_refuted(result: RewardResult) -> bool:
    """True when the formal level found (and replayed) a counterexample for this result."""
    return result.metrics.get("formal") == "counterexample"


def official_passed(result: RewardResult) -> bool:
    """The official verdict of a result graded on the benchmark's bench.

    The formal level runs only after a functional pass, so a counterexample means the bench had
    passed: the official harness, which has no formal level, would have passed the sample.
    """
    return result.passed or formal_refuted(result)


def reference_task(task: Task) -> Task:
    """``task`` without its bench: the reward core then co-simulates against ``task.reference``."""
    meta = {k: v for k, v in task.meta.items() if k != "files"}
    return replace(task, testbench=None, meta=meta)


def _verdict(official: RewardResult, check: RewardResult) -> StrictVerdict:
    status, text = check.status.value, check.log[-600:]
    formal = check.metrics.get("formal") or official.metrics.get("formal")

    def verdict(passed: bool, why: str, basis: str = BASIS_REFERENCE) -> StrictVerdict:
        return StrictVerdict(passed, basis, True, status, why, formal)

    if formal_refuted(official) or formal_refuted(check):
        return verdict(False, "refuted by the formal level: " + text)
    if check.status is Status.INFRA_ERROR and check.log.startswith("formal level:"):
        # The co-simulation passed and only a formal tool failed: as for an undecided proof, the
        # co-simulation's verdict stands.
        return verdict(True, "co-simulation passes; " + text)
    if check.status is Status.INFRA_ERROR:
        # The reference (or the host) cannot co-simulate: the official verdict stands, marked.
        return verdict(True, "no usable reference: " + text, BASIS_OFFICIAL)
    if check.passed:
        return verdict(True, "")
    return verdict(
        False, "passes the official bench but not the co-simulation against the reference: " + text
    )


def strict_verdicts(
    items: Sequence[tuple[Task, str]],
    official: Sequence[RewardResult],
    config: RewardConfig,
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[StrictVerdict]:
    """Strict verdicts for ``items`` (task, text as graded) given their official ``RewardResult``s.

    Only official passes are co-simulated (a strict pass needs the official one); the others are
    strict fails without further work. ``config`` is the grading config (PPA off).
    """
    todo = [i for i, result in enumerate(official) if official_passed(result)]
    checks = score_batch(
        [(reference_task(items[i][0]), items[i][1]) for i in todo], config, jobs=jobs, progress=progress
    )
    verdicts = [StrictVerdict(False) for _ in items]
    for index, check in zip(todo, checks, strict=True):
        verdicts[index] = _verdict(official[index], check)
    return verdicts
