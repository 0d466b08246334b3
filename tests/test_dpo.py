"""DPO on the tiny policy with pairs built from real tool outcomes (Verilator/Icarus/Yosys/OpenSTA).

A small tiny policy is warm-started by SFT on six hand-written tasks until its samples are a mix of
passing and failing Verilog, so sampling + scoring gives real preference pairs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from rewards.tasks import load_tasks
from train import dpo, pairs, sft
from train.tiny import build_tiny_model, task_texts

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "data" / "grpo_tasks.jsonl"
SMALL = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "intermediate_size": 128, "vocab_size": 400}


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> Path:
    tasks = load_tasks(TASKS)
    root = tmp_path_factory.mktemp("policy")
    base = build_tiny_model(root / "base", task_texts(tasks), **SMALL)
    return sft.run_sft_on_tasks(
        tasks,
        model=str(base),
        out_dir=root / "sft",
        max_steps=200,
        extra_args=["--per_device_train_batch_size", "6", "--logging_steps", "50", "--report_to", "none"],
    )


@pytest.fixture(scope="module")
def server():
    from rewards.background import start_background

    handle = start_background("127.0.0.1", 0, tasks=load_tasks(TASKS), workers=2)
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def pairs_file(policy, server, tmp_path_factory) -> Path:
    """Pairs from the policy's own samples, scored by a real reward server on loopback (the CLI path)."""
    out = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    assert (
        pairs.main(
            [
                "--model",
                str(policy),
                "--tasks",
                str(TASKS),
                "--n",
                "6",
                "--max-new-tokens",
                "64",
                "--temperature",
                "1.0",
                "--backend",
                "hf",
                "--out",
                str(out),
                "--reward-urls",
                server.url,
                "--scored-out",
                str(out.with_name("scored.jsonl")),
            ]
        )
        == 0
    )
    return out


@pytest.fixture
def wandb_env():
    """No WANDB_* variables during the test (the script sets them), the caller's restored afterwards."""
    saved = dict(os.environ)
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_API_KEY"):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _dpo_args(policy: Path, pairs_path: Path | None, out: Path, *flags: str) -> list[str]:
    args = [
        "--model_name_or_path",
        str(policy),
        "--train_tasks",
        str(TASKS),
        "--output_dir",
        str(out),
        "--eval_pass_at_1",
        "false",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "4",
        "--learning_rate",
        "1e-3",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--seed",
        "1",
        "--sample_max_new_tokens",
        "64",
        "--max_length",
        "512",
        "--use_peft",
        "false",  # the embedded recipe trains a LoRA adapter; these runs test full weights unless told
    ]
    if pairs_path is not None:
        args += ["--pairs_file", str(pairs_path)]
    return [*args, *flags]


def _weights(path) -> dict[str, torch.Tensor]:
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_pairs_from_real_scores(pairs_file):
    records = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    scored = [json.loads(line) for line in pairs_file.with_name("scored.jsonl").read_text().splitlines()]
    assert len(scored) == 36 and {"OK"} < {s["status"] for s in scored}
    assert records, "the warm-started policy's samples gave no contrast at all"
    assert {r["rule"] for r in records} <= set(pairs.RULES)
    for record in records:
        assert record["chosen"] != record["rejected"]
        chosen, rejected = record["chosen_score"], record["rejected_score"]
        assert "INFRA_ERROR" not in (chosen["status"], rejected["status"])
        if record["rule"] == "pass_vs_fail":
            assert chosen["status"] == "OK" and rejected["status"] != "OK"
            assert chosen["reward"] > rejected["reward"]
        assert "```verilog" in record["prompt"]
    per_task = {}
    for record in records:
        per_task[record["task_id"]] = per_task.get(record["task_id"], 0) + 1
    assert max(per_task.values()) <= 4


def test_handwritten_completions_pair_by_real_verdicts(tmp_path):
    golden = "```verilog\nmodule TopModule(input [3:0] a, input [3:0] b, output [3:0] y);\n  assign y = a + b;\nendmodule\n```"
    low_bits = (
        "module TopModule(input [3:0] a, input [3:0] b, output [3:0] y);\n"
        "  assign y = {a[3:1] + b[3:1], a[0] ^ b[0]};\nendmodule"
    )
    wrong = "module TopModule(input [3:0] a, input [3:0] b, output [3:0] y);\n  assign y = a - b;\nendmodule"
    broken = "module TopModule(input [3:0] a, input [3:0] b, output [3:0] y);\n  assign y = a + ;\nendmodule"
    records = [
        {"task_id": "tiny/add4", "completion": c} for c in (broken, wrong, golden, low_bits, "no idea")
    ]
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps(r) + "\n" for r in records))
    task_file = tmp_path / "tasks.jsonl"
    task_file.write_text(next(line for line in TASKS.read_text().splitlines() if "tiny/add4" in line) + "\n")
    out = tmp_path / "pairs.jsonl"
    assert (
        pairs.main(
            [
                "--completions",
                str(completions),
                "--tasks",
                str(task_file),
                "--out",
                str(out),
                "--max-pairs",
                "10",
                "--scored-out",
                str(tmp_path / "scored.jsonl"),
                "--hf-dir",
                str(tmp_path / "hf"),
            ]
        )
        == 0
    )
    assert len(pairs.load_pairs(tmp_path / "hf")) == len(out.read_text().splitlines())
    statuses = [json.loads(line)["status"] for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert statuses == ["SYNTAX_ERROR", "SIM_MISMATCH", "OK", "SIM_MISMATCH", "FORMAT_ERROR"]
    found = {
        (r["chosen_score"]["sample_index"], r["rejected_score"]["sample_index"]): r["rule"]
        for r in map(json.loads, out.read_text().splitlines())
    }
    assert {k for k, rule in found.items() if rule == "pass_vs_fail"} == {(2, 0), (2, 1), (2, 3), (2, 4)}
    # add4 with a broken carry matches more vectors than a - b; both beat a parse error and no code
    assert found.get((3, 1)) == "closer_fail"
    assert found.get((0, 4)) == "closer_fail" and found.get((1, 0)) == "closer_fail"


def test_full_dpo_two_steps(policy, pairs_file, tmp_path, wandb_env):
    before = _weights(policy)
    out = tmp_path / "run"
    # the final norm at a learning rate of its own (full weights: its own weights, not a copy)
    flags = [
        "--report_to",
        "wandb",
        "--lora_modules_to_save",
        "model.norm",
        "--modules_to_save_learning_rate",
        "0.05",
    ]
    summary = dpo.main([*_dpo_args(policy, pairs_file, out), *flags])
    after = _weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before), "DPO left every weight unchanged"
    # Adam moves a coordinate by at most about its learning rate per step (two steps here)
    moves = {k: (after[k] - before[k]).abs() for k in before}
    assert moves["model.norm.weight"].mean() > 0.01 and moves["model.norm.weight"].max() <= 2 * 0.05 + 1e-4
    others = max(v.max().item() for k, v in moves.items() if k not in ("model.norm.weight", "lm_head.weight"))
    assert others <= 2 * 1e-3 + 1e-5, others
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in steps if "loss" in r]
    assert len(logged) == 2 and all("rewards/margins" in r for r in logged)
    assert (out / "resolved_config.yaml").is_file() and (out / "summary.json").is_file()
    assert summary["rounds"][0]["pairs_file"] == str(pairs_file)
    assert list((out / "wandb").glob("offline-run-*")), "wandb must log offline into the run dir by default"


def test_lora_dpo_adapter_reloads(policy, pairs_file, tmp_path):
    from peft import PeftModel

    out = tmp_path / "lora"
    dpo.main(_dpo_args(policy, pairs_file, out, "--use_peft", "true", "--lora_r", "8", "--lora_alpha", "16"))
    assert (out / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(policy)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        plain = base(ids).logits
        model = PeftModel.from_pretrained(base, str(out))
        adapted = model(ids).logits
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "LoRA B matrices are still zero: no update"
    assert not torch.allclose(plain, adapted)


def test_iterative_rounds_sample_pair_train_and_resume(policy, tmp_path):
    out = tmp_path / "iter"
    args = _dpo_args(
        policy,
        None,
        out,
        "--rounds",
        "2",
        "--num_samples",
        "6",
        "--max_steps",
        "1",
        "--use_peft",
        "true",
        "--lora_r",
        "8",
        "--eval_pass_at_1",
        "true",
        "--eval_tasks",
        str(TASKS),
        "--eval_samples",
        "2",
    )
    summary = dpo.main(args)
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for index, record in enumerate(summary["rounds"], 1):
        round_dir = out / f"round-{index}"
        assert (round_dir / "pairs.jsonl").is_file() and (round_dir / "round.json").is_file()
        assert record["pairs"]["pairs"] > 0 and record["end_policy"] == str(round_dir / "merged")
    assert summary["rounds"][1]["start_policy"] == summary["rounds"][0]["end_policy"]
    assert 0.0 <= summary["before"]["pass@1"] <= 1.0 and summary["after"]["samples"] == 12
    stamp = (out / "round-2" / "round.json").stat().st_mtime
    again = dpo.main([*args, "--resume_from_checkpoint", "latest", "--eval_pass_at_1", "false"])
    assert (out / "round-2" / "round.json").stat().st_mtime == stamp, "a finished round was trained again"
    assert again["final_policy"] == summary["final_policy"]
