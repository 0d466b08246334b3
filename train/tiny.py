"""The embedded tiny policy: a byte-level BPE tokenizer and a small random Qwen2 model, built locally.

No model hub is reachable from the CI machine, so the default recipes train a model small enough for
a 2-core CPU. Building it takes seconds; the result is cached in a directory keyed by a hash of the
training texts and the architecture, so later runs reuse it.

Public API (used by ``train/sft.py``, ``train/common.py`` and the tests; the SFT warm start of this
policy lives in ``train/sft.py``, which imports this module, never the other way round):

- :func:`build_tiny_model` ``(out_dir, texts, **arch) -> Path``: train the tokenizer on ``texts``,
  create the random model, save both (a normal HF model dir with a chat template).
- :func:`ensure_tiny_policy` ``(out_dir=None, *, tasks=None) -> Path``: the cached random tiny policy
  for ``tasks`` (default: the embedded corpus' train split).
- :func:`build_or_reuse` ``(final, info, build) -> Path``: the cache rule every cached build follows.
- :func:`task_texts` ``(tasks, style) -> list[str]``: prompt and answer texts the tokenizer learns from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from rewards.types import Task
from rollout.prompts import build_prompt

log = logging.getLogger(__name__)

DONE_MARKER = "tiny_policy.json"

# Special tokens of the tiny tokenizer; the chat markers follow the Qwen2 convention.
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Sized for a 2-core CPU (192 wide, 4 layers, 2.0 M parameters: 0.35 s per 8x340-token SFT step idle;
# the 96-wide 3-layer variant could not write unseen instances of the corpus families after 300 steps).
# Earlier sizing note: one SFT step on 8 corpus examples (~300 tokens each) must cost well under a
# second, and a GRPO step with 32 completions of up to 256 tokens a few seconds (measured: the
# 128-wide, 4-layer variant took 3-4 s per 16-example SFT step unloaded, too slow for the demo budget).
DEFAULT_ARCH = {
    "vocab_size": 2048,
    "hidden_size": 192,
    "num_layers": 4,
    "num_heads": 4,
    "intermediate_size": 512,
    "max_position_embeddings": 2048,
}


def cache_root() -> Path:
    """Directory holding cached tiny policies: ``$RTLFORGE_CACHE`` or ``~/.cache/rtlforge``."""
    return Path(os.environ.get("RTLFORGE_CACHE") or Path.home() / ".cache" / "rtlforge")


def answer_text(code: str) -> str:
    """The target completion for a golden design: one fenced Verilog block."""
    return f"```verilog\n{code.strip()}\n```"


def task_texts(tasks: Sequence[Task], style: str = "plain") -> list[str]:
    """Prompt and golden-answer texts of ``tasks`` (what the tokenizer is trained on)."""
    texts = []
    for task in tasks:
        texts.append(build_prompt(task.prompt, style=style))
        texts.append(answer_text(task.reference))
    return texts


def _default_tasks() -> list[Task]:
    from train.corpus import load_split

    return load_split("train")


def _train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    # Digits one by one (as Qwen2 does): widths and constants in a spec are then spelled the same way in
    # the code, which a small model can learn to copy, instead of one opaque token per number.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        bos_token=None,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, texts: Sequence[str], *, seed: int = 0, **arch: int) -> Path:
    """Train a byte-level BPE tokenizer on ``texts`` and save it with a random Qwen2 model in ``out_dir``.

    Args:
        out_dir: destination (created; existing files are overwritten).
        texts: training texts for the tokenizer (prompts and answers of the corpus).
        seed: seed of the random initialisation.
        **arch: overrides of :data:`DEFAULT_ARCH` (vocab_size, hidden_size, num_layers, num_heads,
            intermediate_size, max_position_embeddings).

    Returns:
        ``out_dir``, loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``.
    """
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    unknown = sorted(set(arch) - set(DEFAULT_ARCH))
    if unknown:
        raise ValueError(f"unknown tiny-model arguments {unknown}; valid: {sorted(DEFAULT_ARCH)}")
    spec = {**DEFAULT_ARCH, **arch}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(texts, spec["vocab_size"])
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec["hidden_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_heads"],
        intermediate_size=spec["intermediate_size"],
        max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END)]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    params = sum(p.numel() for p in model.parameters())
    log.info("built tiny Qwen2 policy in %s: %d parameters, vocab %d", out_dir, params, len(tokenizer))
    return out_dir


def fingerprint(payload: dict) -> str:
    """A short stable hash of a JSON-able ``payload`` (names cached builds)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def _is_built(path: Path) -> bool:
    return (path / DONE_MARKER).is_file()


def build_or_reuse(final: Path, info: dict, build: Callable[[Path], object]) -> Path:
    """``final`` when a finished build is there, else ``build(tmp)`` into a private temporary directory
    that is then renamed to ``final`` (a concurrent build of the same thing keeps the first copy)."""
    if _is_built(final):
        log.info("cached build reused: %s", final)
        return final
    tmp = final.with_name(final.name + f".building-{os.getpid()}")
    build(tmp)
    return _finish(tmp, final, info)


def _finish(tmp: Path, final: Path, info: dict) -> Path:
    (tmp / DONE_MARKER).write_text(json.dumps(info, indent=1, sort_keys=True))
    if _is_built(final):  # another process finished the same build first: keep its copy (it may be in use)
        shutil.rmtree(tmp)
        return final
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final


def ensure_tiny_policy(
    out_dir: str | Path | None = None, *, tasks: Sequence[Task] | None = None, seed: int = 0, **arch: int
) -> Path:
    """Return the directory of the random tiny policy for ``tasks``, building it if absent.

    Args:
        out_dir: where to build; default ``cache_root()/tiny-<hash of texts and arch>``.
        tasks: tokenizer corpus (default: the embedded corpus' train split).
        seed, **arch: see :func:`build_tiny_model`.
    """
    tasks = list(tasks) if tasks is not None else _default_tasks()
    texts = task_texts(tasks)
    info = {
        "kind": "random",
        "arch": {**DEFAULT_ARCH, **arch},
        "seed": seed,
        "texts": fingerprint({"t": texts}),
    }
    final = Path(out_dir) if out_dir is not None else cache_root() / f"tiny-{fingerprint(info)}"
    return build_or_reuse(final, info, lambda tmp: build_tiny_model(tmp, texts, seed=seed, **arch))
