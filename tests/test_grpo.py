"""GRPO on the tiny policy against a real reward server on loopback (real Verilator/Icarus/Yosys/OpenSTA).

A small tiny policy is warm-started by SFT on six hand-written tasks so its completions are Verilog of
varying correctness: that gives groups with different rewards, hence nonzero advantages.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM

from rewards.client import RewardInfraError
from rewards.tasks import TaskFileError, load_tasks, union_tasks
from rewards.types import LEVELS
from train import baseline, grpo, sft
from train.tiny import build_tiny_model, task_texts

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "data" / "grpo_tasks.jsonl"
# The arch the GRPO tests were calibrated with (fixed here so DEFAULT_ARCH can change independently).
ARCH = {"vocab_size": 1000, "hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 384}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    tasks = load_tasks(TASKS)
    root = tmp_path_factory.mktemp("policy")
    base = build_tiny_model(root / "base", task_texts(tasks), **ARCH)
    # 60 steps leave the policy half-trained: at temperature 1 its answers mix OK, SIM_MISMATCH,
    # SYNTAX_ERROR and FORMAT_ERROR (measured), so most groups have different rewards.
    return sft.run_sft_on_tasks(
        tasks,
        model=str(base),
        out_dir=root / "sft",
        max_steps=60,
        extra_args=["--per_device_train_batch_size", "6", "--logging_steps", "20", "--learning_rate", "3e-3"],
    )


@pytest.fixture(scope="module")
def server():
    from rewards.background import start_background

    handle = start_background("127.0.0.1", 0, tasks=load_tasks(TASKS), workers=2)
    yield handle
    handle.stop()


def _args(policy: Path, out: Path, url: str, *flags: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(policy),
        "--train_tasks",
        str(TASKS),
        "--reward_urls",
        url,
        "--output_dir",
        str(out),
        "--eval_pass_at_1",
        "false",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "16",
        "--num_generations",
        "4",
        "--max_completion_length",
        "96",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--seed",
        "1",
        "--use_peft",
        "false",  # the embedded recipe trains a LoRA adapter; these runs test full weights unless told
        *flags,
    ]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _weights(path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_full_grpo_two_steps(policy, server, tmp_path):
    before = _weights(policy)
    summary = grpo.main(_args(policy, tmp_path / "run", server.url))
    out = tmp_path / "run"
    after = _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before), "GRPO left every weight unchanged"
    steps = [r for r in _records(out) if "loss" in r and "reward" in r]
    assert len(steps) == 2
    keys = set().union(*steps)
    for level in LEVELS:
        assert any(level in key for key in keys), (
            f"no per-level reward metric for {level!r} in {sorted(keys)}"
        )
    assert "dynamic_sampling/dropped_groups" in keys and "rewards/infra_error_frac" in keys
    assert summary["scored_items"] == 2 * 16 and summary["infra_errors"] == 0
    assert (out / "resolved_config.yaml").is_file() and (out / "config.yaml").is_file()


def test_union_tasks_keeps_each_id_once_and_rejects_a_clash():
    tasks = load_tasks(TASKS)
    assert union_tasks(tasks, tasks[:2]) == tasks
    clash = dataclasses.replace(tasks[0], prompt=tasks[0].prompt + " (changed)")
    with pytest.raises(TaskFileError, match="names two different tasks"):
        union_tasks(tasks, [clash])


def test_eval_on_the_training_tasks_with_the_built_in_reward_server(policy, tmp_path):
    """Overlapping train/eval task files once crashed the loopback reward server (duplicate task id)."""
    args = _args(policy, tmp_path / "run", "unused")
    del args[args.index("--reward_urls") : args.index("--reward_urls") + 2]
    args[args.index("--eval_pass_at_1") + 1] = "true"
    args[args.index("--max_steps") + 1] = "1"
    summary = grpo.main([*args, "--eval_tasks", str(TASKS), "--eval_max_tasks", "2", "--eval_samples", "1"])
    assert summary["before"]["tasks"] == summary["after"]["tasks"] == 2
    assert summary["scored_items"] == 16 and summary["infra_errors"] == 0

    # the fair baseline of this run: the same start, more SFT for the run's training wall time
    report = baseline.main(["--run", str(tmp_path / "run"), "--learning_rate", "1e-3"])
    assert report["start_policy"] == str(policy) and report["budget_s"] == summary["train_s"]
    assert report["sft_steps"] >= 1 and report["sft_s"] >= summary["train_s"]
    assert report["baseline_sft"]["tasks"] == 2 and report["baseline_sft"]["samples"] == 2
    assert report["before"] == summary["before"]["pass@1"]
    written = json.loads((tmp_path / "run" / baseline.BASELINE_NAME).read_text())
    assert written["sft_steps"] == report["sft_steps"] and written["baseline_gain"] == report["baseline_gain"]


def test_lora_grpo_adapter_reloads_and_resumes(policy, server, tmp_path):
    from peft import PeftModel

    out = tmp_path / "lora"
    flags = [
        "--use_peft",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
        "--save_strategy",
        "steps",
        "--save_steps",
        "1",
        # the final norm trained in full next to the adapter, at its own learning rate
        "--lora_modules_to_save",
        "model.norm",
        "--modules_to_save_learning_rate",
        "0.05",
    ]
    grpo.main(_args(policy, out, server.url, *flags))
    assert (out / "adapter_config.json").is_file() and (out / "checkpoint-2").is_dir()
    base = AutoModelForCausalLM.from_pretrained(policy)
    start_norm = base.model.norm.weight.detach().clone()
    model = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), (
        "LoRA B matrices are still zero: nothing was learned"
    )
    # Adam moves a coordinate by at most about its learning rate per step: two steps at 0.05 for the
    # norm, far more than the adapter's 1e-3 could move it
    moved = (model.merge_and_unload().model.norm.weight - start_norm).abs()
    assert 0.01 < moved.mean().item() and moved.max().item() <= 2 * 0.05 + 1e-4, moved

    grpo.main(
        _args(policy, out, server.url, *flags, "--max_steps", "3", "--resume_from_checkpoint", "latest")
    )
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3


def test_dynamic_sampling_drops_all_equal_groups_whatever_their_reward():
    from accelerate import Accelerator

    trainer = SimpleNamespace(
        accelerator=Accelerator(cpu=True), num_generations=4, _metrics={"train": defaultdict(list)}
    )
    # TRL's advantage (r - mean) / (std + 1e-4) is exactly 0 only for an all-0.0 group: groups of
    # all-0.1 (format credit) or all-1.55 (pass + PPA) get tiny nonzero advantages, and must still drop.
    rewards = [0.1] * 4 + [1.55] * 4 + [0.1, 1.55, 0.3, 0.3] + [0.0] * 4
    output = {
        "advantages": torch.tensor([-7.45e-5] * 4 + [-1.2e-3] * 4 + [-0.9, 1.3, -0.2, -0.2] + [0.0] * 4),
        "completion_mask": torch.ones(16, 5, dtype=torch.long),
    }
    output["completion_mask"][9, 3:] = 0
    dropped = grpo.drop_flat_groups(trainer, output, rewards)
    assert dropped == 3
    kept = output["tool_mask"].sum(dim=1).tolist()
    assert kept == [0] * 8 + [5] * 4 + [0] * 4
    assert int(output["num_items_in_batch"]) == 4 * 5 - 2
    metrics = trainer._metrics["train"]
    assert metrics["dynamic_sampling/dropped_groups"] == [3.0]
    assert metrics["dynamic_sampling/dropped_frac"] == [0.75]
    assert metrics["advantages/abs_mean"][0] == pytest.approx((0.9 + 1.3 + 0.2 + 0.2) / 4)


def test_infra_items_do_not_make_a_group_informative():
    nan = float("nan")
    keep = grpo.flat_group_keep_mask(
        torch.tensor([0.1, nan, 0.1, 0.1, 0.5, nan, 0.2, 0.2, nan, nan, nan, 1.0]), 4
    )
    # group 0: equal rewards plus INFRA -> flat; group 1: mixed -> kept; group 2: one verdict -> flat
    assert keep.tolist() == [False] * 4 + [True] * 4 + [False] * 4


def test_negative_advantages_are_scaled_and_positive_ones_kept():
    adv = torch.tensor([1.2, -0.4, 0.0, -0.8])
    assert grpo.weight_negative_advantages(adv, 0.0).tolist() == pytest.approx([1.2, 0.0, 0.0, 0.0])
    assert grpo.weight_negative_advantages(adv, 0.5).tolist() == pytest.approx([1.2, -0.2, 0.0, -0.4])
    assert grpo.weight_negative_advantages(adv, 1.0).tolist() == pytest.approx(adv.tolist())


def _script_config(tmp_path, *flags: str) -> grpo.GRPOScriptConfig:
    return grpo.load_config(
        grpo.GRPOScriptConfig,
        ["--output_dir", str(tmp_path), *flags],
        defaults=grpo.script_defaults(),
        exit_on_error=False,
    )


def test_negative_advantage_weight_outside_zero_one_is_refused(tmp_path):
    with pytest.raises(Exception, match="negative_advantage_weight=1.5 must be in"):
        _script_config(tmp_path, "--negative_advantage_weight", "1.5")


def test_rollout_temperature_samples_sharper_while_the_loss_keeps_temperature(tmp_path):
    cfg = _script_config(tmp_path, "--rollout_temperature", "0.5", "--generation_kwargs", '{"top_k": 50}')
    assert cfg.temperature == 1.0
    assert cfg.generation_kwargs == {"top_k": 50, "temperature": 0.5}
    with pytest.raises(Exception, match="rollout_temperature=0.0 must be in"):
        _script_config(tmp_path, "--rollout_temperature", "0")


class _FixedScores:
    """A reward client answering fixed rewards in order (None = INFRA_ERROR): the reward function's
    shaping, shuffling and counting are under test here, not the scoring."""

    def __init__(self, values):
        self.values = values

    def score(self, items):
        from rewards.types import RewardResult, Status

        return [
            RewardResult.infra_error("t", "down")
            if v is None
            else RewardResult("t", Status.SIM_MISMATCH, False, v)
            for v in self.values[: len(items)]
        ]


def _fixed_reward(values, **options):
    from rewards.client import TRLReward

    return TRLReward(_FixedScores(values), fail_on_infra_rate=None, max_completion_length=100, **options)


def _call(reward, n, **kwargs):
    return reward(["p"] * n, ["c"] * n, task_id=["t"] * n, **kwargs)


def test_shuffled_rewards_keep_the_values_and_lose_the_link_to_the_completions():
    values = [0.1, 0.2, None, 1.5, 0.6, 0.1, 1.2, 0.0]
    plain = _fixed_reward(values)
    control = _fixed_reward(values, shuffle_seed=0)
    assert _call(plain, 8) == values
    got = [_call(control, 8) for _ in range(3)]
    key = lambda r: (r is None, r)  # noqa: E731
    assert all(sorted(g, key=key) == sorted(values, key=key) for g in got)
    assert any(g != values for g in got)
    assert control.last_counts == (1, 8)
    assert [r for r in control.last_rewards if r == r] == [r for r in got[-1] if r is not None]


def test_overlong_shaping_is_linear_in_the_buffer():
    reward = _fixed_reward([1.0, 1.0, None, 1.0], overlong_buffer_len=20)
    got = _call(reward, 4, completion_ids=[[0] * 80, [0] * 90, [0] * 100, [0] * 100])
    assert got == [1.0, 0.5, None, 0.0]
    assert reward.last_counts == (1, 4)


def test_reward_server_down_stops_the_run(policy, tmp_path):
    url = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(RewardInfraError, match=r"INFRA_ERROR\) for 16 of 16 completions"):
        grpo.main(_args(policy, tmp_path / "down", url, "--reward_retries", "0", "--reward_timeout_s", "5"))
    assert not (tmp_path / "down" / "model.safetensors").exists()


def _server_items(url: str) -> float:
    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("rtlforge_items_total")
    )


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_zero2_on_two_cpu_processes(policy, server, tmp_path):
    """The shipped DeepSpeed path (ZeRO-2 JSON, batch sizes "auto") trains on CPU: 2 steps, 32 items."""
    out = tmp_path / "zero2"
    argv = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / "zero2_cpu.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(REPO / "train" / "grpo.py"),
        *_args(
            policy,
            out,
            server.url,
            "--per_device_train_batch_size",
            "8",
            "--save_strategy",
            "steps",
            "--save_steps",
            "2",
        ),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored_items"] == 2 * 16 and summary["infra_errors"] == 0
    losses = [r for r in _records(out) if "loss" in r and "reward" in r]
    assert len(losses) == 2
    before, after = _weights(policy), _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before), (
        "DeepSpeed run left every weight unchanged"
    )


def test_two_processes_share_one_reward_server(policy, server, tmp_path):
    """2 CPU processes (gloo) with half the per-device batch score as many items as 1 process (32)."""
    out = tmp_path / "two"
    served_before = _server_items(server.url)
    argv = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"),
        "--main_process_port",
        str(_free_port()),
        str(REPO / "train" / "grpo.py"),
        *_args(policy, out, server.url, "--per_device_train_batch_size", "8"),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scored_items"] == 2 * 16 and summary["infra_errors"] == 0
    assert len([r for r in _records(out) if "loss" in r and "reward" in r]) == 2
    assert _server_items(server.url) > served_before  # both processes scored through the shared server
