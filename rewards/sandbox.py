"""Run one untrusted tool invocation in a sandbox.

Every EDA tool call of the reward stack goes through :func:`run_job`. A :class:`Job` is plain data
(argv, input files, limits, files to read back) with a content hash; running it is separate.

What is isolated (each property has an adversarial test in ``tests/test_sandbox.py``):

* **Network**: a fresh network namespace (``bwrap --unshare-all``) with only a down loopback.
* **Filesystem**: ``/usr`` (and the few extra tool prefixes a Job names) read-only; ``/etc`` is
  absent except ``ld.so.cache`` and ``alternatives`` (links into ``/usr``, e.g. ``cc``); ``/home``,
  ``/root``, ``/work``, other jobs' dirs are not mounted.
  The only writable places are the private job directory (``/job``) and a size-capped ``/tmp`` tmpfs.
* **Privileges**: as root, the tool runs under an unprivileged uid/gid (so rlimits, notably the
  process count, hold), inside a new user/pid/ipc/uts/cgroup namespace with ``--cap-drop ALL``
  and a new session (no controlling terminal to inject input into).
* **Resources**: ``RLIMIT_CPU`` (CPU seconds, so load from other jobs does not cause false
  timeouts), ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE`` (file size), ``RLIMIT_NPROC`` (fork bombs),
  ``RLIMIT_CORE=0``; a generous wall-clock backstop; stdout/stderr capped (a flood kills the job).
* **Cleanup**: the whole process tree dies with the job (pid namespace + ``--die-with-parent`` +
  process-group kill), and the job directory is removed.

What is *not* isolated: CPU and memory bandwidth (a job can slow its neighbours, never fail
them), the kernel itself (a kernel exploit escapes any namespace), the read-only contents of
``/usr`` (a tool can read, not change, installed files), and wall time spent blocked on I/O
beyond the wall backstop. Without bubblewrap (``sandbox=False``, debugging only) just the rlimits,
the process-group kill and the output cap apply.

What comes from the host all the same: ``--dev`` gives each job its own ``/dev``, but its ``null``,
``zero``, ``full``, ``random``, ``urandom`` and ``tty`` are bind mounts of the host's nodes, modes
included (a host ``/dev/null`` that lost its write bit breaks every job; :mod:`rewards.health`
reports it). A job the kernel's OOM killer ends raises :class:`SandboxError`: the host's fault.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
import resource
import selectors
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rewards.tools import find_binary

log = logging.getLogger(__name__)

_UID_BASE = 61000
_UID_SPAN = 4000
_uid_counter = itertools.count()
# What allocators and runtimes print when RLIMIT_AS refuses memory (C++, glibc/strerror, Python, Tcl, bison).
_OUT_OF_MEMORY = re.compile(
    r"std::bad_alloc|out of memory|cannot allocate memory|memoryerror|memory exhausted|"
    r"unable to (re)?alloc|failed to allocate|not enough memory",
    re.I,
)


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has ended since boot (``/proc/vmstat``), if known."""
    try:
        with open("/proc/vmstat", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def out_of_memory(text: str) -> bool:
    """Whether ``text`` (a tool's stderr) says an allocation was refused (``RLIMIT_AS``)."""
    return bool(_OUT_OF_MEMORY.search(text))


READY_MARK = ".sandbox-ready"


class SandboxError(RuntimeError):
    """The sandbox itself could not run the job (not the tool failing): an infrastructure error."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one job."""

    cpu_s: float = 10.0
    wall_s: float = 60.0
    memory_mb: int = 2048
    max_procs: int = 64
    max_output_bytes: int = 1_000_000
    max_file_mb: int = 64
    tmp_mb: int = 64


@dataclass(frozen=True)
class Job:
    """A tool invocation as plain data: run ``argv`` in a fresh dir holding ``files``.

    ``outputs`` names files (relative to the job dir) to read back after the run.
    ``ro_binds`` are extra host paths made visible read-only at the same path (tool prefixes).
    ``marks`` are strings the job prints on stderr between steps: the result says when each first
    arrived (seconds after the start), so a multi-step job's time can be split by step.
    ``as_init`` lets a ``/bin/sh -c`` script run as the sandbox's pid-1 shell itself (saves a process
    start): only for scripts that never signal their own shell (pid 1 ignores such signals).
    """

    argv: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = ()
    limits: Limits = field(default_factory=Limits)
    outputs: tuple[str, ...] = ()
    ro_binds: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    marks: tuple[str, ...] = ()
    as_init: bool = False

    def content_hash(self) -> str:
        blob = json.dumps(
            [self.argv, self.files, self.outputs, self.ro_binds, self.env, vars(self.limits)], sort_keys=True
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass
class JobResult:
    """What happened. ``cpu_limit``/``wall_timeout``/``output_truncated`` say which limit (if any) hit."""

    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, bytes]
    wall_s: float
    cpu_s: float
    cpu_limit: bool = False
    wall_timeout: bool = False
    memory_limit: bool = False
    output_truncated: bool = False
    signal: int | None = None
    marks: dict[str, float] = field(default_factory=dict)

    @property
    def timed_out(self) -> bool:
        return self.cpu_limit or self.wall_timeout

    def tail(self, n: int = 1500) -> str:
        text = (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
        return text[-n:]


def bwrap_binary() -> str | None:
    return os.environ.get("BWRAP") or find_binary("bwrap", os.environ.get("PATH"))


def _job_root() -> Path:
    root = Path(os.environ.get("RTLFORGE_JOB_DIR", tempfile.gettempdir())) / "rtlforge-jobs"
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    if os.geteuid() == 0:  # bwrap then runs as an unprivileged uid that must reach the job dirs
        for parent in [root, *root.parents]:
            if not os.stat(parent).st_mode & 0o001:
                raise SandboxError(
                    f"job root {root} is not reachable by the sandbox's unprivileged uid ({parent} has mode "
                    f"{oct(os.stat(parent).st_mode & 0o777)}): set $RTLFORGE_JOB_DIR to a directory whose "
                    "parents are all searchable by others (o+x), e.g. /tmp"
                )
    return root


def _bwrap_argv(bwrap: str, job: Job, job_dir: Path) -> list[str]:
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(job.limits.tmp_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
    ]
    if os.path.exists("/etc/ld.so.cache"):
        argv += ["--ro-bind", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if os.path.isdir("/etc/alternatives"):  # only links into /usr; /usr/bin/cc and c++ point through it
        argv += ["--ro-bind", "/etc/alternatives", "/etc/alternatives"]
    for path in job.ro_binds:
        if not path.startswith("/usr/") and os.path.exists(path):
            argv += ["--ro-bind", path, path]
    # The job runs under a shell that is pid 1 of the namespace and waits for it: bwrap's own init
    # is never waited for by the outer bwrap, so its CPU time (and the tool's) would be lost to
    # wait4(). The shell is not the last command of its script, so it cannot exec the tool away.
    # Its first act marks the sandbox as up: a failure without the mark is bubblewrap's, never the
    # tool's (whatever the tool prints, even text that imitates bubblewrap's messages).
    # A job that allows it (``as_init``) and is itself a shell script runs as that shell (one
    # process start fewer).
    argv += ["--bind", str(job_dir), "/job", "--chdir", "/job", "--as-pid-1", "--"]
    ready = f": > {READY_MARK}"
    if job.as_init and len(job.argv) >= 3 and job.argv[:2] == ("/bin/sh", "-c"):
        return argv + ["/bin/sh", "-c", f"{ready}\n{job.argv[2]}\nexit $?", *job.argv[3:]]
    return argv + ["/bin/sh", "-c", f'{ready}; "$@"; exit $?', "rtlforge-init", *job.argv]


def cpu_rlimit(limits: Limits) -> int:
    """The ``RLIMIT_CPU`` soft limit (whole seconds) a job under ``limits`` runs with; hard is one more."""
    return max(1, int(limits.cpu_s + 0.999))


def _preexec(limits: Limits, uid: int | None):
    cpu = cpu_rlimit(limits)
    mem = limits.memory_mb * 1024 * 1024
    fsize = limits.max_file_mb * 1024 * 1024

    def apply() -> None:  # runs in the child between fork and exec
        os.setsid()
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_procs, limits.max_procs))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return apply


def _read_capped(
    proc: subprocess.Popen, limits: Limits, deadline: float, marks: dict[bytes, float | None]
) -> tuple[bytes, bytes, bool, bool]:
    """Drain stdout/stderr until exit; kill on output flood or wall deadline.

    ``marks`` maps strings awaited on stderr to the monotonic time each first arrived (filled in).
    """
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    sel = selectors.DefaultSelector()
    for stream in bufs:
        sel.register(stream, selectors.EVENT_READ)
    truncated = wall = False
    open_streams = len(bufs)
    while open_streams:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            wall = True
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            buf = bufs[key.fileobj]
            buf += chunk
            if key.fileobj is proc.stderr:
                _note_marks(buf, len(chunk), marks)
            if len(bufs[proc.stdout]) + len(bufs[proc.stderr]) > limits.max_output_bytes:
                truncated = True
                open_streams = 0
                break
    sel.close()
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), truncated, wall


def _note_marks(buf: bytearray, new: int, marks: dict[bytes, float | None]) -> None:
    for mark, seen in marks.items():
        if seen is None and buf.find(mark, max(0, len(buf) - new - len(mark))) >= 0:
            marks[mark] = time.monotonic()


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_outputs(job_dir: Path, names: tuple[str, ...], cap: int) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    root = os.path.realpath(job_dir)
    for name in names:
        path = job_dir / name
        # A link planted by the tool (as the file or as a directory on its path) must not make us
        # read a host file, and a planted FIFO must not block us: O_NOFOLLOW | O_NONBLOCK, and the
        # resolved path must stay inside the job dir.
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as handle:
            if not os.path.isfile(f"/proc/self/fd/{handle.fileno()}"):
                continue
            out[name] = handle.read(cap)
    return out


def _plain_name(name: str) -> bool:
    """A file name with no directory part (written straight into the job dir)."""
    return bool(name) and "/" not in name and name not in (".", "..")


def run_job(job: Job, sandbox: bool = True) -> JobResult:
    """Run ``job`` under the limits; returns what happened. Raises :class:`SandboxError` on setup failure."""
    bwrap = bwrap_binary()
    if sandbox and not bwrap:
        raise SandboxError("bubblewrap not found: install it (apt-get install bubblewrap) or set $BWRAP")
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=_job_root()))
    uid = None
    if os.geteuid() == 0:
        uid = _UID_BASE + (os.getpid() * 131 + next(_uid_counter)) % _UID_SPAN
    try:
        root = job_dir.resolve()
        for name, content in job.files:
            target = job_dir / name
            if not _plain_name(name):  # a path: it must stay inside the job dir
                if target.resolve().parent != root and root not in target.resolve().parents:
                    raise SandboxError(f"job file name {name!r} escapes the job dir")
                target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        if uid is not None:
            for path in [job_dir, *job_dir.rglob("*")]:
                os.chown(path, uid, uid)
        argv = _bwrap_argv(bwrap, job, job_dir) if sandbox else list(job.argv)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/job" if sandbox else str(job_dir),
            "LANG": "C.UTF-8",
            "TMPDIR": "/tmp",
            **dict(job.env),
        }
        log.debug("sandbox run: %s", shlex.join(argv))
        marks: dict[bytes, float | None] = {m.encode(): None for m in job.marks}
        oom_before = oom_kills()
        start = time.monotonic()
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=job_dir,
                env=env,
                preexec_fn=_preexec(job.limits, uid),
                close_fds=True,
            )
        except OSError as exc:
            raise SandboxError(f"could not start {argv[0]!r}: {exc}") from exc
        try:
            stdout, stderr, truncated, wall = b"", b"", False, True
            stdout, stderr, truncated, wall = _read_capped(proc, job.limits, start + job.limits.wall_s, marks)
        finally:
            if wall or truncated:
                _kill_tree(proc)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.stdout.close()
            proc.stderr.close()
        wall_s = time.monotonic() - start
        _kill_tree(proc)  # stragglers in our session (sandbox=False case)
        rc = proc.returncode
        sig = -rc if rc < 0 else (rc - 128 if rc > 128 and sandbox else None)
        stderr_text = stderr.decode("utf-8", "replace")
        if sandbox and rc != 0 and not (wall or truncated) and not (job_dir / READY_MARK).exists():
            raise SandboxError(
                f"bubblewrap failed to set up the sandbox (exit code {rc}): {stderr_text.strip()[:300]}"
            )
        cpu_s = usage.ru_utime + usage.ru_stime
        if sig == signal.SIGKILL and not (wall or truncated) and oom_before is not None:
            oom_after = oom_kills()
            if oom_after is not None and oom_after > oom_before:
                # No limit of the job sends SIGKILL before the CPU hard limit; the host ran out of memory.
                raise SandboxError(
                    f"the job was killed by the kernel's OOM killer after {cpu_s:.1f} s CPU (oom_kill "
                    f"{oom_before} -> {oom_after}): the host is short of memory; lower the number of "
                    "workers or memory_mb"
                )
        cpu_limit = sig in (signal.SIGXCPU, signal.SIGKILL) and not wall and not truncated
        return JobResult(
            returncode=rc,
            stdout=stdout.decode("utf-8", "replace"),
            stderr=stderr_text,
            outputs=_read_outputs(job_dir, job.outputs, job.limits.max_file_mb * 1024 * 1024),
            wall_s=wall_s,
            cpu_s=cpu_s,
            cpu_limit=cpu_limit or sig == signal.SIGXCPU,
            wall_timeout=wall,
            memory_limit=rc != 0 and out_of_memory(stderr_text),
            output_truncated=truncated,
            signal=sig,
            marks={m.decode(): t - start for m, t in marks.items() if t is not None},
        )
    finally:
        if not os.environ.get("RTLFORGE_KEEP_JOBS"):
            shutil.rmtree(job_dir, ignore_errors=True)
