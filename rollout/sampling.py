"""One call from a checkpoint and specs to completions, on either backend (picked by name from :data:`BACKENDS`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rewards.config import option
from rollout.prompts import render_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are drawn. Defaults suit a CPU smoke run; real evals raise ``max_new_tokens``."""

    n: int = option(1, "completions per prompt")
    temperature: float = option(0.8, "0 = greedy")
    top_p: float = option(0.95, "nucleus sampling mass")
    max_new_tokens: int = option(1024, "generated tokens per completion")
    batch_size: int = option(8, "sequences per generate call (HF backend)")
    seed: int = option(0, "sampling seed")
    style: str = option("chat", "prompt style: plain | think | chat | raw")
    chat_template: bool | None = option(
        None, "wrap prompts in the tokenizer's chat template (default: style == chat)"
    )

    def __post_init__(self) -> None:
        if self.n < 1 or self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError(
                f"SamplingConfig(n={self.n}, max_new_tokens={self.max_new_tokens}, batch_size={self.batch_size}): "
                "all must be >= 1"
            )
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(
                f"SamplingConfig(temperature={self.temperature}, top_p={self.top_p}): "
                "need temperature >= 0 and 0 < top_p <= 1"
            )


def _sample_with_hf(checkpoint, specs, config, *, base, device, dtype, progress):
    from rollout.hf import sample_hf
    from rollout.model import load_policy

    model, tokenizer = load_policy(checkpoint, base=base, device=device, dtype=dtype)
    prompts = [
        render_prompt(tokenizer, s, style=config.style, chat_template=config.chat_template) for s in specs
    ]
    return sample_hf(
        model,
        tokenizer,
        prompts,
        n=config.n,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
        progress=progress,
    )


def _sample_with_vllm(checkpoint, specs, config, *, base, device, dtype, progress):
    from rollout.model import adapter_base, is_adapter, load_tokenizer
    from rollout.vllm import load_vllm, sample_vllm

    tokenizer = load_tokenizer(checkpoint, adapter_base(checkpoint, base) if is_adapter(checkpoint) else base)
    prompts = [
        render_prompt(tokenizer, s, style=config.style, chat_template=config.chat_template) for s in specs
    ]
    llm, lora = load_vllm(checkpoint, base=base, dtype=dtype or "auto", seed=config.seed)
    out = sample_vllm(
        llm,
        tokenizer,
        prompts,
        n=config.n,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        lora_request=lora,
    )
    if progress:
        progress(len(prompts) * config.n)
    return out


BACKENDS: dict[str, Callable] = {"hf": _sample_with_hf, "vllm": _sample_with_vllm}


def pick_backend(name: str) -> str:
    """``"auto"`` → ``"vllm"`` when vLLM and a GPU are present, else ``"hf"``; other names are checked."""
    if name == "auto":
        from rollout.vllm import vllm_available

        return "vllm" if vllm_available() else "hf"
    if name not in BACKENDS:
        raise ValueError(
            f"unknown sampling backend {name!r}; valid backends are {sorted(BACKENDS)} or 'auto'"
        )
    return name


def sample_completions(
    checkpoint: str | Path,
    specs: Sequence[str],
    config: SamplingConfig,
    *,
    base: str | Path | None = None,
    backend: str = "auto",
    device: str | None = None,
    dtype=None,
    progress: Callable[[int], None] | None = None,
) -> list[list[str]]:
    """Load ``checkpoint`` (full, LoRA adapter or merged) and draw ``config.n`` completions per spec.

    Specs are turned into prompts with :func:`rollout.prompts.render_prompt` (``config.style``).
    Returns one list of ``config.n`` completions per spec, in order.
    """
    from rollout.model import check_checkpoint

    check_checkpoint(checkpoint)  # before a backend spends a minute trying a hub for a local typo
    name = pick_backend(backend)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("sampling %d prompts x %d with %s on %s", len(specs), config.n, name, device)
    return BACKENDS[name](
        checkpoint, list(specs), config, base=base, device=device, dtype=dtype, progress=progress
    )


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    """Model and sampling flags shared with ``python -m evals run``."""
    parser.add_argument("--base", help="base model for a LoRA adapter (default: the one it records)")
    parser.add_argument("--backend", default="auto", help="auto | hf | vllm (auto: vllm when a GPU has it)")
    parser.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--dtype", help="float32 | bfloat16 | float16 (default: bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--n", type=int, default=1, help="completions per task")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per generate call (HF)")
    parser.add_argument("--seed", type=int, default=0)


def sampling_config(
    args: argparse.Namespace, style: str, chat_template: bool | None = None
) -> SamplingConfig:
    """Build a :class:`SamplingConfig` from parsed flags."""
    return SamplingConfig(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        style=style,
        chat_template=chat_template,
    )
