"""Plan and start multi-process runs: Slurm jobs, sweeps, evaluations, and the same topology on one machine.

    # Slurm: print (dry run) or submit the GRPO job described by a run config + a cluster file
    python -m launch slurm --algo grpo --config configs/grpo/qwen2.5-coder-7b_zero3-vllm.yaml \\
        --cluster configs/cluster/example.yaml [--dry-run]
    # Sweeps: expand a grid/list over config keys into one job each (a Slurm array)
    python -m launch sweep --sweep configs/sweeps/example.yaml [--dry-run]
    # Evaluation as a one-node Slurm job (arguments after -- go to `python -m evals run`)
    python -m launch evals --cluster configs/cluster/example.yaml [--dry-run] -- --suite rtllm-v1.1 \\
        --data ../shared/benchmarks --model CKPT --n 10 --backend vllm --out runs/eval
    # One machine, no Slurm: reward server (+ optional vLLM server) + trainer, torn down on exit
    python -m launch local --algo grpo [--config ...] [--vllm] [-- extra trainer args]

The Slurm scripts beside this file hold no logic: they ``eval`` the variables printed by
``python -m launch env`` (node counts, ports, commands), which come from the run config parsed
here, never from grep/awk on YAML. A job's Slurm log and its state record (``slurm_job.json``) go
into its run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from launch.local import run_local
from launch.plan import (
    ALGOS,
    REPO,
    ClusterConfig,
    LaunchError,
    Plan,
    absolute,
    load_yaml_dataclass,
    read_run_config,
    sbatch_argv,
)
from launch.sweep import write_sweep

TRAIN_SCRIPT = REPO / "launch" / "train.slurm"
EVAL_SCRIPT = REPO / "launch" / "eval.slurm"


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m launch", description=__doc__.split("\n")[0])
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
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("local", "evals"):
        parser.error(f"unrecognized arguments for `{args.command}`: {' '.join(extra)}")
    return args, extra


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m launch``; returns the exit status (2 for an inconsistent request)."""
    args, extra = _parse(argv)
    extra = extra[1:] if extra[:1] == ["--"] else extra
    try:
        if args.command == "local":
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
            return _cmd_evals(args, extra)
        return _cmd_slurm(args)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _cmd_slurm(args: argparse.Namespace) -> int:
    """``env``: print the plan as shell variables; ``slurm``: submit ``launch/train.slurm`` with it."""
    config, cluster = absolute(args.config), absolute(args.cluster)
    plan = Plan(args.algo, config, load_yaml_dataclass(ClusterConfig, cluster), read_run_config(config))
    env = plan.env()
    if args.command == "env":
        print("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()), end="")
        return 0
    out = Path(env["RTLF_OUTPUT_DIR"])
    argv_ = sbatch_argv(
        plan,
        str(TRAIN_SCRIPT),
        [
            f"--output={out}/slurm-%j.out",
            f"--export=ALL,RTLF_CONFIG={config},RTLF_ALGO={args.algo},RTLF_CLUSTER={cluster}",
        ],
    )
    print(shlex.join(argv_))
    if args.dry_run:
        print("".join(f"  {k}={v}\n" for k, v in env.items()), end="")
        return 0
    out.mkdir(parents=True, exist_ok=True)  # Slurm opens the log there before the job starts
    return subprocess.call(argv_, cwd=REPO)


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
    ]
    argv_ += [f"--gpus-per-node={c.gpus_per_node}"] if c.gpus_per_node else []
    argv_ += [f"--partition={c.partition}"] if c.partition else []
    argv_ += [f"--account={c.account}"] if c.account else []
    # sbatch splits --export on commas, so the arguments travel in the environment instead
    argv_ += ["--export=ALL", str(EVAL_SCRIPT)]
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
    cluster_file = absolute(args.cluster or spec.get("cluster"))
    cluster = load_yaml_dataclass(ClusterConfig, cluster_file)
    plan = Plan(algo, str(jobs[0].config_path), cluster, read_run_config(jobs[0].config_path))
    plan.env()  # validates the topology against the first job's config
    argv_ = sbatch_argv(
        plan,
        str(TRAIN_SCRIPT),
        [
            f"--array=0-{len(jobs) - 1}",
            # %3a: the array index zero-padded like the run directories (000, 001, ...)
            f"--output={manifest.parent}/%3a/slurm-%A_%a.out",
            f"--export=ALL,RTLF_MANIFEST={manifest},RTLF_ALGO={algo},RTLF_CLUSTER={cluster_file}",
        ],
    )
    for job in jobs:
        print(f"job {job.index:03d}: {json.dumps(job.overrides)} -> {job.config_path}")
    print(shlex.join(argv_))
    if args.dry_run:
        return 0
    return subprocess.call(argv_, cwd=REPO)
