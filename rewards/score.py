"""Score completions: format → guard → syntax/interface → function → PPA, each level gating the next.

``score(task, completion, config)`` returns one :class:`RewardResult`; :mod:`rewards.engine` scores many
concurrently (tools are subprocesses, so threads suffice) and evaluates identical
(task, code) pairs once. Infrastructure failures come back as ``INFRA_ERROR`` with ``reward=None``.

A candidate's failure at a tool level (lint, function, PPA) counts only if the golden design passes
that level in the same environment (:meth:`rewards.health.HealthMonitor.attribute`); otherwise the
result is ``INFRA_ERROR`` and the process's :data:`rewards.health.HEALTH` turns unhealthy.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rewards import batch, cosim, guard, health, interface, lint, ppa, testbench
from rewards.cache import normalise_layout
from rewards.config import RewardConfig
from rewards.extract import Extraction, extract_verilog
from rewards.formal import check_equivalence
from rewards.sandbox import Limits, SandboxError
from rewards.sim import SimOutcome
from rewards.tools import TOOLS, ToolNotFound, liberty_path, tool_versions
from rewards.types import RewardResult, Status, Task

log = logging.getLogger(__name__)

# A golden that cannot be read is a broken task, not a wrong answer.
_INFRA_EXCEPTIONS = (ToolNotFound, SandboxError, OSError, interface.InterfaceError)


@functools.lru_cache(maxsize=16)
def _versions_for(_where: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(tool_versions().items())


def cached_tool_versions() -> dict[str, str]:
    """:func:`rewards.tools.tool_versions`, looked up once per tool environment (``$PATH``, overrides)."""
    where = (os.environ.get("PATH", ""), *(os.environ.get(t.env_var, "") for t in TOOLS.values()))
    return dict(_versions_for(where))


def limits_for(config: RewardConfig, cpu_s: float) -> Limits:
    """Sandbox limits for one tool call with a CPU budget of ``cpu_s`` seconds."""
    return Limits(
        cpu_s=cpu_s,
        wall_s=cpu_s * config.wall_factor + 2.0,
        memory_mb=config.memory_mb,
        max_procs=config.max_procs,
        max_output_bytes=config.max_output_bytes,
        max_file_mb=config.max_file_mb,
        tmp_mb=config.tmp_mb,
    )


def normalise_code(code: str) -> str:
    """Layout-insensitive form of extracted code (indentation and trailing blanks dropped, lines kept)."""
    return normalise_layout(code)


def _levels(fmt: float = 0.0, syntax: float = 0.0, function: float = 0.0, ppa_level: float = 0.0) -> dict:
    return {"format": fmt, "syntax": syntax, "function": function, "ppa": ppa_level}


def _total(config: RewardConfig, levels: dict[str, float]) -> float:
    return round(
        config.w_format * levels["format"]
        + config.w_syntax * levels["syntax"]
        + config.w_function * levels["function"]
        + config.w_ppa * levels["ppa"],
        6,
    )


def _result(
    task: Task,
    config: RewardConfig,
    status: Status,
    levels: dict,
    log_text: str = "",
    metrics: dict | None = None,
    reward: float | None = None,
) -> RewardResult:
    total = _total(config, levels) if reward is None else reward
    return RewardResult(
        task_id=task.id,
        status=status,
        passed=status is Status.OK,
        reward=total,
        levels=levels,
        metrics=metrics or {},
        log=log_text[-2000:],
    )


class _Stopwatch:
    """Accumulates seconds per stage into a caller's dict (for benchmarks and server histograms)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        if self.sink is not None:
            self.sink[stage] = self.sink.get(stage, 0.0) + now - self.last
        self.last = now

    def split(self, first: str, second: str, share: float) -> None:
        """Book the time since the last lap to two stages, ``share`` of it to ``first``."""
        now = time.perf_counter()
        if self.sink is not None:
            elapsed = now - self.last
            self.sink[first] = self.sink.get(first, 0.0) + elapsed * share
            self.sink[second] = self.sink.get(second, 0.0) + elapsed * (1 - share)
        self.last = now


def _interface(task: Task, code: str) -> tuple[str | None, interface.InterfaceError | None]:
    """The interface check's mismatch message, or the error a broken golden raised (kept for later)."""
    try:
        return interface.check_interface(task, code), None
    except interface.InterfaceError as exc:
        return None, exc


def extract(task: Task, completion: str, config: RewardConfig) -> Extraction | None:
    """The completion's Verilog as the scorer reads it, or ``None`` when it is rejected before
    extraction (empty, longer than ``max_completion_chars``). Done once per item: the engine keys
    the cache with it and hands it to :func:`score`."""
    if not isinstance(completion, str) or not completion.strip():
        return None
    if len(completion) > config.max_completion_chars:
        return None
    return extract_verilog(completion, task.top_module, header=task.interface)


def score(
    task: Task,
    completion: str,
    config: RewardConfig | None = None,
    timings: dict[str, float] | None = None,
    extraction: Extraction | None = None,
) -> RewardResult:
    """Score one completion against ``task``. Never raises for candidate or tool failures.

    ``timings``, when given, receives seconds spent per stage (format, guard, syntax, function, ppa).
    ``extraction`` is :func:`extract` of this completion when the caller already has it.
    """
    config = config or RewardConfig()
    return _guarded(task, config, _score, task, completion, config, _Stopwatch(timings), extraction)


def _guarded(task: Task, config: RewardConfig, step: Callable[..., RewardResult], *args) -> RewardResult:
    """``step(*args)``, with a host or broken-golden failure turned into INFRA_ERROR."""
    try:
        return step(*args)
    except _INFRA_EXCEPTIONS as exc:
        log.warning("infrastructure failure scoring %s: %s", task.id, exc)
        if not isinstance(exc, interface.InterfaceError):  # that one is the task's, not the host's
            health.HEALTH.check(canary_for(config), suspect=True)
        return RewardResult.infra_error(task.id, f"{type(exc).__name__}: {exc}")


def score_many(
    items: Sequence[tuple[Task, str, Extraction | None]],
    config: RewardConfig,
    timings: Sequence[dict[str, float]] | None = None,
) -> list[RewardResult]:
    """:func:`score` of every ``(task, completion, extraction)``: the candidates that may share tool
    processes are linted a batch at a time and, when co-simulated, simulated a batch at a time
    (:mod:`rewards.batch`). Same results as one at a time."""
    sinks = list(timings) if timings is not None else [{} for _ in items]
    results: list[RewardResult | None] = [None] * len(items)
    batched: list[tuple[int, Screened, _Stopwatch]] = []
    for index, (task, completion, extraction) in enumerate(items):
        watch = _Stopwatch(sinks[index])
        screened = _guarded(task, config, screen, task, completion, config, watch, extraction)
        if isinstance(screened, RewardResult):
            results[index] = screened
        elif batch.batchable(screened.code, task.top_module):
            batched.append((index, screened, watch))
        else:
            results[index] = _guarded(task, config, judge_alone, screened, config, watch)
    if batched:
        start = time.perf_counter()
        try:
            outcomes = batch.lint_and_cosim_many(
                [(s.task, s.code, s.cosim) for _, s, _ in batched],
                config.cosim,
                lint_limits=limits_for(config, config.lint_cpu_s),
                limits=limits_for(config, config.sim_cpu_s),
                sandbox=config.sandbox,
            )
        except _INFRA_EXCEPTIONS:  # each on its own says which, as one at a time would
            outcomes = [None] * len(batched)
        share = (time.perf_counter() - start) / len(batched)
        for (index, screened, watch), linted in zip(batched, outcomes, strict=True):
            watch.last = time.perf_counter() - share  # an equal share of the batch's time each
            if linted is None:
                results[index] = _guarded(screened.task, config, judge_alone, screened, config, watch)
            else:
                results[index] = _guarded(screened.task, config, judge, screened, config, watch, linted)
    return [r for r in results if r is not None]


def judge_alone(screened: Screened, config: RewardConfig, watch: _Stopwatch) -> RewardResult:
    """:func:`judge` with the candidate's own lint (and co-simulation) job."""
    linted = None
    if screened.cosim:
        linted = cosim.run_lint_and_cosim(
            screened.task,
            screened.code,
            config.cosim,
            lint_limits=limits_for(config, config.lint_cpu_s),
            limits=limits_for(config, config.sim_cpu_s),
            sandbox=config.sandbox,
        )
    return judge(screened, config, watch, linted)


def canary_for(config: RewardConfig) -> Callable[[], health.Check]:
    """:func:`rewards.health.run_canary` under ``config``'s limits (PPA only when it is scored)."""
    with_ppa = config.ppa_enabled and config.w_ppa > 0
    limits = health.CanaryLimits(
        lint=limits_for(config, config.lint_cpu_s),
        sim=limits_for(config, config.sim_cpu_s),
        synth=limits_for(config, config.synth_cpu_s) if with_ppa else None,
        sta=limits_for(config, config.sta_cpu_s) if with_ppa else None,
    )
    return functools.partial(health.run_canary, limits, config.sandbox)


def _golden_check(task: Task, level: str, config: RewardConfig) -> health.Check:
    """Run ``task``'s golden design through ``level`` as if it were the candidate."""
    try:
        if level == "syntax":
            linted = lint.run_lint(
                task.reference,
                task.top_module,
                limits=limits_for(config, config.lint_cpu_s),
                sandbox=config.sandbox,
            )
            return health.Check(linted.ok, linted.log)
        if level == "function":
            outcome = _function_level(task, task.reference, config)
            return health.Check(outcome.status is Status.OK, f"{outcome.status.value}: {outcome.log}")
        figures = ppa.measure(
            task.reference,
            task.top_module,
            ppa.clock_port_of(task),
            liberty=liberty_path(),
            synth_limits=limits_for(config, config.synth_cpu_s),
            sta_limits=limits_for(config, config.sta_cpu_s),
            sandbox=config.sandbox,
        )
        return health.Check(figures.ok, figures.error)
    except _INFRA_EXCEPTIONS as exc:
        return health.Check(False, f"{type(exc).__name__}: {exc}")


def _attributed(
    task: Task, config: RewardConfig, level: str, result: RewardResult, note: str = ""
) -> RewardResult:
    """``result`` (a failure at ``level``, or a pass whose ``note`` says PPA failed) unless the
    golden design fails ``level`` here too or the canary fails: then INFRA_ERROR, saying why."""
    failure = note or result.log
    reason = health.HEALTH.attribute(
        f"{task.content_hash()}:{config.content_hash()}",
        level,
        functools.partial(_golden_check, task, level, config),
        canary_for(config),
        health.environment_message(failure),
    )
    if reason is None:
        return result
    log.warning("%s result of %s voided, the host is at fault: %s", result.status.value, task.id, reason)
    return RewardResult.infra_error(
        task.id, f"{reason}. Not the candidate's verdict (it got {result.status.value}: {failure[:300]})"
    )


@dataclass
class Screened:
    """A candidate that passed format and guard: what the tool levels need.

    ``mismatch`` is the interface check's message (``None`` when the ports agree); ``broken`` the
    error a broken golden raised, kept until the lint has had its say.
    """

    task: Task
    code: str
    mismatch: str | None
    broken: interface.InterfaceError | None

    @property
    def cosim(self) -> bool:
        """Linted and co-simulated in one go (no test bench, ports agree, golden readable)."""
        return not self.task.testbench and self.mismatch is None and self.broken is None


def screen(
    task: Task, completion: str, config: RewardConfig, watch: _Stopwatch, extraction: Extraction | None
) -> RewardResult | Screened:
    """The in-process levels (format, guard, interface read): a final result, or what the tools get."""
    if not isinstance(completion, str) or not completion.strip():
        return _result(
            task, config, Status.FORMAT_ERROR, _levels(), "empty completion: the model produced no text"
        )
    if len(completion) > config.max_completion_chars:
        return _result(
            task,
            config,
            Status.RESOURCE_LIMIT,
            _levels(),
            f"completion has {len(completion)} characters, over max_completion_chars="
            f"{config.max_completion_chars}",
            reward=0.0,
        )
    if extraction is None:
        extraction = extract_verilog(completion, task.top_module, header=task.interface)
    watch.lap("format")
    if extraction.code is None:
        return _result(task, config, Status.FORMAT_ERROR, _levels(), extraction.error)
    code = extraction.code
    reserved = guard.reserved_names(task)
    violations = guard.check_candidate(code, reserved)
    watch.lap("guard")
    if violations:
        return _result(task, config, Status.FORBIDDEN, _levels(fmt=1.0), "; ".join(violations), reward=0.0)
    # The interface is read first (in-process) so that a co-simulated candidate can be linted and
    # simulated in one sandbox job; the verdict order stays lint, interface, function.
    mismatch, broken = _interface(task, code)
    return Screened(task, code, mismatch, broken)


def _score(
    task: Task, completion: str, config: RewardConfig, watch: _Stopwatch, extraction: Extraction | None
) -> RewardResult:
    screened = screen(task, completion, config, watch, extraction)
    if isinstance(screened, RewardResult):
        return screened
    return judge_alone(screened, config, watch)


def judge(
    screened: Screened, config: RewardConfig, watch: _Stopwatch, linted: cosim.LintedOutcome | None
) -> RewardResult:
    """The tool levels of a screened candidate. ``linted`` is its lint and co-simulation when they
    already ran (one job, or a batch: :mod:`rewards.batch`); otherwise the lint runs here."""
    task, code, mismatch, broken = screened.task, screened.code, screened.mismatch, screened.broken
    if linted is not None:
        lint_result = linted.lint
    else:
        lint_limits = limits_for(config, config.lint_cpu_s)
        lint_result = lint.run_lint(code, task.top_module, limits=lint_limits, sandbox=config.sandbox)
    metrics: dict = {"lint_warnings": lint_result.warning_count}
    if not lint_result.ok:
        watch.lap("syntax")
        status = Status.RESOURCE_LIMIT if lint_result.timed_out else Status.SYNTAX_ERROR
        failed = _result(task, config, status, _levels(fmt=1.0), lint_result.log, metrics)
        return _attributed(task, config, "syntax", failed)
    if broken is not None:
        raise broken
    if linted is not None and linted.outcome is not None:
        watch.split("syntax", "function", linted.lint_share)
        outcome = linted.outcome
    else:
        watch.lap("syntax")
        if mismatch:
            return _result(task, config, Status.INTERFACE_MISMATCH, _levels(fmt=1.0), mismatch, metrics)
        outcome = _testbench_level(task, code, config)
        watch.lap("function")
    metrics.update(outcome.metrics)
    metrics["vectors"] = outcome.total
    metrics["matched"] = outcome.matched
    if outcome.status is Status.INFRA_ERROR:
        health.HEALTH.check(canary_for(config), suspect=True)
        return RewardResult.infra_error(task.id, outcome.log)
    if outcome.status is not Status.OK:
        fraction = outcome.matched / outcome.total if outcome.total else 0.0
        credit = config.partial_credit * fraction if outcome.status is Status.SIM_MISMATCH else 0.0
        failed = _result(task, config, outcome.status, _levels(1.0, 1.0, credit), outcome.log, metrics)
        return failed if outcome.status is Status.FORBIDDEN else _attributed(task, config, "function", failed)

    if config.formal != "off":
        refuted = _formal_level(task, code, config, metrics)
        watch.lap("formal")
        if refuted is not None:
            return refuted

    ppa_level = 0.0
    if config.ppa_enabled and config.w_ppa > 0:
        ppa_level, ppa_metrics, ppa_log = ppa.score_ppa(
            task,
            code,
            metric=config.ppa_metric,
            max_gain=config.ppa_max_gain,
            synth_limits=limits_for(config, config.synth_cpu_s),
            sta_limits=limits_for(config, config.sta_cpu_s),
            sandbox=config.sandbox,
        )
        watch.lap("ppa")
        metrics.update(ppa_metrics)
        if ppa_log:
            metrics["ppa_note"] = ppa_log[-300:]
    metrics["tools"] = cached_tool_versions()
    passed = _result(task, config, Status.OK, _levels(1.0, 1.0, 1.0, ppa_level), "", metrics)
    note = metrics.get("ppa_note", "")
    return _attributed(task, config, "ppa", passed, note) if note else passed


def _function_level(task: Task, code: str, config: RewardConfig) -> SimOutcome:
    """The function level on its own: the task's test bench, or co-simulation against the golden."""
    if task.testbench:
        return _testbench_level(task, code, config)
    return cosim.run_cosim(
        task, code, config.cosim, limits=limits_for(config, config.sim_cpu_s), sandbox=config.sandbox
    )


def _testbench_level(task: Task, code: str, config: RewardConfig) -> SimOutcome:
    """The task's own test bench, then (``testbench_cosim``) a co-simulation against the golden.

    A test bench only checks what its author thought of (RTLLM's edge_detect bench accepts constant
    outputs): with ``testbench_cosim`` a design that passes the bench must also match the golden
    cycle by cycle. A golden the co-simulation cannot drive (INFRA_ERROR there) leaves the bench's
    verdict standing.
    """
    sim_limits = limits_for(config, config.sim_cpu_s)
    outcome = testbench.run_testbench(task, code, limits=sim_limits, sandbox=config.sandbox)
    if outcome.status is not Status.OK or not config.testbench_cosim:
        return outcome
    check = cosim.run_cosim(task, code, config.cosim, limits=sim_limits, sandbox=config.sandbox)
    if check.status in (Status.OK, Status.INFRA_ERROR):
        return outcome
    log_text = f"passes the task's test bench but not the co-simulation against the golden: {check.log}"
    return SimOutcome(
        check.status, check.matched, check.total, log_text, {**outcome.metrics, **check.metrics}
    )


def _formal_level(task: Task, code: str, config: RewardConfig, metrics: dict) -> RewardResult | None:
    """The formal level after a co-simulation pass (:mod:`rewards.formal`); adds ``metrics["formal"]``.

    Returns the failing result when a counterexample was confirmed in simulation (SIM_MISMATCH, with
    the graded credit of a design that matched every sampled vector), an INFRA_ERROR when a formal
    tool crashed, and ``None`` (the co-simulation verdict stands) for proved, bounded or unknown.
    """
    found = check_equivalence(
        task,
        code,
        cpu_s=config.formal_cpu_s,
        depth=config.formal_depth,
        soak_cycles=config.formal_soak_cycles,
        reset_cycles=config.reset_cycles,
        limits=limits_for(config, config.sim_cpu_s),
        sandbox=config.sandbox,
    )
    metrics.update(found.metrics())
    if found.verdict == "infra":
        return RewardResult.infra_error(task.id, f"formal level: {found.reason}")
    if found.verdict != "counterexample":
        return None
    levels = _levels(1.0, 1.0, config.partial_credit)
    return _result(task, config, Status.SIM_MISMATCH, levels, found.log, metrics)


def default_jobs() -> int:
    """Concurrent scoring jobs: one per core (the tools are single-threaded and CPU-bound)."""
    return max(1, len(os.sched_getaffinity(0)))
