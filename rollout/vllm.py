"""Sampling with vLLM (GPU only; ``pip install rtlforge[vllm]``). vLLM is imported lazily.

A LoRA adapter is served on its base with vLLM's LoRA support (``enable_lora``), so the same
checkpoint kinds as :func:`rollout.model.load_policy` work: full model dir, adapter dir, merged model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rollout.gguf import resolve_model_path
from rollout.model import adapter_base, is_adapter

log = logging.getLogger(__name__)


class VLLMUnavailableError(RuntimeError):
    """vLLM is not installed or there is no GPU; the message says how to fall back."""


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise VLLMUnavailableError(
            f"vLLM cannot be imported ({exc}): install it on a GPU machine with `pip install -e .[vllm]`, "
            "or sample with the Hugging Face backend (--backend hf)"
        ) from exc
    return vllm


def vllm_available() -> bool:
    """True when vLLM imports and a CUDA device is visible."""
    try:
        import torch

        _import_vllm()
    except VLLMUnavailableError:
        return False
    return torch.cuda.is_available()


def load_vllm(
    checkpoint: str | Path,
    *,
    base: str | Path | None = None,
    dtype: str = "auto",
    gpu_memory_utilization: float = 0.85,
    max_lora_rank: int = 64,
    seed: int = 0,
    **llm_kwargs: Any,
) -> tuple[Any, Any]:
    """Start a vLLM engine for ``checkpoint``; returns ``(llm, lora_request)`` (``lora_request`` is ``None``
    for a full/merged model). Extra keyword arguments go to ``vllm.LLM``."""
    vllm = _import_vllm()
    lora_request = None
    model = resolve_model_path(str(checkpoint))
    if is_adapter(checkpoint):
        from vllm.lora.request import LoRARequest

        model = resolve_model_path(adapter_base(checkpoint, base))
        llm_kwargs.setdefault("enable_lora", True)
        llm_kwargs.setdefault("max_lora_rank", max_lora_rank)
        lora_request = LoRARequest("policy", 1, str(checkpoint))
    llm = vllm.LLM(
        model=model, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization, seed=seed, **llm_kwargs
    )
    return llm, lora_request


def sample_vllm(
    llm,
    tokenizer,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 1024,
    seed: int = 0,
    lora_request=None,
    batch_size: int | None = None,
) -> list[list[str]]:
    """Draw ``n`` completions per prompt with a vLLM engine; same return shape as :func:`rollout.hf.sample_hf`.

    ``tokenizer`` is unused (the engine holds its own) and ``batch_size`` is ignored (vLLM schedules its
    own batches): both are accepted so the two backends are called the same way.
    """
    vllm = _import_vllm()
    params = vllm.SamplingParams(
        n=n,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        max_tokens=max_new_tokens,
        seed=seed,
    )
    outputs = llm.generate(list(prompts), params, lora_request=lora_request, use_tqdm=True)
    return [[choice.text for choice in output.outputs] for output in outputs]
