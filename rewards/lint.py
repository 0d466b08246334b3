"""Syntax level of the reward: Verilator ``--lint-only`` on the candidate, messages parsed into fields.

Flags and why:

* ``-Wno-fatal``: warnings (width mismatches, incomplete cases …) are counted, never a failure.
* ``--timing``: delays and event controls in ``initial`` blocks are legal Verilog; without a timing
  mode Verilator 5 rejects them (NEEDTIMINGOPT).
* ``-Wno-BLKANDNBLK``: blocking and non-blocking writes to different bits of one variable are legal
  (two VerilogEval goldens do it); Verilator only cannot *simulate* them, and simulation uses Icarus.
* An ANSI port redeclared in the body (``output [7:0] q`` then ``reg [7:0] q;``) is illegal in IEEE
  1800-2017 23.2.2.2 and a Verilator error, but Icarus and Yosys accept it, official benchmark
  graders use Icarus, and golden designs do it (RTLLM ``pe``): it is downgraded to a warning.
* ``verilator_bin`` is run directly, the way the ``verilator`` Perl wrapper runs it (``ulimit -s
  unlimited; exec verilator_bin …`` with the same arguments): the wrapper only adds ~100 ms of Perl
  start-up per call. The wrapper is used when no ``verilator_bin`` sits next to it.
* Messages Verilator marks *Unsupported* (e.g. tristate ``z`` assigned inside ``always``) say what
  Verilator cannot handle, not that the code is wrong: they are kept with severity ``unsupported``
  and do not fail the lint.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import signal
from dataclasses import dataclass, field

from rewards.sandbox import Job, JobResult, Limits, run_job
from rewards.tools import VERILATOR

log = logging.getLogger(__name__)

SOURCE_NAME = "candidate.sv"
_ANSI_REDECLARATION = "ANSI ports must have type declared with the I/O"
LINT_FLAGS = ("--lint-only", "-Wno-fatal", "--timing", "-Wno-BLKANDNBLK", "--error-limit", "50")

# The ``verilator`` wrapper script survives its ``verilator_bin`` child and reports how it died.
_WRAPPER_SIGNAL = re.compile(r"Verilator threw signal (\d+)")
_LIMIT_SIGNALS = (signal.SIGXCPU, signal.SIGKILL)

_MESSAGE = re.compile(
    r"^%(?P<severity>Error|Warning)(?:-(?P<code>[A-Za-z0-9_]+))?:[ \t]*"
    r"(?:(?P<file>[^\s:]+):(?P<line>\d+):(?:(?P<col>\d+):)?[ \t]*)?(?P<text>.*)$",
    re.M,
)


@dataclass(frozen=True)
class LintMessage:
    """One Verilator diagnostic. ``severity`` is ``error``, ``warning`` or ``unsupported``."""

    file: str
    line: int
    col: int
    severity: str
    code: str
    text: str

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}: " if self.line else ""
        code = f"-{self.code}" if self.code else ""
        return f"%{self.severity.capitalize()}{code}: {where}{self.text}"


@dataclass
class LintResult:
    """Outcome of linting one candidate.

    ``ok`` is true when Verilator reported no error; ``timed_out`` when a sandbox limit (CPU, wall,
    memory, output size) stopped it, which is the candidate's resource problem, not a syntax error.
    """

    ok: bool
    messages: list[LintMessage] = field(default_factory=list)
    warning_count: int = 0
    log: str = ""
    timed_out: bool = False


def parse_messages(text: str) -> list[LintMessage]:
    """Verilator messages in ``text`` (continuation and source-excerpt lines are skipped).

    The summary line ``%Error: Exiting due to N error(s)`` is not a message of its own.
    """
    messages = []
    matches = list(_MESSAGE.finditer(text))
    for index, match in enumerate(matches):
        body = match.group("text").strip()
        notes = text[match.end() : matches[index + 1].start() if index + 1 < len(matches) else len(text)]
        if match.group("file") is None and body.startswith("Exiting due to"):
            continue
        severity = match.group("severity").lower()
        code = match.group("code") or ""
        if code == "UNSUPPORTED" or body.startswith("Unsupported"):
            severity = "unsupported"
        elif body.startswith("Duplicate declaration of signal") and _ANSI_REDECLARATION in notes:
            severity, code = "warning", "ANSIREDECL"
        messages.append(
            LintMessage(
                file=match.group("file") or "",
                line=int(match.group("line") or 0),
                col=int(match.group("col") or 0),
                severity=severity,
                code=code,
                text=body,
            )
        )
    return messages


# What the wrapper does before running the binary (deep expression trees need a deep stack).
_STACK_PRELUDE = 'ulimit -s unlimited 2>/dev/null; "$@"'


def verilator_bin(wrapper: str) -> str | None:
    """The ``verilator_bin`` the ``verilator`` wrapper at ``wrapper`` would run, or ``None``.

    Inside the sandbox the environment holds no ``VERILATOR_ROOT``, so the wrapper picks the
    ``verilator_bin`` in its own directory; that is the one returned.
    """
    if os.path.basename(wrapper) != "verilator":
        return None
    candidate = os.path.join(os.path.dirname(os.path.realpath(wrapper)), "verilator_bin")
    return candidate if os.access(candidate, os.X_OK) else None


@functools.lru_cache(maxsize=16)
def _resolved(override: str | None, path: str | None) -> tuple[str, str | None, tuple[str, ...]]:
    binary = VERILATOR.binary()
    direct = verilator_bin(binary)
    binds = VERILATOR.ro_binds()
    if direct and not direct.startswith("/usr/"):
        binds = tuple(sorted({*binds, os.path.dirname(os.path.dirname(direct))}))
    return binary, direct, binds


def _verilator() -> tuple[str, str | None, tuple[str, ...]]:
    """(the ``verilator`` found, the ``verilator_bin`` it runs or ``None``, paths to bind), looked
    up once per ``$VERILATOR``/``$PATH``. Raises :class:`rewards.tools.ToolNotFound`."""
    return _resolved(os.environ.get(VERILATOR.env_var), os.environ.get("PATH"))


def lint_argv(
    binary: str, top: str | None, direct: str | None = None, sources: tuple[str, ...] = (SOURCE_NAME,)
) -> tuple[str, ...]:
    """Command line linting ``sources`` with ``binary`` (the wrapper or the binary it runs).

    ``top=None`` lints every module as a top (a batch of candidates, :mod:`rewards.batch`).
    """
    direct = direct or verilator_bin(binary)
    tops = ("--top-module", top) if top is not None else ("-Wno-MULTITOP",)
    if direct is None:
        return (binary, *LINT_FLAGS, *tops, *sources)
    return ("/bin/sh", "-c", _STACK_PRELUDE, "verilator", direct, *LINT_FLAGS, *tops, *sources)


def lint_command(top: str) -> str:
    """Shell text that lints ``SOURCE_NAME`` (for a job script that runs more than the lint).

    Raises :class:`rewards.tools.ToolNotFound` when Verilator is missing.
    """
    binary, direct, _ = _verilator()
    argv = lint_argv(binary, top, direct)
    if argv[0] == "/bin/sh":  # ("/bin/sh", "-c", prelude, "$0", binary, flags...)
        return _STACK_PRELUDE.replace('"$@"', "exec " + shlex.join(argv[4:]))
    return "exec " + shlex.join(argv)


def lint_binds() -> tuple[str, ...]:
    """Host paths a job running Verilator must see (its prefix when outside ``/usr``)."""
    return _verilator()[2]


def run_lint(code: str, top: str, *, limits: Limits, sandbox: bool = True) -> LintResult:
    """Lint ``code`` with Verilator, ``top`` as the top module, inside the sandbox.

    Raises :class:`rewards.tools.ToolNotFound` when Verilator is missing and
    :class:`rewards.sandbox.SandboxError` when the sandbox cannot run it (both infrastructure errors).
    """
    return interpret(run_job(lint_job(code, top, limits), sandbox=sandbox), limits)


def lint_job(code: str, top: str, limits: Limits) -> Job:
    """The sandbox job that lints ``code`` (raises :class:`rewards.tools.ToolNotFound`)."""
    binary, direct, binds = _verilator()
    return Job(
        argv=lint_argv(binary, top, direct),
        files=((SOURCE_NAME, code),),
        limits=limits,
        ro_binds=binds,
        as_init=True,
    )


def lint_many_job(files: tuple[tuple[str, str], ...], limits: Limits) -> Job:
    """One Verilator run linting every file of ``files`` (each module its own top)."""
    binary, direct, binds = _verilator()
    sources = tuple(name for name, _ in files)
    return Job(
        argv=lint_argv(binary, None, direct, sources),
        files=files,
        limits=limits,
        ro_binds=binds,
        as_init=True,
    )


def stopped_by_limit(result: JobResult, limits: Limits) -> str | None:
    """Which sandbox limit stopped a Verilator run (``None``: none did)."""
    output = result.stderr + "\n" + result.stdout
    wrapper_signal = _WRAPPER_SIGNAL.search(output)
    killed = int(wrapper_signal.group(1)) in _LIMIT_SIGNALS if wrapper_signal else False
    if result.timed_out or killed or result.cpu_s >= limits.cpu_s:
        return "CPU/wall time"
    if result.memory_limit:
        return "memory"
    return "output size" if result.output_truncated else None


def interpret(result: JobResult, limits: Limits) -> LintResult:
    """The :class:`LintResult` of a finished Verilator run under ``limits``."""
    output = result.stderr + "\n" + result.stdout
    messages = parse_messages(output)
    errors = [m for m in messages if m.severity == "error"]
    warnings = sum(1 for m in messages if m.severity == "warning")
    what = stopped_by_limit(result, limits)
    if what is not None:
        return LintResult(
            ok=False,
            messages=messages,
            warning_count=warnings,
            timed_out=True,
            log=f"verilator lint stopped by the sandbox's {what} limit ({limits.cpu_s:g}s CPU, "
            f"{limits.memory_mb} MB): the design is too large or loops in elaboration",
        )
    unsupported = any(m.severity == "unsupported" for m in messages)
    downgraded = any(m.code == "ANSIREDECL" for m in messages)
    if result.returncode != 0 and not errors and not unsupported and not downgraded:
        detail = f"signal {result.signal}" if result.signal else f"exit code {result.returncode}"
        errors = [LintMessage("", 0, 0, "error", "", f"verilator failed ({detail}): {result.tail(300)}")]
        messages.append(errors[0])
    log_text = "\n".join(m.format() for m in errors[:5])
    return LintResult(ok=not errors, messages=messages, warning_count=warnings, log=log_text[-1500:])
