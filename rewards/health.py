"""Is this host fit to score? A fault of the scoring host must never become a candidate's verdict.

Three parts (docs/design.md, "A fault of the host is never a verdict"):

* :func:`environment_message` — the one place that reads a tool message as being about the host,
  not the design: a system path that cannot be written or opened, a full disk, permission denied
  outside the job directory, a read-only file system, the kernel's OOM killer, a broken tool
  install, bubblewrap failing to set up. Tool output can hold candidate text (Verilator quotes the
  offending source line, a simulation prints what the design says), so such a message is a
  *suspicion*: it sends the caller to the canary and the golden, it never decides by itself.
* :func:`run_canary` — a known-good design through the real tool chain in the sandbox: a probe job
  that writes ``/dev/null``, the job directory and ``/tmp``; then Verilator lint, co-simulation
  against itself (Icarus compile + run + trace), and (when PPA is on) Yosys synthesis to the
  liberty and OpenSTA. It runs at worker start, whenever the environment fingerprint changes,
  whenever a failure looks environmental, and every ``retry_s`` while the worker is unhealthy.
* :class:`HealthMonitor` — the golden cross-check and the worker's health. A candidate's failure
  at a level counts only if the golden design passes that level in the same environment (cached
  per task, level and :func:`environment_fingerprint`). A golden that fails where it passed
  before, or while the canary fails, voids the candidate's result (the caller reports
  ``INFRA_ERROR``) and turns the worker unhealthy until the canary and the failed golden checks
  pass again; a golden that never passed a level on a healthy host is the task's own quirk
  (Verilator rejecting a golden Icarus accepts), and the candidate's verdict stands.

What is not caught: a fault that strikes one job and is gone before the canary and the golden are
re-run (a disk that fills for a second) leaves that one verdict standing. Bubblewrap's ``--dev``
gives each job its own ``/dev``, but its ``null``/``zero``/``full``/``random``/``urandom``/``tty``
are bind mounts of the host's nodes: a host ``/dev/null`` whose mode lost the write bit for others
still breaks every job. Such a host is reported (canary), never repaired.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from rewards import cosim, lint, ppa, testbench
from rewards.config import CosimSettings
from rewards.interface import InterfaceError
from rewards.metrics import Counter, Gauge
from rewards.sandbox import Job, Limits, SandboxError, bwrap_binary, run_job
from rewards.sim import LruCache
from rewards.tools import LIBERTY_DEFAULT, TOOLS, ToolNotFound
from rewards.types import Status, Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """Whether a golden design or the canary passed; ``detail`` says what failed."""

    ok: bool
    detail: str = ""


# --- classification -----------------------------------------------------------------------------

_SYSTEM_PATH = r"(?<![\w.])/(?:dev|tmp|usr|etc|proc|sys|lib|lib64|bin|sbin|var|run|home|root|opt)(?:/|\b)"
_ENVIRONMENT_MESSAGES: tuple[tuple[str, re.Pattern], ...] = (
    ("the disk is full", re.compile(r"no space left on device|disk quota exceeded|\bENOSPC\b", re.I)),
    ("a file system is read-only", re.compile(r"read-only file system|\bEROFS\b", re.I)),
    (
        "a system path cannot be written or opened",
        re.compile(
            r"(?:cannot|can't|can not|could not|couldn't|unable to|failed to)\s+"
            r"(?:write|open|create|read|access|execute)\b[^\n]*?" + _SYSTEM_PATH,
            re.I,
        ),
    ),
    ("the kernel's OOM killer ended a job", re.compile(r"oom[- ]?kill|out of memory: kill", re.I)),
    (
        "a tool installation is broken",
        re.compile(
            r"error while loading shared libraries|exec format error|cannot execute binary file|"
            r"^(?:/bin/sh|sh): \d+: \S+: (?:not found|permission denied)$",
            re.I | re.M,
        ),
    ),
    ("the sandbox could not be set up", re.compile(r"^bwrap: ", re.M)),
)
_PERMISSION = re.compile(r"permission denied|operation not permitted|\bEACCES\b|\bEPERM\b", re.I)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[\w.+-]+(?:/[\w.+-]*)*")
# Verilator shows the offending source under a message ("   12 | code", "      |   ^~~"): candidate
# text, never read as a message.
_SOURCE_EXCERPT = re.compile(r"^\s*\d*\s*\|.*$|^\s*:\s*\.\.\..*$", re.M)


def environment_message(text: str) -> str | None:
    """What about the host ``text`` (a tool's message) complains of, or ``None`` when nothing.

    Recognised: a full disk, a read-only file system, a system path (``/dev``, ``/tmp``, ``/usr`` …)
    that cannot be written or opened, permission denied on an absolute path outside ``/job``, the
    OOM killer, a broken tool install (missing shared library, binary that cannot execute), and
    bubblewrap's own set-up errors. Source excerpts Verilator quotes are ignored.
    """
    if not text:
        return None
    text = _SOURCE_EXCERPT.sub("", text)
    for what, pattern in _ENVIRONMENT_MESSAGES:
        match = pattern.search(text)
        if match:
            return f"{what} ({_line_of(text, match.start())})"
    for match in _PERMISSION.finditer(text):
        line = _line_of(text, match.start())
        if any(not p.startswith("/job") for p in _ABSOLUTE_PATH.findall(line)):
            return f"permission denied outside the job directory ({line})"
    return None


def _line_of(text: str, pos: int) -> str:
    start = text.rfind("\n", 0, pos) + 1
    end = text.find("\n", pos)
    return text[start : end if end >= 0 else len(text)].strip()[:200]


# --- environment fingerprint ----------------------------------------------------------------------

_LOW_SPACE_BYTES = 16 * 1024 * 1024
_LOW_INODES = 256


def _stat_key(path: str | None) -> str:
    if not path:
        return "none"
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"{path}:error{exc.errno}"
    return f"{path}:{st.st_dev}:{st.st_ino}:{st.st_mode:o}:{st.st_rdev}:{st.st_size}:{st.st_mtime_ns}"


def _job_root_key() -> str:
    root = os.environ.get("RTLFORGE_JOB_DIR", tempfile.gettempdir())
    try:
        st, vfs = os.stat(root), os.statvfs(root)
    except OSError as exc:
        return f"{root}:error{exc.errno}"
    low = vfs.f_bavail * vfs.f_frsize < _LOW_SPACE_BYTES or (vfs.f_files and vfs.f_favail < _LOW_INODES)
    readonly = bool(vfs.f_flag & os.ST_RDONLY) or not os.access(root, os.W_OK)
    return f"{root}:{st.st_dev}:{st.st_ino}:{st.st_mode:o}:low={low}:ro={readonly}"


def _tool_key(tool) -> str:
    try:
        binary = tool.binary()
    except ToolNotFound:
        return f"{tool.name}:missing"
    keys = [_stat_key(binary)]
    if tool.name == "verilator":
        keys.append(_stat_key(lint.verilator_bin(binary)))
    return "|".join(keys)


def environment_fingerprint() -> str:
    """A short hash of what the tools' behaviour depends on in this host (a few ``stat`` calls).

    Covers ``/dev/null`` (type, mode, device), each tool binary (and ``verilator_bin``), bubblewrap,
    the liberty, and the job root (device, mode, writable, nearly full). A bind mount over any of
    them, a vanished file or a full or read-only job root changes it.
    """
    parts = [
        _stat_key("/dev/null"),
        _stat_key(bwrap_binary()),
        _stat_key(os.environ.get("RTLFORGE_LIBERTY", LIBERTY_DEFAULT)),
        _job_root_key(),
        *(_tool_key(tool) for tool in TOOLS.values()),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# --- the canary -----------------------------------------------------------------------------------

_CANARY_TOP = "rtlf_canary"
_CANARY_SOURCE = """\
module rtlf_canary(input clk, input rst, input [3:0] d, output reg [3:0] q, output p);
  always @(posedge clk) begin
    if (rst) q <= 4'd0;
    else q <= q + d;
  end
  assign p = ^q;
endmodule
"""
# Writes to /dev/null first: every other line would need it for its own redirections.
_PROBE_SCRIPT = """\
fail() { echo "rtlf-canary: $1" >&2; exit 1; }
echo probe > /dev/null || fail "cannot write /dev/null inside the sandbox"
dd if=/dev/zero of=probe.bin bs=65536 count=4 status=none || fail "cannot write 256 KiB into the job directory"
dd if=/dev/zero of="${TMPDIR:-/tmp}/probe.bin" bs=65536 count=4 status=none || fail "cannot write 256 KiB into /tmp"
rm -f probe.bin "${TMPDIR:-/tmp}/probe.bin"
"""


@dataclass(frozen=True)
class CanaryLimits:
    """Sandbox limits of the canary's tool calls; ``synth``/``sta`` ``None`` leaves PPA out."""

    lint: Limits
    sim: Limits
    synth: Limits | None = None
    sta: Limits | None = None


def run_canary(limits: CanaryLimits, sandbox: bool = True) -> Check:
    """Run a known-good design through every tool the reward uses; ``ok`` when all behave.

    Never raises for tool or sandbox failures: they are what it reports.
    """
    try:
        return _canary_steps(limits, sandbox)
    except (ToolNotFound, SandboxError, OSError, InterfaceError, cosim.GoldenError) as exc:
        return Check(False, f"canary: {type(exc).__name__}: {exc}")


def _canary_steps(limits: CanaryLimits, sandbox: bool) -> Check:
    probe = run_job(Job(argv=("/bin/sh", "-c", _PROBE_SCRIPT), limits=limits.lint, as_init=True), sandbox)
    if probe.returncode != 0:
        return Check(False, f"canary probe failed (exit {probe.returncode}): {_one_line(probe.tail(300))}")
    linted = lint.run_lint(_CANARY_SOURCE, _CANARY_TOP, limits=limits.lint, sandbox=sandbox)
    if not linted.ok:
        return Check(False, f"canary lint failed: {_one_line(linted.log[-300:])}")
    # A fresh comment makes a fresh golden: the cached trace of an earlier canary proves nothing now.
    task = Task(
        id="rtlforge/canary",
        prompt="canary",
        top_module=_CANARY_TOP,
        reference=f"// {secrets.token_hex(8)}\n{_CANARY_SOURCE}",
        meta={"clock": "clk", "reset": "rst"},
    )
    settings = CosimSettings(seeds=(1,), comb_vectors=16, seq_cycles=24, reset_cycles=2, midrun_resets=1)
    outcome = cosim.run_cosim(task, _CANARY_SOURCE, settings, limits=limits.sim, sandbox=sandbox)
    if outcome.status is not Status.OK:
        return Check(
            False, f"canary co-simulation gave {outcome.status.value}: {_one_line(outcome.log[-300:])}"
        )
    if limits.synth is not None and limits.sta is not None:
        from rewards.tools import liberty_path

        figures = ppa.measure(
            _CANARY_SOURCE,
            _CANARY_TOP,
            "clk",
            liberty=liberty_path(),
            synth_limits=limits.synth,
            sta_limits=limits.sta,
            sandbox=sandbox,
        )
        if not figures.ok:
            return Check(False, f"canary synthesis/timing failed: {_one_line(figures.error[-300:])}")
    return Check(True)


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def forget_golden_results() -> None:
    """Drop every cached golden run (traces, bench runs, PPA figures): some may be a fault's."""
    for cache in (cosim.GOLDEN_CACHE, testbench.GOLDEN_CACHE, ppa.GOLDEN_CACHE):
        cache.clear()


# --- the monitor ----------------------------------------------------------------------------------


class HealthMonitor:
    """The worker's health and the golden cross-check (see the module docstring). Thread-safe.

    Args:
        retry_s: while unhealthy (or after a suspicious message), the canary runs at most this often.
        max_rechecks: failed golden checks kept to re-run before the worker calls itself healthy.
    """

    def __init__(self, retry_s: float = 5.0, max_rechecks: int = 8) -> None:
        self.retry_s = retry_s
        self.max_rechecks = max_rechecks
        self.healthy = True
        self.reason = ""
        self.epoch = 0
        self._lock = threading.Lock()
        self._canary_lock = threading.Lock()
        self._canary: Check | None = None
        self._canary_at = 0.0
        self._canary_fingerprint = ""
        self._golden = LruCache(size=8192)
        self._passed: set[str] = set()
        self._rechecks: OrderedDict[str, Callable[[], Check]] = OrderedDict()
        self.faults = Counter(
            "rtlforge_environment_faults_total",
            "times the worker found its environment unfit to score and turned unhealthy",
        )
        self.canary_runs = Counter(
            "rtlforge_canary_runs_total", "environment canary runs by result", ["result"]
        )
        self.golden_failures = Counter(
            "rtlforge_golden_failures_total",
            "candidate failures voided (INFRA_ERROR) because the golden failed the same level here",
            ["level"],
        )
        self.healthy_gauge = Gauge(
            "rtlforge_healthy",
            "1 when the canary and the golden checks pass, else 0",
            lambda: float(self.healthy),
        )

    def _canary_detail(self) -> str:
        with self._lock:
            return self._canary.detail if self._canary is not None and not self._canary.ok else self.reason

    def fingerprint(self) -> str:
        """:func:`environment_fingerprint` plus the health epoch (it moves on every health change)."""
        return f"{environment_fingerprint()}.{self.epoch}"

    def state(self) -> dict:
        """What ``/healthz`` reports about the environment."""
        with self._lock:
            return {
                "healthy": self.healthy,
                "reason": self.reason,
                "canary_age_s": round(time.monotonic() - self._canary_at, 1) if self._canary else None,
                "fingerprint": self._canary_fingerprint,
                "pending_golden_rechecks": len(self._rechecks),
            }

    def check(self, canary: Callable[[], Check], *, suspect: bool = False) -> bool:
        """Run the canary when due and return whether the worker is healthy.

        Due: never run yet, the environment fingerprint changed, or (unhealthy or ``suspect``) the
        last run is ``retry_s`` old. A passing canary also re-runs the failed golden checks; when
        all pass, an unhealthy worker turns healthy again and cached golden runs are forgotten.
        """
        with self._canary_lock:
            fingerprint = environment_fingerprint()
            age = time.monotonic() - self._canary_at
            due = (
                self._canary is None
                or fingerprint != self._canary_fingerprint
                or ((suspect or not self.healthy) and age >= self.retry_s)
            )
            if due:
                self._run_canary(canary, fingerprint)
            return self.healthy

    def _run_canary(self, canary: Callable[[], Check], fingerprint: str) -> None:
        started = time.perf_counter()
        result = canary()
        if result.ok:
            with self._lock:
                rechecks = list(self._rechecks.items())
            for key, run in rechecks:
                again = run()
                if not again.ok:
                    result = Check(False, f"golden check {key.split(chr(0))[-1]} still fails: {again.detail}")
                    break
                with self._lock:
                    self._rechecks.pop(key, None)
        self.canary_runs.inc(result=("pass" if result.ok else "fail"))
        log.info(
            "canary %s in %.2f s%s",
            "passed" if result.ok else "FAILED",
            time.perf_counter() - started,
            "" if result.ok else f": {result.detail}",
        )
        with self._lock:
            self._canary, self._canary_at, self._canary_fingerprint = result, time.monotonic(), fingerprint
        if result.ok:
            self._set_healthy()
        else:
            self.report_fault(result.detail)

    def _set_healthy(self) -> None:
        with self._lock:
            if self.healthy:
                return
            self.healthy, self.reason = True, ""
            self.epoch += 1
        forget_golden_results()
        log.warning("environment healthy again: the canary and the golden checks pass")

    def report_fault(self, reason: str, recheck: tuple[str, Callable[[], Check]] | None = None) -> None:
        """Mark the worker unhealthy for ``reason``; ``recheck`` must pass again before it recovers."""
        with self._lock:
            if recheck is not None:
                self._rechecks[recheck[0]] = recheck[1]
                while len(self._rechecks) > self.max_rechecks:
                    self._rechecks.popitem(last=False)
            turned = self.healthy
            self.healthy, self.reason = False, reason[:500]
            if turned:
                self.epoch += 1
        if turned:
            self.faults.inc()
            log.error("environment unfit to score, worker unhealthy: %s", reason)

    def attribute(
        self,
        key: str,
        level: str,
        golden: Callable[[], Check],
        canary: Callable[[], Check],
        suspicion: str | None = None,
    ) -> str | None:
        """Why a candidate's failure at ``level`` is the host's (``None``: it is the candidate's).

        Args:
            key: names the task and the scoring settings (the golden check is cached per key,
                level and environment).
            golden: runs the golden design through the same level here.
            canary: :func:`run_canary` with the caller's limits.
            suspicion: what :func:`environment_message` found in the candidate's failure, if anything.
        """
        name = f"{key}\0{level}"
        result = self._golden.get_or_compute(f"{name}\0{self.fingerprint()}", golden)
        if result.ok:
            with self._lock:
                self._passed.add(name)
            if suspicion is None or self.check(canary, suspect=True):
                return None
            return f"{suspicion}; the canary fails: {self._canary_detail()}"
        healthy = self.check(canary, suspect=True)
        with self._lock:
            passed_before = name in self._passed
        if healthy and not passed_before:
            log.info(
                "golden of %s fails the %s level on a healthy host: %s", key[:60], level, result.detail[:200]
            )
            return None
        reason = f"the golden design fails the {level} level here too: {result.detail[-300:]}"
        if not healthy:
            reason += f"; the canary fails: {self._canary_detail()}"
        self.golden_failures.inc(level=level)
        self.report_fault(reason, recheck=(name, golden))
        return reason


HEALTH = HealthMonitor()
"""The process's monitor: one host, one health (the server's /healthz and /metrics read it)."""
