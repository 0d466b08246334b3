"""rollout: prompt styles, checkpoint loading (full, LoRA adapter, merged), HF sampling, the sampling CLI."""

import json

import pytest
import torch

from rollout.__main__ import main as rollout_main
from rollout.hf import sample_hf
from rollout.model import CheckpointError, is_adapter, load_policy
from rollout.prompts import SYSTEM_PROMPT, PromptError, build_messages, build_prompt, render_prompt
from rollout.sampling import SamplingConfig, pick_backend, sample_completions

TEXTS = [
    "Build a circuit that always outputs a LOW.",
    "```verilog\nmodule TopModule(input a, input b, output y);\n  assign y = a & b;\nendmodule\n```",
    "```verilog\nmodule top_module(input clk, input d, output reg q);\n  always @(posedge clk) q <= d;\nendmodule\n```",
] * 10
TINY_ARCH = {
    "vocab_size": 400,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 512,
}


def build_tiny(path):
    from train.tiny import build_tiny_model

    return build_tiny_model(path, TEXTS, seed=0, **TINY_ARCH)


def build_adapter(base_dir, out_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    # Random A and B (not the zero-B default) so the adapter visibly changes the model.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny") / "full")


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    return build_adapter(tiny, tmp_path_factory.mktemp("tiny") / "lora")


def _logits(model, tokenizer, text="module TopModule"):
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


# --- prompts ---------------------------------------------------------------------------------------


def test_prompt_styles():
    plain = build_prompt("Make an AND gate.")
    assert plain.startswith("Make an AND gate.") and "```verilog" in plain and "<think>" not in plain
    assert "<think>" in build_prompt("Make an AND gate.", style="think")
    assert build_prompt("Make an AND gate.", style="chat") == plain
    assert build_prompt("spec as is", style="raw") == "spec as is"
    messages = build_messages("Make an AND gate.", style="chat")
    assert messages == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": plain}]
    with pytest.raises(PromptError, match="valid styles are"):
        build_prompt("x", style="fancy")
    with pytest.raises(PromptError, match="empty spec"):
        build_prompt("  ")


def test_render_prompt_uses_the_chat_template_only_when_asked(tiny):
    _, tokenizer = load_policy(tiny)
    chat = render_prompt(tokenizer, "Make an AND gate.", style="chat")
    assert chat.startswith("<|im_start|>system\n" + SYSTEM_PROMPT) and chat.endswith(
        "<|im_start|>assistant\n"
    )
    assert render_prompt(tokenizer, "Make an AND gate.", style="plain") == build_prompt("Make an AND gate.")
    raw_chat = render_prompt(tokenizer, "spec", style="raw", chat_template=True)
    assert "<|im_start|>user\nspec<|im_end|>" in raw_chat


# --- checkpoints -----------------------------------------------------------------------------------


def test_load_full_checkpoint(tiny):
    model, tokenizer = load_policy(tiny)
    assert not model.training and tokenizer.padding_side == "left" and tokenizer.pad_token is not None
    assert next(model.parameters()).dtype == torch.float32


def test_load_lora_adapter_on_recorded_and_explicit_base(tiny, adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert is_adapter(adapter) and not is_adapter(tiny)
    base_model, tokenizer = load_policy(tiny)
    merged, _ = load_policy(adapter)
    explicit, _ = load_policy(adapter, base=tiny)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny), adapter).eval()
    assert not torch.allclose(_logits(merged, tokenizer), _logits(base_model, tokenizer))
    assert torch.allclose(_logits(merged, tokenizer), _logits(reference, tokenizer), atol=1e-4)
    assert torch.allclose(_logits(explicit, tokenizer), _logits(merged, tokenizer))


def test_merged_checkpoint_loads_like_a_full_model(adapter, tmp_path):
    merged, tokenizer = load_policy(adapter)
    merged.save_pretrained(tmp_path / "merged")
    tokenizer.save_pretrained(tmp_path / "merged")
    again, _ = load_policy(tmp_path / "merged")
    assert torch.allclose(_logits(again, tokenizer), _logits(merged, tokenizer))


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_policy(tmp_path / "nope")


# --- sampling --------------------------------------------------------------------------------------


def test_sample_hf_shapes_seeds_and_length(tiny):
    model, tokenizer = load_policy(tiny)
    prompts = ["Make an AND gate.", "Make a flip-flop, please, with a reset."]
    kwargs = {"n": 3, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8, "batch_size": 4}
    first = sample_hf(model, tokenizer, prompts, seed=7, **kwargs)
    assert [len(c) for c in first] == [3, 3] and all(isinstance(t, str) for c in first for t in c)
    assert sample_hf(model, tokenizer, prompts, seed=7, **kwargs) == first
    assert sample_hf(model, tokenizer, prompts, seed=8, **kwargs) != first
    one_token = sample_hf(model, tokenizer, prompts, n=2, temperature=1.0, max_new_tokens=1, seed=3)
    vocabulary = {tokenizer.decode([i], skip_special_tokens=True) for i in range(len(tokenizer))}
    assert all(text in vocabulary for texts in one_token for text in texts)
    greedy = sample_hf(model, tokenizer, prompts, n=2, temperature=0.0, max_new_tokens=6, batch_size=3)
    assert greedy[0][0] == greedy[0][1]


def test_sample_hf_batches_by_prompt_length_and_answers_in_prompt_order(tiny):
    model, tokenizer = load_policy(tiny)
    # the untrained policy repeats a prompt's last character: three prompts, three answers
    prompts = ["A much longer prompt: a four-bit counter with an enable input", "AND", "Make 1234"]
    greedy = {"n": 1, "temperature": 0.0, "max_new_tokens": 16, "batch_size": 1}
    alone = [sample_hf(model, tokenizer, [p], **greedy)[0] for p in prompts]
    assert len(set(map(tuple, alone))) == 3  # the prompts are told apart, so a mix-up would show
    assert sample_hf(model, tokenizer, prompts, **greedy) == alone
    static = sample_hf(
        model,
        tokenizer,
        prompts,
        n=2,
        temperature=1.0,
        max_new_tokens=5,
        batch_size=4,
        cache_implementation="static",
    )
    assert [len(c) for c in static] == [2, 2, 2]
    assert sample_hf(model, tokenizer, [], n=2) == []


def test_sample_completions_full_and_lora(tiny, adapter):
    config = SamplingConfig(n=2, temperature=0.0, max_new_tokens=12, style="chat")
    full = sample_completions(tiny, ["Make an AND gate."], config, backend="hf", device="cpu")
    lora = sample_completions(adapter, ["Make an AND gate."], config, backend="hf", device="cpu")
    assert len(full[0]) == len(lora[0]) == 2
    assert full != lora  # the adapter changes greedy decoding
    with pytest.raises(ValueError, match="valid backends"):
        pick_backend("tgi")
    with pytest.raises(ValueError, match=">= 1"):
        SamplingConfig(n=0)


def test_rollout_cli_writes_completion_records(tiny, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"demo/t{i}",
                    "prompt": f"Make gate {i}.",
                    "top_module": "TopModule",
                    "reference": "module TopModule(); endmodule",
                }
            )
            + "\n"
            for i in range(2)
        )
    )
    out = tmp_path / "out" / "completions.jsonl"
    rc = rollout_main(
        [
            "sample",
            "--model",
            str(tiny),
            "--tasks",
            str(tasks),
            "--n",
            "3",
            "--out",
            str(out),
            "--max-new-tokens",
            "8",
            "--backend",
            "hf",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["task_id"], r["sample_index"]) for r in records] == [
        (f"demo/t{i}", j) for i in range(2) for j in range(3)
    ]
    assert all(isinstance(r["completion"], str) for r in records)


def test_rollout_cli_rejects_bad_task_file(tiny, tmp_path, capsys):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"id": "a"}\n')
    rc = rollout_main(
        ["sample", "--model", str(tiny), "--tasks", str(tasks), "--out", str(tmp_path / "o.jsonl")]
    )
    assert rc == 2 and "'id' and 'prompt'" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="vLLM sampling needs a CUDA GPU with vllm installed"
)
def test_vllm_backend_full_and_lora(tiny, adapter):
    config = SamplingConfig(n=2, temperature=0.0, max_new_tokens=12, style="chat")
    full = sample_completions(tiny, ["Make an AND gate."], config, backend="vllm")
    hf = sample_completions(tiny, ["Make an AND gate."], config, backend="hf")
    assert len(full[0]) == 2 and full[0][0] == full[0][1]
    assert full[0][0][:8] == hf[0][0][:8]  # greedy decoding agrees on the first tokens
    lora = sample_completions(adapter, ["Make an AND gate."], config, backend="vllm")
    assert len(lora[0]) == 2
