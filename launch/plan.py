"""What a Slurm job runs where: the cluster file, the run config, and the plan built from both.

The job script (``launch/train.slurm``) holds no logic; it ``eval``s :meth:`Plan.env`, printed on the
allocated node by ``python -m launch env``.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewards.config import option

REPO = Path(__file__).resolve().parents[1]
ALGOS = {"grpo": "train/grpo.py", "dpo": "train/dpo.py", "sft": "train/sft.py"}


class LaunchError(ValueError):
    """A launch request is inconsistent; the message says which values and what to set."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where the parts of a run go. Every field has a default so a small file is enough."""

    train_nodes: int = option(1, "nodes running the trainer (accelerate multi-node)")
    gpus_per_node: int = option(
        8,
        "GPUs per node = trainer processes per node; 0: CPU nodes (one trainer process each, "
        "no --gpus-per-node request)",
    )
    vllm_nodes: int = option(0, "nodes running `trl vllm-serve` (0: colocate or HF)")
    vllm_tensor_parallel: int = option(1, "tensor parallel size of the vLLM server")
    vllm_data_parallel: int = option(1, "data parallel size of the vLLM server")
    vllm_port: int = option(8000, "port of the vLLM server")
    reward_nodes: int = option(
        0, "CPU nodes for reward servers (0: run the replicas on the trainer nodes' CPU cores)"
    )
    reward_replicas: int = option(1, "reward-server processes in total")
    reward_workers: int = option(16, "scoring workers per reward-server replica")
    reward_port: int = option(8100, "first reward-server port (replica i: port + i)")
    main_port: int = option(29500, "accelerate rendezvous port")
    accelerate_config: str = option("configs/accelerate/zero3.yaml", "accelerate config for the trainer")
    partition: str = option("", "Slurm partition (empty: cluster default)")
    account: str = option("", "Slurm account (empty: none)")
    time: str = option("24:00:00", "Slurm time limit")
    cpus_per_task: int = option(16, "CPUs per Slurm task (one task per node)")
    job_name: str = option("rtlforge", "Slurm job name")

    def __post_init__(self) -> None:
        if self.train_nodes < 1 or self.gpus_per_node < 0:
            raise LaunchError(
                f"train_nodes={self.train_nodes}, gpus_per_node={self.gpus_per_node}: train_nodes must be "
                ">= 1 and gpus_per_node >= 0 (0 for CPU nodes)"
            )
        if self.vllm_nodes and not self.gpus_per_node:
            raise LaunchError(
                f"vllm_nodes={self.vllm_nodes} with gpus_per_node=0: a vLLM server needs GPUs; set "
                "gpus_per_node or vllm_nodes: 0"
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

    @property
    def processes_per_node(self) -> int:
        """Trainer processes per node: one per GPU, or one on a CPU node."""
        return max(1, self.gpus_per_node)


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


def absolute(path: str | Path | None) -> str:
    """``path`` made absolute against the caller's directory (jobs start in the repository), or ''."""
    return str(Path(path).resolve()) if path else ""


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

    def output_dir(self) -> str:
        """The run directory (the recipe's ``output_dir``, else ``runs/<job_name>``), absolute."""
        out = Path(str(self.run.get("output_dir") or f"runs/{self.cluster.job_name}"))
        return str(out if out.is_absolute() else REPO / out)

    def env(self) -> dict[str, str]:
        c = self.cluster
        model = str(self.run.get("model_name_or_path", ""))
        use_vllm = bool(self.run.get("use_vllm", False)) and c.vllm_nodes > 0
        if self.run.get("use_vllm") and self.run.get("vllm_mode", "server") == "server" and c.vllm_nodes == 0:
            raise LaunchError(
                f"{self.config}: use_vllm with vllm_mode=server needs vllm_nodes >= 1 in the cluster file "
                "(or set vllm_mode: colocate)"
            )
        vllm_cmd = [
            "trl",
            "vllm-serve",
            "--model",
            model,
            "--tensor_parallel_size",
            str(c.vllm_tensor_parallel),
        ]
        vllm_cmd += ["--data_parallel_size", str(c.vllm_data_parallel), "--host", "0.0.0.0"]
        vllm_cmd += ["--port", str(c.vllm_port)]
        return {
            "RTLF_ALGO": self.algo,
            "RTLF_CONFIG": self.config,
            "RTLF_TOTAL_NODES": str(c.total_nodes),
            "RTLF_TRAIN_NODES": str(c.train_nodes),
            "RTLF_GPUS_PER_NODE": str(c.gpus_per_node),
            "RTLF_NUM_PROCESSES": str(c.train_nodes * c.processes_per_node),
            "RTLF_VLLM_NODES": str(c.vllm_nodes if use_vllm else 0),
            "RTLF_VLLM_PORT": str(c.vllm_port),
            "RTLF_VLLM_CMD": shlex.join(vllm_cmd),
            "RTLF_REWARD_NODES": str(c.reward_nodes),
            "RTLF_REWARD_REPLICAS": str(c.reward_replicas),
            "RTLF_REWARD_PORT": str(c.reward_port),
            "RTLF_REWARD_CMD": shlex.join(reward_server_argv(self.run, c.reward_workers, host="0.0.0.0")),
            "RTLF_MAIN_PORT": str(c.main_port),
            "RTLF_ACCELERATE_CONFIG": c.accelerate_config,
            "RTLF_TRAINER_ARGS": shlex.join(self.trainer_args()),
            "RTLF_OUTPUT_DIR": self.output_dir(),
        }


def reward_server_argv(
    run: dict[str, Any], workers: int, host: str = "127.0.0.1", port: int | None = None
) -> list[str]:
    """Command line of one reward-server replica (port appended by the caller when ``port`` is None).

    The interpreter is this one: in a Slurm job the plan is printed on the allocated node, so it is the
    node's Python.
    """
    argv = [sys.executable, "-m", "rewards.server", "--host", host, "--workers", str(workers)]
    if run.get("reward_config"):
        argv += ["--config", str(run["reward_config"])]
    tasks = [run[key] for key in ("train_tasks", "eval_tasks") if run.get(key)]
    if tasks:
        argv += ["--tasks", *map(str, tasks)]
    if port is not None:
        argv += ["--port", str(port)]
    return argv


def sbatch_argv(plan: Plan, script: str, extra: list[str] | None = None) -> list[str]:
    """``sbatch`` command line for ``script`` with the plan's resources (``extra`` before the script)."""
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
