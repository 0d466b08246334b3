"""Sampling with Hugging Face ``generate`` (CPU, or a GPU without vLLM)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)


def _has_bos(tokenizer, texts: Sequence[str]) -> bool:
    """True when the texts already start with the BOS token (a chat template put it there)."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and all(t.startswith(bos) for t in texts)


def sample_hf(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    max_new_tokens: int = 1024,
    batch_size: int = 8,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    cache_implementation: str | None = None,
) -> list[list[str]]:
    """Draw ``n`` completions for each prompt; returns one list of ``n`` strings per prompt, in order.

    Prompts are fed as text (apply a chat template first, e.g. with ``rollout.prompts.render_prompt``).
    ``temperature == 0`` decodes greedily (all ``n`` samples are then identical). Batches hold up to
    ``batch_size`` sequences; each batch is seeded with ``seed + batch index`` so a run is reproducible.
    ``progress(k)`` is called with the number of sequences finished by each batch.

    Batches are formed after ordering the prompts by token length (stable), so a batch pads its prompts
    to a similar length: left padding is attended over at every new token, and on a CPU copying the
    padded key/value cache is most of the cost of a step. ``cache_implementation`` is passed to
    ``generate`` (e.g. ``"static"``: a preallocated cache, no copy per token).
    """
    import torch

    if n < 1 or batch_size < 1:
        raise ValueError(f"sample_hf(n={n}, batch_size={batch_size}): both must be >= 1")
    if not prompts:
        return []
    lengths = [len(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]
    order = sorted(range(len(prompts)), key=lengths.__getitem__)
    flat = [(index, prompts[index]) for index in order for _ in range(n)]
    out: list[list[str]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p}
        if temperature > 0
        else {"do_sample": False}
    )
    for batch_index, start in enumerate(range(0, len(flat), batch_size)):
        chunk = flat[start : start + batch_size]
        texts = [p for _, p in chunk]
        encoded = tokenizer(
            texts, return_tensors="pt", padding=True, add_special_tokens=not _has_bos(tokenizer, texts)
        ).to(device)
        torch.manual_seed(seed + batch_index)
        with torch.no_grad():
            generated = model.generate(
                **encoded,
                max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                cache_implementation=cache_implementation,
                **sampling,
            )
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        for (index, _), text in zip(
            chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
        ):
            out[index].append(text)
        if progress:
            progress(len(chunk))
    return out
