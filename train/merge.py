"""Merge a LoRA adapter into its base model and save a standalone model (for vLLM, evals, sharing).

    python -m train.merge --adapter runs/grpo-qwen2.5-coder-7b-lora --out runs/grpo-qwen-merged
    python -m train.merge --adapter runs/x/checkpoint-200 --base /models/base --out runs/x-merged --dtype bfloat16

The base model is read from the adapter's ``adapter_config.json`` (``base_model_name_or_path``) unless
``--base`` is given; the tokenizer comes from the adapter dir when it has one, else from the base. A base
that is a ``.gguf`` file (an adapter trained on a GGUF checkpoint records it) is loaded from its cached
conversion (:mod:`rollout.gguf`).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rollout.gguf import GGUFError, resolve_model_path
from train.config import torch_dtype

log = logging.getLogger(__name__)


class MergeError(ValueError):
    """The adapter directory or base model cannot be merged; the message says what to pass."""


def adapter_base_model(adapter: Path) -> str:
    """``base_model_name_or_path`` recorded in ``adapter/adapter_config.json``."""
    config = adapter / "adapter_config.json"
    if not config.is_file():
        raise MergeError(
            f"{adapter} has no adapter_config.json: it is not a PEFT adapter directory. "
            "Pass the output_dir (or a checkpoint-N dir) of a run with use_peft: true."
        )
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise MergeError(f"{config} does not name its base model; pass --base MODEL")
    return base


def merge_adapter(
    adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "auto"
) -> Path:
    """Load ``base`` + ``adapter``, fold the LoRA weights in, and save model and tokenizer to ``out``.

    Returns:
        ``out``, loadable with ``AutoModelForCausalLM.from_pretrained`` without PEFT.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    adapter, out = Path(adapter), Path(out)
    base = resolve_model_path(base or adapter_base_model(adapter))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype(dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer_dir = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    log.info("merged %s into %s -> %s", adapter, base, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--adapter", required=True, help="PEFT adapter dir (run output_dir or checkpoint-N)")
    parser.add_argument("--out", required=True, help="where to write the merged model")
    parser.add_argument("--base", default=None, help="base model (default: the one in adapter_config.json)")
    parser.add_argument("--dtype", default="auto", help="auto | float32 | bfloat16 | float16")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = merge_adapter(args.adapter, args.out, base=args.base, dtype=args.dtype)
    except (MergeError, GGUFError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
