"""One machine, no Slurm: reward server (+ vLLM server) + trainer, every process group stopped on exit."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from launch.plan import ALGOS, REPO, LaunchError, read_run_config, reward_server_argv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LaunchError(f"{proc.args[:4]} exited with code {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise LaunchError(f"{url} did not answer within {timeout_s:.0f} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
    for proc in reversed(procs):
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_local(
    algo: str,
    config: str | None,
    *,
    vllm: bool,
    reward_workers: int,
    extra: list[str],
    num_processes: int = 1,
) -> int:
    """Reward server (+ vLLM server) + trainer on this machine; everything stopped when the trainer ends."""
    run = read_run_config(config)
    procs: list[subprocess.Popen] = []
    try:
        port = _free_port()
        procs.append(
            subprocess.Popen(
                reward_server_argv(run, reward_workers, port=port), cwd=REPO, start_new_session=True
            )
        )
        url = f"http://127.0.0.1:{port}"
        _wait_http(f"{url}/healthz", 120, procs[-1])
        print(f"launch: reward server at {url}", flush=True)
        trainer = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes)]
        trainer.append(ALGOS[algo])
        if config:
            trainer += ["--config", config]
        trainer += ["--reward_urls", url]
        if vllm:
            vport = _free_port()
            model = str(run.get("model_name_or_path", ""))
            procs.append(
                subprocess.Popen(
                    ["trl", "vllm-serve", "--model", model, "--port", str(vport)],
                    cwd=REPO,
                    start_new_session=True,
                )
            )
            _wait_http(f"http://127.0.0.1:{vport}/health/", 900, procs[-1])
            trainer += ["--use_vllm", "true", "--vllm_mode", "server", "--vllm_server_port", str(vport)]
        print("launch: " + shlex.join(trainer + extra), flush=True)
        procs.append(subprocess.Popen(trainer + extra, cwd=REPO, start_new_session=True))
        return procs[-1].wait()
    finally:
        _stop(procs)
