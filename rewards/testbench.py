"""Run a task's own test bench against a candidate; the verdict comes from the test bench alone.

Tasks that carry a test bench (VerilogEval's ``test.sv`` with ``RefModule`` appended, RTLLM's
``testbench.v``) are graded by that bench, hardened so that only the bench can speak:

* **Tagged output.** Before each run the trusted bench is rewritten: every ``$display``/``$write``/
  ``$strobe``/``$monitor`` call prints between ``<SECRET:kind>`` and ``</SECRET>`` tags, with a fresh
  secret per run that exists only in string literals of trusted code (and the compiled program,
  which the job deletes before the simulation starts). Only tagged text is parsed; whatever the
  candidate prints is ignored.
* **Hidden names.** Every module, instance, task, function and named block declared by the bench
  gets a per-run suffix, so the candidate can neither read nor force the reference's outputs or
  the bench's counters through (upward) hierarchical names, nor call the bench's tasks, nor replace
  its modules by defining modules of the same name.
* **Reached its end.** The bench's ``$finish``/``$stop`` calls go through a task of a hidden monitor
  module that prints a tag first, and the monitor's ``final`` block prints the end time. A run
  passes only if it ended the way the golden run did (through the bench's own ``$finish``, or,
  for benches that end by running out of events, at the same time), so a candidate that ends the
  simulation early fails.
* **Compared with the golden run.** The same bench is run once with the golden design (cached per
  task content). For ``Mismatches: N in M samples`` benches (VerilogEval) a candidate passes iff it
  reports ``N == 0`` with the golden's ``M`` and the bench did not print ``TIMEOUT`` (as the
  official grader); graded credit is ``(M - N) / M``. For other benches
  (RTLLM) it passes iff its verdict lines (those naming pass/fail/error) equal the golden run's
  and say "pass" without "fail"/"error"; ``K / T failures`` lines give graded credit.

Data files a bench opens by relative path (RTLLM's ``$readmemh("reference.dat")``) come from
``task.meta["files"]`` (``{file name: text}``) and are written next to the bench.

Only Icarus features are relied on; what remains open without the static guard (a candidate that
reads ``/proc/self/mem`` with ``$fopen``) is closed by the guard rejecting file I/O system tasks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rewards.interface import InterfaceError, parse_ports
from rewards.sandbox import Limits
from rewards.sim import (
    LruCache,
    SimOutcome,
    candidate_limits,
    compile_log,
    failure_status,
    new_nonce,
    simulate,
)
from rewards.types import Status, Task

log = logging.getLogger(__name__)

__all__ = ["SimOutcome", "run_testbench", "rewrite_testbench", "parse_tagged", "GOLDEN_CACHE"]

TESTBENCH_VERSION = 1
"""Bump when the rewriting or the verdict rules change, so cached golden runs are recomputed."""

GOLDEN_CACHE = LruCache(size=512)

_TOKEN = re.compile(
    r"(?P<comment>//[^\n]*|/\*.*?\*/)"
    r'|(?P<string>"(?:\\.|[^"\\\n])*")'
    r"|(?P<escaped>\\\S+)"
    r"|(?P<ident>[`$]?[A-Za-z_][A-Za-z0-9_$]*)"
    r"|(?P<number>\d[\d_]*(?:\.\d+)?|\'[sS]?[bBoOdDhH]?[0-9a-fA-F_xXzZ?]*)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.S,
)
_PRINT_TASKS = {
    f"${base}{suffix}" for base in ("display", "write", "strobe", "monitor") for suffix in ("", "b", "o", "h")
}
_LINE_TASKS = {t for t in _PRINT_TASKS if not t.startswith("$write")}
_END_TASKS = {"$finish", "$stop"}
_DUMP_TASKS = {"$dumpfile", "$dumpvars", "$dumpon", "$dumpoff", "$dumpall", "$dumpflush", "$dumplimit"}
_KEYWORDS = {
    "module",
    "macromodule",
    "endmodule",
    "begin",
    "end",
    "fork",
    "join",
    "task",
    "function",
    "input",
    "output",
    "inout",
    "reg",
    "wire",
    "logic",
    "integer",
    "assign",
    "always",
    "initial",
    "if",
    "else",
    "for",
    "while",
    "repeat",
    "forever",
    "case",
    "endcase",
    "default",
    "automatic",
    "static",
    "signed",
    "unsigned",
    "bit",
    "int",
    "void",
    "real",
    "time",
    "genvar",
    "generate",
}
_BIDIRECTIONAL = {"inout", "tran", "tranif0", "tranif1", "rtran", "rtranif0", "rtranif1"}
_MISMATCHES = re.compile(r"Mismatches:\s*(\d+)\s+in\s+(\d+)\s+samples")
_FAILURES = re.compile(r"(\d+)\s*/\s*(\d+)\s*failures", re.I)
_VERDICT_WORDS = re.compile(r"pass|fail|error|mismatch", re.I)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str


def tokenize(source: str) -> list[Token]:
    """Split Verilog text into tokens; comments, strings and whitespace are kept as tokens."""
    return [Token(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(source)]


def _code_indices(tokens: Sequence[Token]) -> list[int]:
    return [i for i, t in enumerate(tokens) if t.kind not in ("comment", "space")]


def _skip_parens(tokens: Sequence[Token], code: Sequence[int], pos: int) -> int:
    """Index into ``code`` just past the parenthesised group starting at ``code[pos]`` (``(`` or ``#``)."""
    if tokens[code[pos]].text == "#":
        pos += 1
    depth = 0
    while pos < len(code):
        text = tokens[code[pos]].text
        depth += text == "("
        depth -= text == ")"
        pos += 1
        if depth == 0:
            break
    return pos


def declared_names(tokens: Sequence[Token], instantiable: set[str]) -> dict[str, set[str]]:
    """Modules, instances, tasks, functions and named blocks declared in ``tokens``."""
    code = _code_indices(tokens)
    text = [tokens[i].text for i in code]
    found: dict[str, set[str]] = {
        "module": set(),
        "instance": set(),
        "task": set(),
        "block": set(),
        "instantiated": set(),
    }
    for pos, word in enumerate(text[:-1]):
        if word in ("module", "macromodule") and tokens[code[pos + 1]].kind == "ident":
            found["module"].add(text[pos + 1])
        elif word in ("task", "function"):
            found["task"].add(_routine_name(text, pos))
        elif word in ("begin", "fork") and text[pos + 1] == ":" and pos + 2 < len(text):
            found["block"].add(text[pos + 2])
    modules = instantiable | found["module"]
    for pos, word in enumerate(text):
        if word not in modules or (pos and text[pos - 1] in ("module", "macromodule")):
            continue
        nxt = pos + 1
        if nxt < len(text) and text[nxt] == "#":
            nxt = _skip_parens(tokens, code, nxt)
        while nxt < len(text) and tokens[code[nxt]].kind == "ident":
            found["instance"].add(text[nxt])  # `mod a(...), b(...);`
            found["instantiated"].add(word)
            nxt += 1
            if nxt < len(text) and text[nxt] == "[":
                while nxt < len(text) and text[nxt] != "]":
                    nxt += 1
                nxt += 1
            if nxt >= len(text) or text[nxt] != "(":
                break
            nxt = _skip_parens(tokens, code, nxt)
            if nxt >= len(text) or text[nxt] != ",":
                break
            nxt += 1
    for names in found.values():
        names.discard("")
    return found


def _routine_name(text: Sequence[str], pos: int) -> str:
    """The name declared by ``task``/``function`` at ``pos``: the word before the first ``(`` or ``;``."""
    end = pos + 1
    while end < len(text) and text[end] not in ("(", ";"):
        end += 1
    return text[end - 1] if end - 1 > pos and end < len(text) else ""


def module_roots(tokens: Sequence[Token], instantiated: set[str]) -> list[str]:
    """Modules declared in ``tokens`` that no module there instantiates (the simulation roots)."""
    code = _code_indices(tokens)
    text = [tokens[i].text for i in code]
    declared = [text[p + 1] for p, w in enumerate(text[:-1]) if w in ("module", "macromodule")]
    return [name for name in declared if name not in instantiated]


def _print_call(tokens: list[Token], code: list[int], pos: int, secret: str) -> tuple[int, str]:
    """Rewrite the print call at ``code[pos]``; returns (code index after it, replacement text)."""
    name = tokens[code[pos]].text
    kind = "l" if name in _LINE_TASKS else "w"
    head, tail = f'"<{secret}:{kind}>"', f'"</{secret}>"'
    if pos + 1 < len(code) and tokens[code[pos + 1]].text == "(":
        end = _skip_parens(tokens, code, pos + 1)
        inner = "".join(t.text for t in tokens[code[pos + 1] + 1 : code[end - 1]])
        args = f"{head}, {inner}, {tail}" if inner.strip() else f"{head}, {tail}"
        return end, f"{name}({args})"
    return pos + 1, f"{name}({head}, {tail})"


def _monitor_call(tokens: list[Token], code: list[int], pos: int, call: str) -> tuple[int, str]:
    """Replace the system task call at ``code[pos]`` (and its arguments) by the statement ``call``."""
    end = pos + 1
    if end < len(code) and tokens[code[end]].text == "(":
        end = _skip_parens(tokens, code, end)
    return end, call


@dataclass(frozen=True)
class RewrittenBench:
    """A test bench ready to compile: its text, its root modules and the hidden monitor."""

    source: str
    monitor_source: str
    roots: tuple[str, ...]
    names_nonce: str
    secret: str


def rewrite_testbench(
    bench: str, *, top_module: str, keep: set[str], names_nonce: str, secret: str
) -> RewrittenBench:
    """Hide the bench's names behind ``names_nonce`` and tag its output with ``secret``.

    ``keep`` holds names that must not change (the candidate's port names); ``top_module`` is the
    design the bench instantiates and is never renamed.
    """
    tokens = tokenize(bench)
    found = declared_names(tokens, {top_module})
    instantiated = found.pop("instantiated")
    rename = set().union(*found.values()) - keep - {top_module} - _KEYWORDS
    suffix = f"_{names_nonce}"
    monitor = f"rtlf_mon_{names_nonce}"
    code = _code_indices(tokens)
    out: list[str] = []
    last = 0  # index into tokens of the next token not yet emitted
    pos = 0
    while pos < len(code):
        index = code[pos]
        token = tokens[index]
        replacement, after = None, pos + 1
        if token.kind == "ident" and token.text in _PRINT_TASKS:
            after, replacement = _print_call(tokens, code, pos, secret)
        elif token.kind == "ident" and token.text in _END_TASKS:
            after, replacement = _monitor_call(tokens, code, pos, f"{monitor}.rtlf_end")
        elif token.kind == "ident" and token.text in _DUMP_TASKS:  # waveforms cost time, nobody reads them
            after, replacement = _monitor_call(tokens, code, pos, f"{monitor}.rtlf_nop")
        elif token.kind == "ident" and token.text in rename and _renamable(tokens, code, pos, rename):
            replacement = token.text + suffix
        if replacement is not None:
            out.extend(t.text for t in tokens[last:index])
            out.append(replacement)
            last = code[after - 1] + 1
        pos = after
    out.extend(t.text for t in tokens[last:])
    roots = tuple(name + suffix if name in rename else name for name in module_roots(tokens, instantiated))
    monitor_source = (
        f"module {monitor};\n"
        f'  task rtlf_end; begin $display("<{secret}:f></{secret}>"); $finish; end endtask\n'
        "  task rtlf_nop; begin end endtask\n"
        f'  final $display("<{secret}:e>%0t</{secret}>", $time);\n'
        "endmodule\n"
    )
    return RewrittenBench("".join(out), monitor_source, roots + (monitor,), names_nonce, secret)


def _renamable(tokens: Sequence[Token], code: Sequence[int], pos: int, rename: set[str]) -> bool:
    """Not a ``.port`` name: a token after ``.`` is renamed only inside a path of renamed scopes."""
    if pos == 0 or tokens[code[pos - 1]].text != ".":
        return True
    return pos >= 2 and tokens[code[pos - 2]].text in rename


@dataclass
class BenchReport:
    """What one run of a rewritten bench said, from its tagged output only."""

    lines: list[str] = field(default_factory=list)
    finished: bool = False
    end_time: str | None = None


def parse_tagged(stdout: str, secret: str, names_nonce: str = "") -> BenchReport:
    """The bench's own output: text between ``<secret:kind>`` and ``</secret>`` (or the line end)."""
    report = BenchReport()
    opener = re.compile(rf"<{re.escape(secret)}:([lwfe])>")
    closer = f"</{secret}>"
    text = []
    matches = list(opener.finditer(stdout))
    for n, match in enumerate(matches):
        limit = matches[n + 1].start() if n + 1 < len(matches) else len(stdout)
        body_end = stdout.find(closer, match.end(), limit)
        if body_end < 0:
            newline = stdout.find("\n", match.end(), limit)
            body_end = newline if newline >= 0 else limit
        body = stdout[match.end() : body_end]
        kind = match.group(1)
        if kind == "f":
            report.finished = True
        elif kind == "e":
            report.end_time = body.strip()
        else:
            text.append(body + ("\n" if kind == "l" else ""))
    joined = "".join(text)
    if names_nonce:
        joined = joined.replace(f"_{names_nonce}", "")
    report.lines = joined.splitlines()
    return report


@dataclass(frozen=True)
class GoldenBench:
    """The golden design's run of the bench (what candidates are held to)."""

    report: BenchReport
    wall_s: float
    samples: int | None


class GoldenError(RuntimeError):
    """The bench cannot run with the golden design: the task (or the toolchain) is broken."""


def _port_names(task: Task) -> set[str]:
    try:
        return {p.name for p in parse_ports(task.reference, task.top_module)}
    except InterfaceError:
        return set()


def _run_bench(task: Task, design: str, trusted_design: bool, limits: Limits, sandbox: bool):
    names_nonce, secret = new_nonce(), new_nonce()
    bench = rewrite_testbench(
        task.testbench or "",
        top_module=task.top_module,
        keep=_port_names(task),
        names_nonce=names_nonce,
        secret=secret,
    )
    trusted = [(f"tb_{names_nonce}.sv", bench.source), (f"mon_{names_nonce}.sv", bench.monitor_source)]
    design_file = (f"design_{names_nonce}.sv" if trusted_design else "candidate.sv", design)
    files = sorted((task.meta.get("files") or {}).items())
    if trusted_design:
        trusted.append(design_file)
    run = simulate(
        trusted,
        None if trusted_design else design_file,
        bench.roots,
        limits=limits,
        sandbox=sandbox,
        data_files=files,
    )
    return run, parse_tagged(run.stdout, secret, names_nonce)


def _samples(lines: Sequence[str]) -> tuple[int, int] | None:
    for line in reversed(lines):
        match = _MISMATCHES.search(line)
        if match:
            return int(match.group(1)), int(match.group(2))
    return None


def _golden_key(task: Task) -> str:
    blob = json.dumps(
        {
            "v": TESTBENCH_VERSION,
            "tb": task.testbench,
            "ref": task.reference,
            "top": task.top_module,
            "files": task.meta.get("files") or {},
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def golden_bench(task: Task, *, limits: Limits, sandbox: bool) -> GoldenBench:
    """The golden's run of the task's bench (cached in-process). Raises :class:`GoldenError`."""

    def compute() -> GoldenBench:
        run, report = _run_bench(task, task.reference, True, limits, sandbox)
        where = f"task {task.id!r}"
        if not run.compiled:
            raise GoldenError(
                f"test bench does not compile with the golden design ({where}): "
                f"{compile_log(run.result)}. Fix the task's testbench or reference."
            )
        if failure_status(run.result) is not None or report.end_time is None:
            raise GoldenError(
                f"test bench did not run to its end with the golden design ({where}): "
                f"{run.result.tail(400)}. Fix the task or raise sim_cpu_s."
            )
        counts = _samples(report.lines)
        return GoldenBench(
            report=report,
            wall_s=max(run.result.wall_s, run.result.cpu_s),
            samples=counts[1] if counts else None,
        )

    return GOLDEN_CACHE.get_or_compute(_golden_key(task), compute, remember=(GoldenError,))


def _verdict_lines(lines: Sequence[str]) -> list[str]:
    return [" ".join(line.split()) for line in lines if _VERDICT_WORDS.search(line)]


def _says_pass(lines: Sequence[str]) -> bool:
    verdict = _verdict_lines(lines)
    return any(re.search(r"pass", v, re.I) for v in verdict) and not any(
        re.search(r"fail|error", v, re.I) for v in verdict
    )


def judge(golden: GoldenBench, report: BenchReport) -> SimOutcome:
    """The verdict on a candidate run, from its tagged output and the golden run's."""
    if report.end_time is None:
        return SimOutcome(Status.SIM_MISMATCH, 0, 1, "the test bench never reached its end")
    if golden.report.finished and not report.finished:
        return SimOutcome(
            Status.SIM_MISMATCH,
            0,
            1,
            f"the simulation ended at {report.end_time} without the test bench's $finish",
        )
    if not golden.report.finished and report.end_time != golden.report.end_time:
        return SimOutcome(
            Status.SIM_MISMATCH,
            0,
            1,
            f"the simulation ended at {report.end_time}, the test bench ends at {golden.report.end_time}",
        )
    tail = "\n".join(report.lines[-6:])
    if golden.samples is not None:
        counts = _samples(report.lines)
        if counts is None or counts[1] != golden.samples:
            seen = f"{counts[1]} samples" if counts else "no Mismatches line"
            return SimOutcome(
                Status.SIM_MISMATCH,
                0,
                golden.samples,
                f"test bench reported {seen}, expected {golden.samples} samples\n{tail}",
            )
        errors, samples = counts
        matched = max(0, samples - errors)
        if any(line.strip() == "TIMEOUT" for line in report.lines):
            # VerilogEval's bench prints TIMEOUT when its stimulus outlives its time budget; the
            # official grader fails such runs, whatever the mismatch count.
            return SimOutcome(Status.SIM_MISMATCH, matched, samples, f"the test bench timed out\n{tail}")
        status = Status.OK if errors == 0 else Status.SIM_MISMATCH
        return SimOutcome(status, matched, samples, "" if errors == 0 else tail)
    passed = _says_pass(report.lines) and _verdict_lines(report.lines) == _verdict_lines(golden.report.lines)
    if passed:
        return SimOutcome(Status.OK, 1, 1, "")
    failures = next((m for m in map(_FAILURES.search, reversed(report.lines)) if m), None)
    if failures and 0 < int(failures.group(2)) and int(failures.group(1)) <= int(failures.group(2)):
        total = int(failures.group(2))
        return SimOutcome(Status.SIM_MISMATCH, total - int(failures.group(1)), total, tail)
    return SimOutcome(Status.SIM_MISMATCH, 0, 1, tail or "the test bench printed no verdict")


def shared_net_hazard(task: Task, code: str) -> str | None:
    """Why ``code`` could drive the input nets it shares with the bench's reference, else ``None``.

    The bench connects the same nets to the reference and to the candidate; through an ``inout``
    port (Icarus joins a port connection like ``.io({a, b})`` both ways) or a bidirectional switch,
    the candidate could put x on them, and the reference's x outputs are then don't-care. Neither
    is needed when the golden design has no ``inout`` port, so then neither word may appear
    (macro bodies included).
    """
    try:
        golden_inout = any(p.direction == "inout" for p in parse_ports(task.reference, task.top_module))
    except InterfaceError:
        golden_inout = False
    if golden_inout:
        return None
    words = sorted({t.text for t in tokenize(code) if t.kind == "ident" and t.text in _BIDIRECTIONAL})
    if words:
        return (
            f"the design uses {', '.join(words)}, which could drive the input nets it shares with "
            "the test bench's reference; the specified module has no inout port, so use inputs, "
            "outputs and one-way gates only"
        )
    return None


def run_testbench(task: Task, code: str, *, limits: Limits, sandbox: bool = True) -> SimOutcome:
    """Grade ``code`` with ``task.testbench`` (see the module docstring).

    Returns OK, SIM_MISMATCH (graded when the bench counts samples), SYNTAX_ERROR (Icarus rejects
    the candidate with the bench), FORBIDDEN (see :func:`shared_net_hazard`), SIM_TIMEOUT,
    RESOURCE_LIMIT, or INFRA_ERROR (the bench does not run with the golden design).

    Raises:
        ToolNotFound, SandboxError: Icarus or the sandbox is missing (infrastructure).
    """
    if not task.testbench:
        return SimOutcome(Status.INFRA_ERROR, log=f"task {task.id!r} has no testbench; use run_cosim")
    try:
        golden = golden_bench(task, limits=limits, sandbox=sandbox)
    except GoldenError as exc:
        log.warning("golden run of %s failed: %s", task.id, exc)
        return SimOutcome(Status.INFRA_ERROR, log=str(exc))
    hazard = shared_net_hazard(task, code)
    if hazard:
        return SimOutcome(Status.FORBIDDEN, 0, golden.samples or 1, hazard)
    run, report = _run_bench(task, code, False, candidate_limits(limits, golden.wall_s), sandbox)
    metrics: dict = {}
    total = golden.samples or 1
    if not run.compiled:
        return SimOutcome(
            Status.SYNTAX_ERROR,
            0,
            total,
            f"Icarus rejects the design with the test bench: {compile_log(run.result)}",
            metrics,
        )
    limit_status = failure_status(run.result)
    if limit_status is not None:
        what = "ran out of time" if limit_status is Status.SIM_TIMEOUT else "hit a resource limit"
        return SimOutcome(limit_status, 0, total, f"simulation {what}: {run.result.tail(300)}", metrics)
    outcome = judge(golden, report)
    outcome.metrics.update(metrics)
    return outcome
