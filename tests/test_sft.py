"""SFT on the tiny policy: full and LoRA, loss logged, weights change, adapters reload and merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rewards.tasks import load_tasks
from train import sft
from train.merge import MergeError, merge_adapter
from train.tiny import IM_END, build_tiny_model, ensure_tiny_policy, task_texts

DATA = Path(__file__).resolve().parent / "data"
SMALL = {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "vocab_size": 400}


@pytest.fixture(scope="module")
def tasks():
    return load_tasks(DATA / "grpo_tasks.jsonl")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tasks) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "policy", task_texts(tasks), **SMALL)


def _state(path):
    return {k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()}


def _run(tiny, out, *flags):
    argv = [
        "--model_name_or_path",
        str(tiny),
        "--train_tasks",
        str(DATA / "grpo_tasks.jsonl"),
        "--output_dir",
        str(out),
        "--max_steps",
        "4",
        "--logging_steps",
        "1",
        "--per_device_train_batch_size",
        "6",
        *flags,
    ]
    return sft.main(argv)


def test_tiny_policy_has_chat_template_and_stop_tokens(tiny):
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.endswith("<|im_start|>assistant\n")
    assert tokenizer.eos_token_id in model.generation_config.eos_token_id
    assert tokenizer.convert_tokens_to_ids(IM_END) in model.generation_config.eos_token_id
    assert (
        tokenizer.decode(tokenizer("module TopModule(input a);")["input_ids"]) == "module TopModule(input a);"
    )


def test_tiny_policy_is_cached(tmp_path, tasks, monkeypatch):
    monkeypatch.setenv("RTLFORGE_CACHE", str(tmp_path))
    first = ensure_tiny_policy(tasks=tasks, **SMALL)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_policy(tasks=tasks, **SMALL) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert first.parent == tmp_path


def test_full_sft_changes_weights_and_saves_config(tiny, tmp_path):
    before = _state(tiny)
    out = _run(tiny, tmp_path / "full")
    after = _state(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "resolved_config.yaml").is_file() and (out / "tokenizer.json").is_file()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4 and all(loss > 0 for loss in losses)


def test_lora_sft_adapter_reloads_and_merges(tiny, tmp_path):
    from peft import PeftModel

    out = _run(
        tiny, tmp_path / "lora", "--use_peft", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-2"
    )
    assert (out / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(tiny)
    peft_model = PeftModel.from_pretrained(base, str(out))
    lora_b = [p for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # B starts at zero: nonzero means it trained

    merged_dir = merge_adapter(out, tmp_path / "merged")
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    ids = AutoTokenizer.from_pretrained(merged_dir)("module TopModule", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(expected, got, atol=1e-4)


def test_merge_rejects_a_full_model_dir(tiny, tmp_path):
    with pytest.raises(MergeError, match="not a PEFT adapter"):
        merge_adapter(tiny, tmp_path / "x")


def test_sft_on_chat_data_file(tiny, tmp_path, tasks):
    data = tmp_path / "chat.jsonl"
    with data.open("w") as handle:
        for task in tasks:
            handle.write(
                json.dumps(
                    {
                        "messages": [
                            {"role": "user", "content": task.prompt},
                            {"role": "assistant", "content": task.reference},
                        ]
                    }
                )
                + "\n"
            )
    out = _run(tiny, tmp_path / "chat", "--use_tasks", "false", "--data_files", str(data))
    assert (out / "model.safetensors").is_file()


def test_data_file_with_wrong_columns_is_rejected(tiny, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match="needs 'messages'"):
        _run(tiny, tmp_path / "bad", "--use_tasks", "false", "--data_files", str(data))
