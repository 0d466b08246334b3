"""Launch planning: Slurm rendering (dry run), sweep expansion, and the local launcher end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch.cli import main
from launch.plan import ClusterConfig, LaunchError, Plan, load_yaml_dataclass, read_run_config
from launch.sweep import expand_sweep

REPO = Path(__file__).resolve().parents[1]
RECIPE = "configs/grpo/qwen2.5-coder-7b_zero3-vllm.yaml"


def _cluster(tmp_path: Path, **values) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "train_nodes": 2,
                "gpus_per_node": 8,
                "vllm_nodes": 1,
                "vllm_tensor_parallel": 4,
                "reward_replicas": 3,
                "reward_port": 9100,
                **values,
            }
        )
    )
    return path


def _render(tmp_path: Path, cluster: Path, nodes: str, algo: str = "grpo", config: str = RECIPE) -> str:
    env = {
        **os.environ,
        "RTLF_DRY_RUN": "1",
        "RTLF_NODES": nodes,
        "RTLF_ALGO": algo,
        "RTLF_CONFIG": config,
        "RTLF_CLUSTER": str(cluster),
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", "launch/train.slurm"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_slurm_dry_run_prints_resources(tmp_path: Path, capsys) -> None:
    assert (
        main(
            ["slurm", "--algo", "grpo", "--config", RECIPE, "--cluster", str(_cluster(tmp_path)), "--dry-run"]
        )
        == 0
    )
    out = capsys.readouterr().out
    sbatch = out.splitlines()[0]
    assert sbatch.startswith("sbatch ") and "--nodes=3" in sbatch and "--gpus-per-node=8" in sbatch
    assert "RTLF_NUM_PROCESSES=16" in out and "RTLF_VLLM_NODES=1" in out


def test_rendered_script_places_every_part(tmp_path: Path) -> None:
    out = _render(tmp_path, _cluster(tmp_path), "n1 n2 n3")
    lines = out.splitlines()
    reward = [line for line in lines if "rewards.server" in line]
    assert len(reward) == 3
    assert [re.search(r"-w (\S+)", line).group(1) for line in reward] == ["n1", "n2", "n1"]
    assert [line.split("--port ")[-1].split()[0] for line in reward] == ["9100", "9101", "9102"]
    vllm = [line for line in lines if "vllm-serve" in line]
    assert len(vllm) == 1 and "-w n3" in vllm[0] and "--tensor_parallel_size 4" in vllm[0]
    assert "Qwen/Qwen2.5-Coder-7B-Instruct" in vllm[0]
    trainer = [line for line in lines if "accelerate.commands.launch" in line]
    assert len(trainer) == 1
    t = trainer[0]
    assert "--nodes=2" in t and "-w n1,n2" in t and "--num_machines 2" in t and "--num_processes 16" in t
    assert "--main_process_ip n1" in t and '--machine_rank "$SLURM_NODEID"' in t
    assert "--reward_urls http://n1:9100 http://n2:9101 http://n1:9102" in t
    assert "--vllm_server_host n3 --vllm_server_port 8000" in t
    assert f"train/grpo.py --config {REPO / RECIPE}" in t
    assert any("wait for http://n3:8000/health/" in line for line in lines)


def test_reward_nodes_get_the_replicas(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path, vllm_nodes=1, reward_nodes=2, reward_replicas=2)
    out = _render(tmp_path, cluster, "a b c d e")
    reward = [line for line in out.splitlines() if "rewards.server" in line]
    assert ["-w d" in reward[0], "-w e" in reward[1]] == [True, True]


def test_vllm_server_mode_without_vllm_nodes_is_an_error(tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "slurm",
            "--algo",
            "grpo",
            "--config",
            RECIPE,
            "--cluster",
            str(_cluster(tmp_path, vllm_nodes=0)),
            "--dry-run",
        ]
    )
    assert rc == 2
    assert "vllm_nodes >= 1" in capsys.readouterr().err


def test_unknown_cluster_key_lists_valid_ones(tmp_path: Path) -> None:
    bad = tmp_path / "c.yaml"
    bad.write_text("train_nodes: 1\ngpu_per_node: 8\n")
    with pytest.raises(LaunchError, match=r"unknown keys \['gpu_per_node'\].*gpus_per_node"):
        load_yaml_dataclass(ClusterConfig, bad)


def test_sweep_expansion_grid_times_list() -> None:
    jobs = expand_sweep(
        {
            "grid": {"learning_rate": [1e-6, 3e-6], "beta": [0.0, 0.04]},
            "list": [{"epsilon_high": 0.28}, {"epsilon_high": 0.2}],
        }
    )
    assert len(jobs) == 8
    assert {tuple(sorted(j.items())) for j in jobs} == {
        (("beta", b), ("epsilon_high", e), ("learning_rate", lr))
        for lr in (1e-6, 3e-6)
        for b in (0.0, 0.04)
        for e in (0.28, 0.2)
    }
    with pytest.raises(LaunchError, match="grid"):
        expand_sweep({"grid": {"learning_rate": []}})


def test_sweep_dry_run_writes_resolved_configs(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "lr",
                "algo": "grpo",
                "base": str(REPO / RECIPE),
                "output_root": str(tmp_path / "runs"),
                "cluster": str(_cluster(tmp_path)),
                "grid": {"learning_rate": [1e-6, 2e-6, 3e-6]},
            }
        )
    )
    assert main(["sweep", "--sweep", str(sweep), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--array=0-2" in out
    configs = sorted((tmp_path / "runs" / "lr").glob("*/config.yaml"))
    assert len(configs) == 3
    resolved = [read_run_config(c) for c in configs]
    assert [r["learning_rate"] for r in resolved] == [1e-6, 2e-6, 3e-6]
    assert all(r["model_name_or_path"] == "Qwen/Qwen2.5-Coder-7B-Instruct" for r in resolved)
    assert [r["output_dir"] for r in resolved] == [str(c.parent) for c in configs]
    manifest = (tmp_path / "runs" / "lr" / "manifest.txt").read_text().split()
    assert manifest == [str(c) for c in configs]


def test_every_plan_env_value_is_shell_safe(tmp_path: Path) -> None:
    plan = Plan(
        "grpo", RECIPE, load_yaml_dataclass(ClusterConfig, _cluster(tmp_path)), read_run_config(REPO / RECIPE)
    )
    env = plan.env()
    assert env["RTLF_TOTAL_NODES"] == "3" and env["RTLF_REWARD_REPLICAS"] == "3"
    assert all("\n" not in value for value in env.values())


def test_local_launcher_runs_one_grpo_step_and_cleans_up(tmp_path: Path) -> None:
    from rewards.tasks import load_tasks
    from train.tiny import build_tiny_model, task_texts

    tasks_file = REPO / "tests" / "data" / "grpo_tasks.jsonl"
    model = build_tiny_model(
        tmp_path / "policy",
        task_texts(load_tasks(tasks_file)),
        vocab_size=600,
        hidden_size=64,
        num_layers=2,
        num_heads=2,
        intermediate_size=128,
    )
    before = subprocess.run(["pgrep", "-f", "rewards.server"], capture_output=True, text=True).stdout.split()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch",
            "local",
            "--algo",
            "grpo",
            "--config",
            "configs/grpo/tiny_cpu.yaml",
            "--reward-workers",
            "2",
            "--",
            "--model_name_or_path",
            str(model),
            "--train_tasks",
            str(tasks_file),
            "--max_steps",
            "1",
            "--output_dir",
            str(tmp_path / "run"),
            "--eval_pass_at_1",
            "false",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--per_device_train_batch_size",
            "8",
            "--num_generations",
            "4",
            "--max_completion_length",
            "32",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "RTLFORGE_REWARD_CACHE": str(tmp_path / "reward-cache.sqlite")},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "launch: reward server at http://127.0.0.1:" in proc.stdout
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records)
    after = subprocess.run(["pgrep", "-f", "rewards.server"], capture_output=True, text=True).stdout.split()
    assert set(after) <= set(before), "the reward server outlived the launcher"


def test_evals_job_dry_run_keeps_arguments_intact(tmp_path: Path, capsys) -> None:
    args = [
        "--suite",
        "rtllm-v1.1",
        "--data",
        "../shared/benchmarks",
        "--model",
        "ckpt dir",
        "--n",
        "10",
        "--out",
        "runs/e",
    ]
    assert main(["evals", "--cluster", str(_cluster(tmp_path)), "--dry-run", "--", *args]) == 0
    line = capsys.readouterr().out.strip()
    assert "--nodes=1" in line and "--gpus-per-node=8" in line and line.endswith("launch/eval.slurm")
    quoted = line.split(" sbatch ")[0].split("=", 1)[1]
    env = {
        **os.environ,
        "RTLF_DRY_RUN": "1",
        "RTLF_EVAL_ARGS": subprocess.run(
            ["bash", "-c", f"printf %s {quoted}"], capture_output=True, text=True
        ).stdout,
        "SLURM_CPUS_PER_TASK": "16",
        "PYTHON": sys.executable,
    }
    out = subprocess.run(
        ["bash", "launch/eval.slurm"], cwd=REPO, env=env, capture_output=True, text=True
    ).stdout
    assert out.strip() == f"+ {sys.executable} -m evals run " + " ".join(args) + " --jobs 16"
    assert main(["evals", "--cluster", str(_cluster(tmp_path)), "--dry-run"]) == 2


def test_cpu_cluster_requests_no_gpus(tmp_path: Path, capsys) -> None:
    cluster = _cluster(tmp_path, train_nodes=2, gpus_per_node=0, vllm_nodes=0)
    recipe = "configs/grpo/tiny_cpu.yaml"
    assert main(["slurm", "--algo", "grpo", "--config", recipe, "--cluster", str(cluster), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--gpus-per-node" not in out.splitlines()[0] and "--output=" in out.splitlines()[0]
    assert "RTLF_NUM_PROCESSES=2" in out
    with pytest.raises(LaunchError, match="vLLM server needs GPUs"):
        load_yaml_dataclass(ClusterConfig, _cluster(tmp_path, gpus_per_node=0))
