"""Icarus Verilog runs shared by the co-simulation and the test-bench modes.

One simulation is one sandboxed job: ``iverilog -g2012`` compiles the trusted sources first and the
candidate last (so the candidate's macros cannot reach trusted code), then ``vvp`` runs the result.
Before the simulation starts the job deletes every source file and feeds the compiled program to
``vvp`` through a drained pipe, so nothing in the job directory still holds the run's secrets
while candidate code executes (a test bench's data files stay: they are not secret).

Secrets are fresh per run (:func:`new_nonce`); the caller decides where they go. The outcome of a
run is a :class:`SimOutcome`; statuses come from :class:`rewards.types.Status`.
"""

from __future__ import annotations

import logging
import secrets
import shlex
import signal
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from threading import Lock
from typing import Any

from rewards.sandbox import Job, JobResult, Limits, run_job
from rewards.tools import IVERILOG, VVP
from rewards.types import Status

log = logging.getLogger(__name__)

COMPILE_FAILED_RC = 97
"""Exit status of a simulation job whose compile step failed (no candidate code ran yet)."""


@dataclass
class SimOutcome:
    """The function level's verdict on one candidate.

    ``matched``/``total`` count compared vectors (co-simulation) or test-bench samples; ``status``
    is ``OK`` only when every one matched. ``log`` is short and meant for humans.
    """

    status: Status
    matched: int = 0
    total: int = 0
    log: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SimRun:
    """What one compile + simulate job produced."""

    result: JobResult
    compiled: bool
    outputs: dict[str, bytes]

    @property
    def stdout(self) -> str:
        return self.result.stdout


def new_nonce(nbytes: int = 12) -> str:
    """A fresh secret of ``2 * nbytes`` hex digits (a valid Verilog identifier suffix)."""
    return secrets.token_hex(nbytes)


def _script(sources: Sequence[str], tops: Sequence[str], iverilog: str, vvp: str) -> str:
    tops_args = " ".join(f"-s {shlex.quote(t)}" for t in tops)
    files = " ".join(shlex.quote(s) for s in sources)
    # The compiled program (which holds the run's secrets) is opened by a subshell that unlinks it
    # and becomes cat: vvp reads it from a pipe that is exhausted before any candidate code runs,
    # and no process left alive holds a descriptor of it (not even via /proc/<pid>/fd).
    return (
        f"{shlex.quote(iverilog)} -g2012 -o sim.vvp {tops_args} {files} 1>&2\n"
        "rc=$?\n"
        f"if [ $rc -gt 128 ]; then exit $rc; elif [ $rc -ne 0 ]; then exit {COMPILE_FAILED_RC}; fi\n"
        f"rm -f {files}\n"
        f"(exec 3<sim.vvp; rm -f sim.vvp; exec cat <&3 3<&-) | {shlex.quote(vvp)} -n /dev/stdin\n"
    )


def simulate(
    trusted: Sequence[tuple[str, str]],
    candidate: tuple[str, str] | None,
    tops: Sequence[str],
    *,
    limits: Limits,
    sandbox: bool,
    data_files: Sequence[tuple[str, str]] = (),
    outputs: Sequence[str] = (),
) -> SimRun:
    """Compile ``trusted`` sources then ``candidate`` with Icarus (roots ``tops``) and run the result.

    Args:
        trusted: ``(file name, text)`` pairs compiled first, in order.
        candidate: the untrusted ``(file name, text)``, compiled last; ``None`` for golden runs.
        tops: root modules (``iverilog -s``); modules outside their hierarchy are not elaborated.
        limits: sandbox limits, applied to the compiler and the simulator separately.
        sandbox: run inside bubblewrap.
        data_files: extra files the simulation reads (left in place while it runs).
        outputs: files to read back after the run.

    Raises:
        ToolNotFound: Icarus is not installed.
        SandboxError: the sandbox could not start.
    """
    iverilog, vvp = IVERILOG.binary(), VVP.binary()
    sources = [name for name, _ in trusted] + ([candidate[0]] if candidate else [])
    files = list(trusted) + ([candidate] if candidate else []) + list(data_files)
    job = Job(
        argv=("/bin/sh", "-c", _script(sources, tops, iverilog, vvp)),
        files=tuple(files),
        limits=limits,
        outputs=tuple(outputs),
        ro_binds=tuple(sorted(set(IVERILOG.ro_binds()) | set(VVP.ro_binds()))),
    )
    result = run_job(job, sandbox=sandbox)
    compiled = not (result.returncode == COMPILE_FAILED_RC and not result.timed_out)
    return SimRun(result=result, compiled=compiled, outputs=result.outputs)


def killed_by(result: JobResult) -> int | None:
    """The signal that ended the job (also when the shell reported it as ``128 + signal``)."""
    if result.signal:
        return result.signal
    rc = result.returncode
    if rc < 0:
        return -rc
    if rc > 128:
        return rc - 128
    return None


def failure_status(result: JobResult) -> Status | None:
    """SIM_TIMEOUT / RESOURCE_LIMIT when a limit ended the job, else ``None``."""
    sig = killed_by(result)
    if result.output_truncated or result.memory_limit or sig == signal.SIGXFSZ:
        return Status.RESOURCE_LIMIT
    if result.timed_out or sig in (signal.SIGXCPU, signal.SIGKILL):
        return Status.SIM_TIMEOUT
    if sig in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS) and "alloc" in result.stderr.lower():
        return Status.RESOURCE_LIMIT
    return None


def candidate_limits(limits: Limits, golden_s: float, factor: float = 20.0, floor_s: float = 2.0) -> Limits:
    """Limits for a candidate run: CPU capped near the golden's own cost, never above ``limits``.

    A correct design costs about what the golden costs, so ``factor`` times the golden job's time
    (at least ``floor_s``) is generous; the cap keeps hanging candidates (combinational loops) from
    holding a core for the full configured limit.
    """
    cpu = min(limits.cpu_s, max(floor_s, factor * golden_s))
    return replace(limits, cpu_s=cpu)


def compile_log(result: JobResult, limit: int = 800) -> str:
    """The compiler's messages, trimmed to ``limit`` characters, with job paths made relative."""
    return result.stderr.replace("/job/", "").strip()[-limit:]


class LruCache:
    """A small thread-safe LRU map for golden results (keyed by content hashes).

    Concurrent requests for the same missing key compute it once (the others wait), which matters
    when a GRPO batch brings many completions of one task at the same time. Exceptions listed in
    ``remember`` are cached like values and re-raised, so a broken golden is not re-simulated for
    every candidate.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._data: OrderedDict[str, tuple[bool, Any]] = OrderedDict()
        self._lock = Lock()
        self._key_locks: dict[str, Lock] = {}
        self.hits = 0
        self.misses = 0

    def _lookup(self, key: str) -> tuple[bool, Any] | None:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key]
            return None

    def get_or_compute(
        self, key: str, compute: Callable[[], Any], remember: tuple[type[BaseException], ...] = ()
    ) -> Any:
        """The cached value for ``key``; computes and stores it on a miss (once per key at a time)."""
        entry = self._lookup(key)
        if entry is None:
            with self._lock:
                key_lock = self._key_locks.setdefault(key, Lock())
            with key_lock:
                entry = self._lookup(key)
                if entry is None:
                    with self._lock:
                        self.misses += 1
                    try:
                        entry = (True, compute())
                    except remember as exc:
                        entry = (False, exc)
                    with self._lock:
                        self._data[key] = entry
                        while len(self._data) > self.size:
                            self._data.popitem(last=False)
                        self._key_locks.pop(key, None)
        ok, value = entry
        if not ok:
            raise value
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.hits = self.misses = 0
