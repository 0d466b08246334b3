"""A reward server as a child process: :func:`start_background` (tests, single-node training, benches).

    with start_background(config=RewardConfig(), tasks=tasks) as server:
        RewardClient([server.url], tasks=...).score(items)

The child is ``python -m rewards.server`` on a free loopback port; it stops with the handle, and on its
own when this process dies (``--parent-pid``).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rewards.config import RewardConfig
from rewards.server import ServerConfig
from rewards.types import Task

log = logging.getLogger(__name__)


class ServerHandle:
    """A reward server running as a child process: ``.url``, ``.stop()``, ``.kill()`` (SIGKILL)."""

    def __init__(
        self, process: subprocess.Popen, url: str, workdir: tempfile.TemporaryDirectory, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.pid = process.pid
        self.log_path = log_path
        self._workdir = workdir

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._workdir.cleanup()

    def kill(self) -> None:
        """SIGKILL without any shutdown (what a crash looks like to clients)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_background(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: RewardConfig | str | Path | None = None,
    tasks: Iterable[Task] | Mapping[str, Task] | None = None,
    task_files: Iterable[str | Path] = (),
    workers: int | None = None,
    cache: str | Path | None = None,
    startup_timeout_s: float = 120.0,
    **limits: Any,
) -> ServerHandle:
    """Start ``python -m rewards.server`` as a child process and wait until it answers.

    Args:
        host, port: where to listen (``port=0``: a free port; the handle's ``url`` has the real one).
        config: a RewardConfig, a YAML path, or None for defaults.
        tasks: Task objects items may name by id (written to a private JSONL for the child);
            ``task_files`` adds task files by path.
        workers: scoring threads (None: one per core).
        cache: SQLite path; None keeps the cache in the child's memory.
        limits: other :class:`ServerConfig` fields (``queue_items``, ``max_items``, ``item_timeout_s`` ...).
    Returns:
        a :class:`ServerHandle`; the child also stops when this process exits.
    Raises:
        RuntimeError: the server exited or did not answer within ``startup_timeout_s`` (with its log).
    """
    workdir = tempfile.TemporaryDirectory(prefix="rtlforge-server-")
    root = Path(workdir.name)
    argv = [
        sys.executable,
        "-m",
        "rewards.server",
        "--host",
        host,
        "--port",
        str(port),
        "--cache",
        str(Path(cache).resolve()) if cache is not None else "none",
        "--parent-pid",
        str(os.getpid()),
    ]
    argv += ["--config", str(_config_file(config, root))] if config is not None else []
    files = [str(Path(p).resolve()) for p in task_files]
    if tasks is not None:
        files.append(str(_tasks_file(tasks, root)))
    argv += ["--tasks", *files] if files else []
    argv += ["--workers", str(workers or 0)]
    for name, value in limits.items():
        if name not in ServerConfig.__dataclass_fields__:
            raise TypeError(
                f"start_background got unknown limit {name!r}; valid: "
                f"{sorted(ServerConfig.__dataclass_fields__)}"
            )
        argv += [f"--{name.replace('_', '-')}", str(value)]
    log_path = root / "server.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env()
        )
    url = _wait_listening(process, log_path, startup_timeout_s)
    log.info("reward server pid %d listening on %s", process.pid, url)
    return ServerHandle(process, url, workdir, log_path)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _config_file(config: RewardConfig | str | Path, root: Path) -> Path:
    if not isinstance(config, RewardConfig):
        return Path(config).resolve()
    path = root / "reward.json"  # JSON is YAML, and keeps floats exact
    path.write_text(json.dumps(config.to_dict()))
    return path


def _tasks_file(tasks: Iterable[Task] | Mapping[str, Task], root: Path) -> Path:
    path = root / "tasks.jsonl"
    values = tasks.values() if isinstance(tasks, Mapping) else tasks
    with path.open("w", encoding="utf-8") as handle:
        for task in values:
            handle.write(json.dumps(task.to_dict(), ensure_ascii=False) + "\n")
    return path


def _wait_listening(process: subprocess.Popen, log_path: Path, timeout_s: float) -> str:
    """The URL the child printed, once it also answers /healthz."""
    import httpx

    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"reward server exited with code {process.returncode} during startup:\n"
                f"{log_path.read_text(errors='replace')[-4000:]}"
            )
        if url is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if " listening on " in line:
                    url = line.split(" listening on ")[1].split()[0]
        if url is not None:
            try:
                httpx.get(url + "/healthz", timeout=5.0)
                return url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        f"reward server did not answer within {timeout_s} s:\n{log_path.read_text(errors='replace')[-4000:]}"
    )
