"""Plan and start multi-process runs: Slurm jobs, sweeps, and the same topology on one machine.

    # Slurm: print (dry run) or submit the GRPO job described by a run config + a cluster file
    python -m train.launch slurm --algo grpo --config configs/grpo/qwen2.5-coder-7b_zero3-vllm.yaml \
        --cluster configs/cluster/example.yaml [--dry-run]
    # Sweeps: expand a grid/list over config keys into one job each (a Slurm array)
    python -m train.launch sweep --sweep configs/sweeps/example.yaml [--dry-run]
    # Evaluation as a one-node Slurm job (arguments after -- go to `python -m evals run`)
    python -m train.launch evals --cluster configs/cluster/example.yaml [--dry-run] -- --suite rtllm-v1.1 \
        --data ../shared/benchmarks --model CKPT --n 10 --backend vllm --out runs/eval
    # One machine, no Slurm: reward server (+ optional vLLM server) + trainer, torn down on exit
    python -m train.launch local --algo grpo [--config ...] [--vllm] [-- extra trainer args]

The Slurm scripts in ``launch/`` hold no logic: they ``eval`` the variables printed by
``python -m train.launch env`` (node counts, ports, commands), which come from the run config parsed
here, never from grep/awk on YAML.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
ALGOS = {"grpo": "train/grpo.py", "dpo": "train/dpo.py", "sft": "train/sft.py"}


class LaunchError(ValueError):
    """A launch request is inconsistent; the message says which values and what to set."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the parts of a run go. Every field has a default so a small file is enough."""

    train_nodes: int = field(
        default=1, metadata={"help": "nodes running the trainer (accelerate multi-node)"}
    )
    gpus_per_node: int = field(default=8, metadata={"help": "GPUs per node (trainer processes per node)"})
    vllm_nodes: int = field(
        default=0, metadata={"help": "nodes running `trl vllm-serve` (0: colocate or HF)"}
    )
    vllm_tensor_parallel: int = field(default=1, metadata={"help": "tensor parallel size of the vLLM server"})
    vllm_data_parallel: int = field(default=1, metadata={"help": "data parallel size of the vLLM server"})
    vllm_port: int = field(default=8000, metadata={"help": "port of the vLLM server"})
    reward_nodes: int = field(
        default=0,
        metadata={
            "help": "CPU nodes for reward servers (0: run the replicas on the trainer nodes' CPU cores)"
        },
    )
    reward_replicas: int = field(default=1, metadata={"help": "reward-server processes in total"})
    reward_workers: int = field(default=16, metadata={"help": "scoring workers per reward-server replica"})
    reward_port: int = field(
        default=8100, metadata={"help": "first reward-server port (replica i: port + i)"}
    )
    main_port: int = field(default=29500, metadata={"help": "accelerate rendezvous port"})
    accelerate_config: str = field(
        default="configs/accelerate/zero3.yaml", metadata={"help": "accelerate config for the trainer"}
    )
    partition: str = field(default="", metadata={"help": "Slurm partition (empty: cluster default)"})
    account: str = field(default="", metadata={"help": "Slurm account (empty: none)"})
    time: str = field(default="24:00:00", metadata={"help": "Slurm time limit"})
    cpus_per_task: int = field(default=16, metadata={"help": "CPUs per Slurm task"})
    job_name: str = field(default="rtlforge", metadata={"help": "Slurm job name"})

    def __post_init__(self) -> None:
        if self.train_nodes < 1 or self.gpus_per_node < 1:
            raise LaunchError(
                f"train_nodes={self.train_nodes}, gpus_per_node={self.gpus_per_node}: both must be >= 1"
            )
        if (
            self.vllm_nodes
            and self.vllm_tensor_parallel * self.vllm_data_parallel > self.vllm_nodes * self.gpus_per_node
        ):
            raise LaunchError(
                f"vLLM needs tensor_parallel*data_parallel={self.vllm_tensor_parallel * self.vllm_data_parallel} "
                f"GPUs but vllm_nodes*gpus_per_node={self.vllm_nodes * self.gpus_per_node}; add vllm_nodes"
            )
        if self.reward_replicas < 1:
            raise LaunchError("reward_replicas must be >= 1 (the trainer needs a reward server)")

    @property
    def total_nodes(self) -> int:
        return self.train_nodes + self.vllm_nodes + self.reward_nodes


def load_yaml_dataclass(cls: type, path: str | Path | None, overrides: dict[str, Any] | None = None) -> Any:
    """Dataclass from YAML + overrides; unknown keys raise :class:`LaunchError` listing the valid ones."""
    values: dict[str, Any] = {}
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise LaunchError(f"cannot read {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise LaunchError(f"{path} must be a mapping of field: value")
        values.update(loaded)
    values.update(overrides or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise LaunchError(f"unknown keys {unknown} in {path or 'overrides'}; valid keys are {sorted(known)}")
    return cls(**values)


def read_run_config(path: str | Path | None) -> dict[str, Any]:
    """The trainer's YAML as a plain mapping (the trainer itself validates it when it starts)."""
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"cannot read run config {path}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise LaunchError(f"run config {path} must be a mapping")
    return loaded


@dataclass(frozen=True)
class Plan:
    """Everything the Slurm script needs, as shell variables."""

    algo: str
    config: str
    cluster: ClusterConfig
    run: dict[str, Any]

    def reward_urls(self, hosts: list[str] | None = None) -> list[str]:
        hosts = hosts or ["127.0.0.1"]
        return [
            f"http://{hosts[i % len(hosts)]}:{self.cluster.reward_port + i}"
            for i in range(self.cluster.reward_replicas)
        ]

    def trainer_args(self) -> list[str]:
        args = [ALGOS[self.algo]]
        if self.config:
            args += ["--config", self.config]
        return args

    def env(self) -> dict[str, str]:
        c = self.cluster
        model = str(self.run.get("model_name_or_path", ""))
        use_vllm = bool(self.run.get("use_vllm", False)) and c.vllm_nodes > 0
        if self.run.get("use_vllm") and self.run.get("vllm_mode", "server") == "server" and c.vllm_nodes == 0:
            raise LaunchError(
                f"{self.config}: use_vllm with vllm_mode=server needs vllm_nodes >= 1 in the cluster file "
                "(or set vllm_mode: colocate)"
            )
        return {
            "RTLF_ALGO": self.algo,
            "RTLF_CONFIG": self.config,
            "RTLF_TOTAL_NODES": str(c.total_nodes),
            "RTLF_TRAIN_NODES": str(c.train_nodes),
            "RTLF_GPUS_PER_NODE": str(c.gpus_per_node),
            "RTLF_NUM_PROCESSES": str(c.train_nodes * c.gpus_per_node),
            "RTLF_VLLM_NODES": str(c.vllm_nodes if use_vllm else 0),
            "RTLF_VLLM_PORT": str(c.vllm_port),
            "RTLF_VLLM_CMD": shlex.join(
                [
                    "trl",
                    "vllm-serve",
                    "--model",
                    model,
                    "--tensor_parallel_size",
                    str(c.vllm_tensor_parallel),
                    "--data_parallel_size",
                    str(c.vllm_data_parallel),
                    "--host",
                    "0.0.0.0",
                    "--port",
                    str(c.vllm_port),
                ]
            ),
            "RTLF_REWARD_NODES": str(c.reward_nodes),
            "RTLF_REWARD_REPLICAS": str(c.reward_replicas),
            "RTLF_REWARD_PORT": str(c.reward_port),
            "RTLF_REWARD_CMD": shlex.join(reward_server_argv(self.run, c.reward_workers, host="0.0.0.0")),
            "RTLF_MAIN_PORT": str(c.main_port),
            "RTLF_ACCELERATE_CONFIG": c.accelerate_config,
            "RTLF_TRAINER_ARGS": shlex.join(self.trainer_args()),
            "RTLF_OUTPUT_DIR": str(self.run.get("output_dir", f"runs/{c.job_name}")),
        }


def reward_server_argv(
    run: dict[str, Any], workers: int, host: str = "127.0.0.1", port: int | None = None
) -> list[str]:
    """Command line of one reward-server replica (port appended by the caller when ``port`` is None)."""
    argv = [
        sys.executable if host == "127.0.0.1" else "python",
        "-m",
        "rewards.server",
        "--host",
        host,
        "--workers",
        str(workers),
    ]
    if run.get("reward_config"):
        argv += ["--config", str(run["reward_config"])]
    tasks = [run[key] for key in ("train_tasks", "eval_tasks") if run.get(key)]
    if tasks:
        argv += ["--tasks", *map(str, tasks)]
    if port is not None:
        argv += ["--port", str(port)]
    return argv


def sbatch_argv(plan: Plan, script: str, extra: list[str] | None = None) -> list[str]:
    c = plan.cluster
    argv = [
        "sbatch",
        f"--job-name={c.job_name}",
        f"--nodes={c.total_nodes}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={c.cpus_per_task}",
        f"--time={c.time}",
        "--exclusive",
    ]
    if c.gpus_per_node:
        argv.append(f"--gpus-per-node={c.gpus_per_node}")
    if c.partition:
        argv.append(f"--partition={c.partition}")
    if c.account:
        argv.append(f"--account={c.account}")
    return argv + list(extra or []) + [script]


# ----------------------------------------------------------------------------------------- sweeps
@dataclass(frozen=True)
class SweepJob:
    index: int
    overrides: dict[str, Any]
    config_path: Path
    run_dir: Path


def expand_sweep(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Override sets of a sweep: the cartesian product of ``grid`` times each entry of ``list``.

    ``grid: {learning_rate: [1e-6, 3e-6], beta: [0.0, 0.04]}`` gives 4 jobs; ``list: [{...}, {...}]`` gives
    one job per entry; both together give every grid point combined with every list entry.
    """
    unknown = sorted(set(spec) - {"name", "algo", "base", "cluster", "grid", "list", "output_root"})
    if unknown:
        raise LaunchError(
            f"sweep file has unknown keys {unknown}; valid: name, algo, base, cluster, grid, list, output_root"
        )
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise LaunchError("sweep 'grid' must map each config key to a non-empty list of values")
    items = spec.get("list") or [{}]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise LaunchError("sweep 'list' must be a list of mappings of config key: value")
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    return [{**point, **item} for point in points for item in items]


def write_sweep(spec: dict[str, Any], sweep_path: str | Path) -> tuple[list[SweepJob], Path]:
    """Resolve every job's config (base YAML + overrides) into its own run directory; returns the manifest."""
    name = spec.get("name") or Path(sweep_path).stem
    base = read_run_config(spec.get("base"))
    root = Path(spec.get("output_root", "runs/sweeps")) / name
    jobs = []
    for index, overrides in enumerate(expand_sweep(spec)):
        run_dir = root / f"{index:03d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**base, **overrides, "output_dir": str(run_dir)}
        if "run_name" in base or spec.get("algo", "grpo") in ("grpo", "dpo", "sft"):
            resolved["run_name"] = f"{name}-{index:03d}"
        config_path = run_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(resolved, sort_keys=False))
        jobs.append(SweepJob(index, overrides, config_path, run_dir))
    manifest = root / "manifest.txt"
    manifest.write_text("".join(f"{job.config_path}\n" for job in jobs))
    (root / "sweep.json").write_text(
        json.dumps(
            [{"index": j.index, "overrides": j.overrides, "config": str(j.config_path)} for j in jobs],
            indent=1,
        )
    )
    return jobs, manifest


# ------------------------------------------------------------------------------------ local runs
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


# ------------------------------------------------------------------------------------------- CLI
def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m train.launch", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("slurm", "env"):
        p = sub.add_parser(
            name, help="submit a Slurm job" if name == "slurm" else "print the plan as shell variables"
        )
        p.add_argument("--algo", choices=sorted(ALGOS), default="grpo")
        p.add_argument("--config", default="", help="run config YAML (configs/<algo>/...)")
        p.add_argument("--cluster", default=None, help="cluster YAML (fields of ClusterConfig)")
        if name == "slurm":
            p.add_argument(
                "--dry-run", action="store_true", help="print the sbatch command and plan, submit nothing"
            )
    s = sub.add_parser("sweep", help="expand a sweep file into jobs (a Slurm array)")
    s.add_argument("--sweep", required=True)
    s.add_argument("--dry-run", action="store_true")
    s.add_argument("--cluster", default=None, help="cluster YAML (overrides the sweep file's)")
    ev = sub.add_parser("evals", help="submit `python -m evals run <args after -->` as a one-node Slurm job")
    ev.add_argument("--cluster", default=None, help="cluster YAML (partition, account, time, gpus_per_node)")
    ev.add_argument("--dry-run", action="store_true")
    loc = sub.add_parser("local", help="reward server (+ vLLM) + trainer on this machine")
    loc.add_argument("--algo", choices=["grpo", "dpo"], default="grpo")
    loc.add_argument("--config", default=None)
    loc.add_argument("--vllm", action="store_true", help="also start `trl vllm-serve` (GPU)")
    loc.add_argument("--reward-workers", type=int, default=max(1, (os.cpu_count() or 2)))
    loc.add_argument("--num-processes", type=int, default=1)
    return parser.parse_known_args(argv)


def _script_for(algo: str) -> str:
    return str(REPO / "launch" / "train.slurm")


def main(argv: list[str] | None = None) -> int:
    args, extra = _parse(argv)
    try:
        if args.command == "local":
            extra = extra[1:] if extra[:1] == ["--"] else extra
            return run_local(
                args.algo,
                args.config,
                vllm=args.vllm,
                reward_workers=args.reward_workers,
                extra=extra,
                num_processes=args.num_processes,
            )
        if args.command == "sweep":
            return _cmd_sweep(args)
        if args.command == "evals":
            return _cmd_evals(args, extra[1:] if extra[:1] == ["--"] else extra)
        plan = Plan(
            args.algo,
            args.config,
            load_yaml_dataclass(ClusterConfig, args.cluster),
            read_run_config(args.config),
        )
        env = plan.env()
        if args.command == "env":
            print("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()), end="")
            return 0
        argv_ = sbatch_argv(
            plan,
            _script_for(args.algo),
            [
                f"--export=ALL,RTLF_CONFIG={args.config},"
                f"RTLF_ALGO={args.algo},RTLF_CLUSTER={args.cluster or ''}"
            ],
        )
        print(shlex.join(argv_))
        if args.dry_run:
            print("".join(f"  {k}={v}\n" for k, v in env.items()), end="")
            return 0
        return subprocess.call(argv_, cwd=REPO)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _cmd_evals(args: argparse.Namespace, eval_args: list[str]) -> int:
    if not eval_args:
        raise LaunchError(
            "give the `python -m evals run` arguments after --, e.g. -- --suite rtllm-v1.1 "
            "--data ../shared/benchmarks --model CKPT --n 10 --out runs/eval"
        )
    cluster = load_yaml_dataclass(ClusterConfig, args.cluster)
    c = dataclasses.replace(cluster, train_nodes=1, vllm_nodes=0, reward_nodes=0)
    argv_ = [
        "sbatch",
        f"--job-name={c.job_name}-eval",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={c.cpus_per_task}",
        f"--time={c.time}",
        f"--gpus-per-node={c.gpus_per_node}",
    ]
    argv_ += [f"--partition={c.partition}"] if c.partition else []
    argv_ += [f"--account={c.account}"] if c.account else []
    # sbatch splits --export on commas, so the arguments travel in the environment instead
    argv_ += ["--export=ALL", str(REPO / "launch" / "eval.slurm")]
    print(f"RTLF_EVAL_ARGS={shlex.quote(shlex.join(eval_args))} " + shlex.join(argv_))
    if args.dry_run:
        return 0
    return subprocess.call(argv_, cwd=REPO, env={**os.environ, "RTLF_EVAL_ARGS": shlex.join(eval_args)})


def _cmd_sweep(args: argparse.Namespace) -> int:
    try:
        spec = yaml.safe_load(Path(args.sweep).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LaunchError(f"cannot read sweep file {args.sweep}: {exc}") from exc
    algo = spec.get("algo", "grpo")
    if algo not in ALGOS:
        raise LaunchError(f"sweep algo {algo!r} is unknown; valid: {sorted(ALGOS)}")
    jobs, manifest = write_sweep(spec, args.sweep)
    cluster = load_yaml_dataclass(ClusterConfig, args.cluster or spec.get("cluster"))
    plan = Plan(algo, str(jobs[0].config_path), cluster, read_run_config(jobs[0].config_path))
    plan.env()  # validates the topology against the first job's config
    argv_ = sbatch_argv(
        plan,
        _script_for(algo),
        [
            f"--array=0-{len(jobs) - 1}",
            f"--export=ALL,RTLF_MANIFEST={manifest},RTLF_ALGO={algo},RTLF_CLUSTER={args.cluster or spec.get('cluster') or ''}",
        ],
    )
    for job in jobs:
        print(f"job {job.index:03d}: {json.dumps(job.overrides)} -> {job.config_path}")
    print(shlex.join(argv_))
    if args.dry_run:
        return 0
    return subprocess.call(argv_, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
