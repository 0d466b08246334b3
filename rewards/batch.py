"""Many candidates per tool process: one Verilator lint and one Icarus simulation for a whole batch.

Scoring one small design costs a few milliseconds of tool work and tens of milliseconds of process
and sandbox start-up (Verilator, Icarus, vvp, bubblewrap). :func:`lint_and_cosim_many` pays that
start-up once per batch: one sandboxed Verilator run lints every candidate (each module its own
top), one sandboxed Icarus compile + ``vvp`` run simulates every candidate that passed, each in its
own harness with its own stimulus file, trace file and secrets. Results equal one-at-a-time scoring
(:func:`rewards.cosim.run_lint_and_cosim`); ``tests/test_batch.py`` checks it on the attack suites.

Why a batch cannot change a verdict:

* **Only candidates that cannot reach each other are batched** (:func:`batchable`): exactly one
  module (the task's top, renamed ``<top>_rtlfb<nonce>``: no name can collide), no compiler
  directive (a `` `define``, `` `default_nettype`` or `` `timescale`` would carry into the next file),
  no escaped identifier, no tool pragma in a comment (``verilator lint_off`` …), and no system task
  or function but ``$signed``, ``$unsigned``, ``$clog2`` and ``$bits`` (``$random`` shares one
  generator per simulation; file and run-ending tasks are the guard's to refuse). The guard already
  refuses hierarchical references, so no candidate can name another's signals. Everything else is
  scored one at a time, unchanged.
* **Lint**: Verilator reports each message with its file, so each candidate gets exactly its own
  messages. A candidate with an error of its own fails the syntax level (the same errors it gets
  alone: nothing else is in its namespace). When any candidate failed, Verilator may have stopped
  before elaborating the rest, so the candidates without an error of their own are linted again
  (as a smaller batch). A run stopped by a limit, or an error without a file, is split in four parts.
* **Simulation**: each harness writes its own trace under its own secret and raises a done flag;
  one trusted module ends the run when every flag is up. Harnesses and candidates share one source
  file (a sandbox file costs a create on the host's disk): only lint-clean candidates get there, so
  each closes its comments, strings and module, and none carries a directive into the next; a
  compile that fails anyway is split like any other failed run. The batch runs under the *smallest* of its
  candidates' limits, so a candidate that would hit its limit alone stops the batch too. A
  candidate's complete, valid trace is its verdict even when a neighbour later stopped the run (it
  was written before anything else happened to the run). Every candidate without one (a compile
  error, a limit hit first) is re-run: in a smaller batch, or, when no candidate of the batch got a
  trace, in four parts (one candidate each from :data:`LOOP_BATCH` candidates down), down to single
  candidates, which are scored alone. A hang or a bomb costs its neighbours a re-run, never a
  verdict.
* A single candidate is always scored by the one-at-a-time path.

Batches are cut so the candidates' golden simulation time stays a small fraction of the batch's
limit (big designs run alone or in small batches), at most ``max_size`` candidates each. Candidates
with loops (the likeliest to hang) share batches only with each other, at most :data:`LOOP_BATCH`.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rewards import lint as lint_mod
from rewards.config import CosimSettings
from rewards.cosim import (
    GoldenError,
    GoldenTrace,
    LintedOutcome,
    TraceError,
    golden_trace,
    harness_source,
    judge_trace,
    run_cosim,
    run_lint_and_cosim,
)
from rewards.interface import InterfaceError
from rewards.lint import LintMessage, LintResult
from rewards.sandbox import Job, Limits, run_job
from rewards.sim import COMPILE_FAILED_RC, SimOutcome, candidate_limits, new_nonce
from rewards.sim import _script as sim_script
from rewards.tools import IVERILOG, VVP
from rewards.types import Task

log = logging.getLogger(__name__)

__all__ = ["batchable", "looped", "lint_and_cosim_many", "LOOP_BATCH", "MAX_BATCH"]

MAX_BATCH = 64
"""Most candidates per tool process."""

ALONE_GOLDEN_S = 0.5
"""A candidate whose golden's simulation job took longer than this (CPU seconds) runs alone."""

_BATCH_GOLDEN_S = 4.0
"""A batch's goldens' jobs together took at most this long (a failed batch is re-run in parts)."""

_BATCH_LINT_CPU_S = 2.0
"""CPU limit of a batch's lint (never more than one candidate's own); Verilator needs milliseconds."""

_SPLIT = 4
"""A batch that does not end cleanly is re-run in this many parts (single candidates alone)."""

LOOP_BATCH = 8
"""Most candidates with loops (``for``, ``while``, ``repeat``, ``forever``) per batch; they share
batches only with each other. A loop that never ends stops its whole batch at the batch's CPU limit;
a simulation of at most this many candidates that decides none of them is re-run one candidate at a
time (no further splits), so a hang costs its few neighbours one re-run each, and they are
candidates that could hang too."""

_ALLOWED_SYSTEM = frozenset({"$signed", "$unsigned", "$clog2", "$bits"})
_BLOCKERS = re.compile(r"[`\\]|verilator|synopsys|synthesis|pragma|translate_|lint_o|coverage_o", re.I)
_UNIT_KEYWORDS = re.compile(
    r"\b(module|macromodule|primitive|interface|package|program|class|config|checker|bind|library)\b"
)
_LOOP = re.compile(r"\b(for|while|repeat|forever)\b")
_SYSTEM_NAME = re.compile(r"\$[A-Za-z0-9_$]+")
_COMMENT_OR_STRING = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"', re.S)


def _masked(code: str) -> str:
    """``code`` with comments and strings blanked (newlines kept, so positions stay)."""
    return _COMMENT_OR_STRING.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), code)


@functools.lru_cache(maxsize=4096)  # asked by the engine, the scorer and the renamer for each candidate
def _top_declaration(code: str, top: str) -> re.Match | None:
    """Where ``module <top>`` is declared, when the candidate is one module that never names itself
    again and uses nothing that could reach another candidate in the same tool run."""
    if _BLOCKERS.search(code):
        return None
    masked = _masked(code)
    if [m.group(1) for m in _UNIT_KEYWORDS.finditer(masked)] != ["module"]:
        return None
    if any(name not in _ALLOWED_SYSTEM for name in _SYSTEM_NAME.findall(masked)):
        return None
    if len(re.findall(rf"(?<![\w$]){re.escape(top)}(?![\w$])", masked)) != 1:
        return None
    return re.search(rf"\bmodule\s+({re.escape(top)})(?![\w$])", masked)


@functools.lru_cache(maxsize=4096)
def looped(code: str) -> bool:
    """Whether ``code`` has a loop: the likeliest way to hang a simulation (see :data:`LOOP_BATCH`)."""
    return _LOOP.search(_masked(code)) is not None


def batchable(code: str, top: str) -> bool:
    """Whether ``code`` may share a tool process with other candidates (see the module docstring)."""
    return _top_declaration(code, top) is not None


@dataclass
class _Entry:
    """One candidate as a batch holds it."""

    index: int
    task: Task
    code: str  # as written
    renamed: str  # top module renamed to ``top``
    top: str
    golden: GoldenTrace | None  # None: linted only (no co-simulation asked for)
    sim_limits: Limits | None
    looped: bool = False  # batched only with other candidates that have loops

    @property
    def cost_s(self) -> float:
        return self.golden.cpu_s if self.golden is not None else 0.0


def _rename(code: str, top: str, nonce: str) -> tuple[str, str]:
    found = _top_declaration(code, top)
    assert found is not None, "only batchable candidates are renamed"
    new_top = f"{top}_rtlfb{nonce}"
    return code[: found.start(1)] + new_top + code[found.end(1) :], new_top


def lint_and_cosim_many(
    items: Sequence[tuple[Task, str, bool]],
    settings: CosimSettings,
    *,
    lint_limits: Limits,
    limits: Limits,
    sandbox: bool = True,
    max_size: int = MAX_BATCH,
) -> list[LintedOutcome]:
    """:func:`rewards.cosim.run_lint_and_cosim` of every ``(task, code, cosim)`` (codes
    :func:`batchable`) a batch per tool process; same results, in order. With ``cosim`` false the
    candidate is only linted (its outcome is ``None``), as :func:`rewards.lint.run_lint` would.

    Raises:
        ToolNotFound, SandboxError: a tool or the sandbox is missing (infrastructure).
    """
    results: list[LintedOutcome | None] = [None] * len(items)
    entries: list[_Entry] = []
    for index, (task, code, cosim) in enumerate(items):
        golden = sim_limits = None
        if cosim:
            try:
                golden = golden_trace(task, settings, limits=limits, sandbox=sandbox)
            except (GoldenError, InterfaceError):
                golden = None
            if golden is None:
                results[index] = run_lint_and_cosim(
                    task, code, settings, lint_limits=lint_limits, limits=limits, sandbox=sandbox
                )
                continue
            sim_limits = candidate_limits(limits, golden.cpu_s)
        renamed, top = _rename(code, task.top_module, new_nonce(6))
        entries.append(_Entry(index, task, code, renamed, top, golden, sim_limits, looped(code)))
    for group in _groups(entries, max_size):
        run = _Run(settings, lint_limits, limits, sandbox)
        for entry, outcome in zip(group, run.lint_and_cosim(group), strict=True):
            results[entry.index] = outcome
    return [r for r in results if r is not None]


def _groups(entries: list[_Entry], max_size: int) -> list[list[_Entry]]:
    """Batches of ``entries``: costly ones alone; those with loops among themselves, a few at a time."""
    alone = [[entry] for entry in entries if entry.cost_s > ALONE_GOLDEN_S]
    rest = [entry for entry in entries if entry.cost_s <= ALONE_GOLDEN_S]
    return (
        alone
        + _packed([e for e in rest if not e.looped], max_size)
        + _packed([e for e in rest if e.looped], min(max_size, LOOP_BATCH))
    )


def _packed(entries: list[_Entry], max_size: int) -> list[list[_Entry]]:
    groups: list[list[_Entry]] = []
    current: list[_Entry] = []
    golden_s = 0.0
    for entry in sorted(entries, key=lambda e: e.cost_s):
        if current and (len(current) >= max_size or golden_s + entry.cost_s > _BATCH_GOLDEN_S):
            groups.append(current)
            current, golden_s = [], 0.0
        current.append(entry)
        golden_s += entry.cost_s
    return groups + ([current] if current else [])


def _parts(entries: list[_Entry]) -> list[list[_Entry]]:
    size = -(-len(entries) // _SPLIT)
    return [entries[i : i + size] for i in range(0, len(entries), size)]


class _Run:
    """Lints then simulates one batch, bisecting what a batch cannot decide."""

    def __init__(self, settings: CosimSettings, lint_limits: Limits, limits: Limits, sandbox: bool) -> None:
        self.settings = settings
        self.lint_limits = lint_limits
        self.limits = limits
        self.sandbox = sandbox
        self.lint_s = 0.0
        self.sim_s = 0.0

    def lint_and_cosim(self, group: list[_Entry]) -> list[LintedOutcome]:
        if len(group) == 1 and group[0].golden is not None:
            entry = group[0]
            return [
                run_lint_and_cosim(
                    entry.task,
                    entry.code,
                    self.settings,
                    lint_limits=self.lint_limits,
                    limits=self.limits,
                    sandbox=self.sandbox,
                )
            ]
        lints = self.lint(group)
        passed = [e for e, checked in zip(group, lints, strict=True) if checked.ok and e.golden is not None]
        outcomes = dict(zip((e.index for e in passed), self.simulate(passed), strict=True)) if passed else {}
        total = self.lint_s + self.sim_s
        share = self.lint_s / total if total > 0 else 0.5
        return [
            LintedOutcome(checked, outcomes.get(entry.index), share if entry.index in outcomes else 1.0)
            for entry, checked in zip(group, lints, strict=True)
        ]

    # ------------------------------------------------------------------------------------ lint
    def lint(self, group: list[_Entry]) -> list[LintResult]:
        """Each candidate's lint result, from as few Verilator runs as it takes."""
        if len(group) == 1:
            entry = group[0]
            return [
                lint_mod.run_lint(
                    entry.code, entry.task.top_module, limits=self.lint_limits, sandbox=self.sandbox
                )
            ]
        decided = self._lint_once(group)
        if decided is None:
            return [result for part in _parts(group) for result in self.lint(part)]
        open_ = [entry for entry, result in zip(group, decided, strict=True) if result is None]
        if open_:
            if len(open_) == len(group):
                return [result for part in _parts(group) for result in self.lint(part)]
            again = iter(self.lint(open_))
            decided = [result if result is not None else next(again) for result in decided]
        return [r for r in decided if r is not None]

    def _lint_once(self, group: list[_Entry]) -> list[LintResult | None] | None:
        """One Verilator run over ``group``: a result per candidate (``None``: undecided), or
        ``None`` when the run as a whole says nothing (a limit stopped it, an error without a file)."""
        names = [f"c{n}.sv" for n in range(len(group))]
        limits = _smallest([self.lint_limits], _BATCH_LINT_CPU_S)
        job = lint_mod.lint_many_job(tuple(zip(names, [e.renamed for e in group], strict=True)), limits)
        start = time.perf_counter()
        result = run_job(job, sandbox=self.sandbox)
        self.lint_s += time.perf_counter() - start
        if lint_mod.stopped_by_limit(result, limits) or result.signal:
            return None
        messages = lint_mod.parse_messages(result.stderr + "\n" + result.stdout)
        by_file: dict[str, list[LintMessage]] = {name: [] for name in names}
        for message in messages:
            if message.file in by_file:
                by_file[message.file].append(message)
            elif message.severity == "error":
                return None
        decided: list[LintResult | None] = []
        for name, entry in zip(names, group, strict=True):
            own = [_restore(m, entry) for m in by_file[name]]
            errors = [m for m in own if m.severity == "error"]
            warnings = sum(1 for m in own if m.severity == "warning")
            if errors:
                text = "\n".join(m.format() for m in errors[:5])
                decided.append(LintResult(ok=False, messages=own, warning_count=warnings, log=text[-1500:]))
            elif result.returncode != 0:
                decided.append(None)  # Verilator may have stopped before elaborating it
            else:
                decided.append(LintResult(ok=True, messages=own, warning_count=warnings))
        return decided

    # ------------------------------------------------------------------------------ simulation
    def simulate(self, group: list[_Entry]) -> list[SimOutcome]:
        """Each (lint-clean) candidate's co-simulation outcome, bisecting failed runs."""
        if len(group) == 1:
            entry = group[0]
            return [
                run_cosim(entry.task, entry.code, self.settings, limits=self.limits, sandbox=self.sandbox)
            ]
        decided = self._simulate_once(group)
        open_ = [entry for entry, outcome in zip(group, decided, strict=True) if outcome is None]
        if len(open_) == len(group):  # nothing decided: a hang or a bomb is in there somewhere
            parts = _parts(group) if len(group) > LOOP_BATCH else [[entry] for entry in group]
            return [outcome for part in parts for outcome in self.simulate(part)]
        again = iter(self.simulate(open_)) if open_ else iter(())
        return [outcome if outcome is not None else next(again) for outcome in decided]

    def _simulate_once(self, group: list[_Entry]) -> list[SimOutcome | None]:
        """One compile + run over ``group``: each candidate's outcome, ``None`` where the run cannot
        say (no complete trace of its own; every candidate when the run did not compile)."""
        sources: list[str] = []  # one file: a sandbox file costs a create on the host's disk
        data: list[tuple[str, str]] = []
        tops: list[str] = []
        secrets: list[str] = []
        for n, entry in enumerate(group):
            names_nonce, secret = new_nonce(), new_nonce()
            stim = f"stim{n}.hex"
            harness = harness_source(
                entry.golden.plan, entry.top, names_nonce, secret, stim_file=stim, last=False
            )
            sources += [harness, entry.renamed]
            data.append((stim, entry.golden.stim_text))
            tops.append(f"rtlf_tb_{names_nonce}")
            secrets.append(secret)
        ender = f"rtlf_batch_{new_nonce()}"
        done = " && ".join(f"{top}.rtlf_done" for top in tops)
        sources.append(
            f"module {ender};\n  initial begin\n    wait ({done});\n    $finish;\n  end\nendmodule\n"
        )
        job = Job(
            argv=("/bin/sh", "-c", sim_script(["batch.sv"], [*tops, ender], IVERILOG.binary(), VVP.binary())),
            files=(("batch.sv", "\n".join(sources)), *data),
            limits=_smallest([entry.sim_limits for entry in group], 1.0 + sum(e.golden.cpu_s for e in group)),
            outputs=tuple(f"trace_{secret}.txt" for secret in secrets),
            ro_binds=tuple(sorted(set(IVERILOG.ro_binds()) | set(VVP.ro_binds()))),
        )
        start = time.perf_counter()
        result = run_job(job, sandbox=self.sandbox)
        self.sim_s += time.perf_counter() - start
        if result.returncode == COMPILE_FAILED_RC and not result.timed_out:
            return [None] * len(group)
        # A complete trace was written before anything stopped the run: the candidate's verdict is in
        # it, whatever a neighbour did later. Without one, the candidate's own run decides.
        decided: list[SimOutcome | None] = []
        for entry, secret in zip(group, secrets, strict=True):
            name = f"trace_{secret}.txt"
            try:
                decided.append(judge_trace(entry.golden, result.outputs.get(name), secret))
            except TraceError:
                decided.append(None)
        return decided


def _smallest(limits: list[Limits], cpu_cap: float | None = None) -> Limits:
    """Every limit at its smallest over ``limits`` (a batch must stop where any member would)."""
    first = limits[0]
    cpu = min(item.cpu_s for item in limits)
    return replace(
        first,
        cpu_s=cpu if cpu_cap is None else min(cpu, cpu_cap),
        wall_s=min(item.wall_s for item in limits),
        memory_mb=min(item.memory_mb for item in limits),
        max_output_bytes=min(item.max_output_bytes for item in limits),
    )


def _restore(message: LintMessage, entry: _Entry) -> LintMessage:
    """A batch's message as the candidate's own run would word it (its file, its module's name)."""
    return replace(
        message, file=lint_mod.SOURCE_NAME, text=message.text.replace(entry.top, entry.task.top_module)
    )
