"""Load a policy checkpoint for sampling: a full model dir, a LoRA adapter dir on its base, or a merged model.

A directory holding ``adapter_config.json`` is a PEFT adapter: its base comes from ``base=`` or from
the adapter's own ``base_model_name_or_path``; the adapter is merged into the base so generation runs
at full speed. Anything else is loaded with ``AutoModelForCausalLM`` (a hub id works where a hub is
reachable). The tokenizer comes from the checkpoint when it has one, else from the base. A ``.gguf``
file, as checkpoint or as an adapter's base, is converted once into a cached model directory
(:mod:`rollout.gguf`) and loaded from there.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from pathlib import Path

from rollout.gguf import resolve_model_path

log = logging.getLogger(__name__)

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded; the message says what was found and what to pass instead."""


# A model hub id is ``org/name`` (letters, digits, '.', '_', '-'); anything else is a local path.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".json", ".yaml", ".yml")


def looks_like_hub_id(name: str | Path) -> bool:
    """True when ``name`` can only mean a model hub id (``org/name``), never a local path.

    A name that exists locally, starts like a path (``.``, ``/``, ``~``), ends in a file suffix
    (``.gguf`` …), or whose first part is an existing local directory (``runs/nope`` where ``runs/``
    exists) is a local path, so loading it never waits on a hub.
    """
    text = str(name)
    if not _HUB_ID.fullmatch(text) or ".." in text or Path(text).exists():
        return False
    org = text.split("/", 1)[0]
    return not Path(org).is_dir() and not text.lower().endswith(_FILE_SUFFIXES)


def check_checkpoint(checkpoint: str | Path) -> None:
    """Fail fast on a checkpoint that is neither an existing local path nor a plausible hub id.

    Raises:
        CheckpointError: names the missing path and, when its folder exists, the closest entries there.
    """
    path = Path(checkpoint).expanduser()
    if path.exists() or looks_like_hub_id(checkpoint):
        return
    hint = ""
    parent = path.parent
    if parent.is_dir():
        close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir()], n=3, cutoff=0.5)
        if close:
            hint = f" (in {parent}/: {', '.join(close)})"
    raise CheckpointError(
        f"checkpoint {checkpoint} does not exist{hint}: pass an existing model or LoRA adapter directory, "
        "a .gguf file, or a hub id as org/name"
    )


def is_adapter(checkpoint: str | Path) -> bool:
    """True when ``checkpoint`` is a local PEFT adapter directory."""
    return (Path(checkpoint) / "adapter_config.json").is_file()


def adapter_base(checkpoint: str | Path, base: str | Path | None = None) -> str:
    """The base model an adapter applies to: ``base`` if given, else the adapter config's record of it."""
    if base is not None:
        return str(base)
    config = json.loads((Path(checkpoint) / "adapter_config.json").read_text())
    recorded = config.get("base_model_name_or_path")
    if not recorded:
        raise CheckpointError(
            f"LoRA adapter {checkpoint} does not record its base model (base_model_name_or_path is empty): "
            "pass the base checkpoint with --base"
        )
    return recorded


def resolve_dtype(dtype, device: str):
    """``None``/``"auto"`` → bfloat16 on CUDA, float32 elsewhere; strings like ``"bfloat16"`` → torch dtypes."""
    import torch

    if dtype is None or dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise CheckpointError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return value


def _has_tokenizer(path: str | Path) -> bool:
    return any((Path(path) / name).is_file() for name in _TOKENIZER_FILES)


def load_tokenizer(checkpoint: str | Path, base: str | Path | None = None):
    """Tokenizer for sampling: from ``checkpoint`` if it has one, else ``base``; left padding, a pad token set."""
    from transformers import AutoTokenizer

    checkpoint = resolve_model_path(str(checkpoint))
    source = checkpoint if _has_tokenizer(checkpoint) or base is None else resolve_model_path(str(base))
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(checkpoint: str | Path, *, base: str | Path | None = None, device: str = "cpu", dtype=None):
    """Load ``(model, tokenizer)`` ready for generation (eval mode, on ``device``).

    Args:
        checkpoint: full/merged model directory (or hub id), a ``.gguf`` file, or a LoRA adapter directory.
        base: base model for an adapter (defaults to the one the adapter records; may be a ``.gguf``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` …
        dtype: torch dtype or its name; default bfloat16 on CUDA, float32 on CPU.

    Raises:
        CheckpointError: the checkpoint does not exist locally (and is no hub id) or an adapter's base is
            unknown.
    """
    from transformers import AutoModelForCausalLM

    check_checkpoint(checkpoint)
    checkpoint = resolve_model_path(str(checkpoint))
    path = Path(checkpoint)
    torch_dtype = resolve_dtype(dtype, device)
    if is_adapter(path):
        from peft import PeftModel

        base_name = resolve_model_path(adapter_base(path, base))
        log.info("loading LoRA adapter %s on base %s", path, base_name)
        model = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch_dtype)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        tokenizer = load_tokenizer(path, base_name)
    else:
        log.info("loading model %s", checkpoint)
        model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch_dtype)
        tokenizer = load_tokenizer(checkpoint, base)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(device).eval(), tokenizer
