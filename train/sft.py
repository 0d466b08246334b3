"""Supervised fine-tuning (cold start before RL) over TRL's SFTTrainer.

Launch::

    accelerate launch train/sft.py --config configs/sft/tiny_cpu.yaml           # embedded tiny policy
    accelerate launch --config_file configs/accelerate/zero2.yaml train/sft.py \\
        --config configs/sft/qwen2.5-coder-7b_lora.yaml                          # a real model
    python train/sft.py --output_dir runs/sft-x --max_steps 50                   # any field as a flag

Data: task files (spec → golden design, answered as one fenced ```verilog block, in the same prompt
style GRPO uses) and/or users' instruction data (``data_files``: JSONL or parquet with either
``messages`` (chat), ``prompt``+``completion``, or ``text``). With no task file and no data file it
trains on the embedded corpus' train split. The loss is on completions only for prompt/completion data
(TRL's default). LoRA with ``--use_peft``; the adapter (or full model) and tokenizer are saved in
``output_dir``, and the resolved config next to them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python train/sft.py` / `accelerate launch train/sft.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trl import SFTConfig, SFTTrainer

from rewards.config import ConfigError
from rewards.types import Task
from rollout.prompts import build_messages, render_prompt
from train.common import load_model_and_tokenizer, resolve_tasks, resume_arg
from train.config import (
    JsonlMetrics,
    ModelFields,
    SavedModulesLearningRate,
    TaskFields,
    cpu_training_defaults,
    load_config,
    lora_config,
    option,
    save_resolved_config,
)
from train.tiny import answer_text, build_or_reuse, cache_root, ensure_tiny_policy, fingerprint

log = logging.getLogger(__name__)

# Bump when the tiny SFT defaults below change, so cached warm starts are rebuilt.
TINY_RECIPE_VERSION = 3


@dataclass
class SFTScriptConfig(ModelFields, TaskFields, SFTConfig):
    """TRL's SFTConfig plus model/LoRA/task fields (see ``train/config.py``)."""

    data_files: list[str] = option(
        [], "extra instruction data: JSONL/parquet files with messages | prompt+completion | text"
    )
    use_tasks: bool = option(
        True, "train on task (spec → golden) pairs; turn off to train only on data_files"
    )


def script_defaults() -> dict:
    """Defaults of the embedded CPU recipe, under any YAML or flag."""
    return {
        "output_dir": "runs/sft-tiny",
        "max_steps": 300,
        "learning_rate": 2e-3,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 20,
        "per_device_train_batch_size": 8,
        "max_length": 1024,
        "logging_steps": 25,
        "save_strategy": "no",
        "report_to": "none",
        "activation_checkpointing": False,
        "seed": 0,
        **cpu_training_defaults(),
    }


def task_rows(tasks: Sequence[Task], tokenizer, style: str) -> list[dict]:
    """Prompt/completion rows (conversational for ``style='chat'``) teaching spec → golden design."""
    rows = []
    for task in tasks:
        answer = answer_text(task.reference)
        if style == "chat":
            rows.append(
                {
                    "prompt": build_messages(task.prompt, style=style),
                    "completion": [{"role": "assistant", "content": answer}],
                }
            )
        else:
            rows.append({"prompt": render_prompt(tokenizer, task.prompt, style=style), "completion": answer})
    return rows


def load_data_files(paths: Sequence[str]):
    """Instruction data from JSONL/parquet files as one ``datasets.Dataset``; checks the columns."""
    from datasets import concatenate_datasets, load_dataset

    parts = []
    for path in paths:
        kind = "parquet" if str(path).endswith(".parquet") else "json"
        part = load_dataset(kind, data_files=str(path), split="train")
        columns = set(part.column_names)
        if not ({"messages"} <= columns or {"prompt", "completion"} <= columns or {"text"} <= columns):
            raise ConfigError(
                f"SFT data file {path} has columns {sorted(columns)}: it needs 'messages' (chat), "
                "'prompt' and 'completion', or 'text'. Rename the columns or convert the file."
            )
        parts.append(part)
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def build_dataset(cfg: SFTScriptConfig, tokenizer, tasks: Sequence[Task] | None):
    """Training set: task rows (from ``tasks`` / ``cfg.train_tasks`` / the corpus) plus ``data_files``."""
    from datasets import Dataset, concatenate_datasets

    parts = []
    if cfg.use_tasks:
        if tasks is None:
            tasks = resolve_tasks(cfg.train_tasks, "train")
        if cfg.max_train_tasks:
            tasks = list(tasks)[: cfg.max_train_tasks]
        parts.append(Dataset.from_list(task_rows(tasks, tokenizer, cfg.prompt_style)))
    if cfg.data_files:
        parts.append(load_data_files(cfg.data_files))
    if not parts:
        raise ConfigError("SFT has no data: use_tasks is false and data_files is empty. Set one of them.")
    return concatenate_datasets(parts) if len(parts) > 1 else parts[0]


class RTLSFTTrainer(SavedModulesLearningRate, SFTTrainer):
    """TRL's SFTTrainer with a learning rate of their own for modules trained next to an adapter."""


def train(cfg: SFTScriptConfig, tasks: Sequence[Task] | None = None, callbacks: Sequence[Any] = ()) -> Path:
    """Run SFT as configured; returns the output directory (model or adapter + tokenizer).

    ``callbacks`` are extra ``TrainerCallback``s (e.g. a wall-clock stop)."""
    model, tokenizer = load_model_and_tokenizer(cfg)
    dataset = build_dataset(cfg, tokenizer, tasks)
    save_resolved_config(cfg, cfg.output_dir)
    log.info("SFT on %d examples from %s", len(dataset), cfg.model_name_or_path)
    trainer = RTLSFTTrainer(
        model=model,
        args=cfg,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=[JsonlMetrics(Path(cfg.output_dir) / "metrics.jsonl"), *callbacks],
        saved_modules=cfg.lora_modules_to_save,
        saved_modules_learning_rate=cfg.modules_to_save_learning_rate,
    )
    trainer.train(resume_from_checkpoint=resume_arg(cfg.resume_from_checkpoint, cfg.output_dir))
    trainer.save_model(cfg.output_dir)
    tokenizer.save_pretrained(cfg.output_dir)
    return Path(cfg.output_dir)


def run_sft_on_tasks(
    tasks: Sequence[Task], *, model: str, out_dir: str | Path, max_steps: int, extra_args: Sequence[str] = ()
) -> Path:
    """SFT ``model`` on in-memory ``tasks`` with the embedded recipe (used by the tiny warm start)."""
    argv = [
        "--model_name_or_path",
        model,
        "--output_dir",
        str(out_dir),
        "--max_steps",
        str(max_steps),
        *extra_args,
    ]
    cfg = load_config(SFTScriptConfig, argv, defaults=script_defaults())
    return train(cfg, tasks)


def ensure_tiny_sft_policy(
    out_dir: str | Path | None = None,
    *,
    tasks: Sequence[Task] | None = None,
    max_steps: int = 300,
    extra_args: Sequence[str] = (),
) -> Path:
    """The embedded tiny policy after the SFT warm start on ``tasks``, built once and cached.

    Args:
        out_dir: where to save; default ``cache_root()/tiny-sft-<hash of base, steps, flags, tasks>``.
        tasks: SFT data (default: the embedded corpus' train split).
        max_steps: SFT optimizer steps.
        extra_args: more ``train/sft.py`` flags (e.g. ``["--learning_rate", "1e-3"]``).
    """
    tasks = list(tasks) if tasks is not None else resolve_tasks(None, "train")
    base = ensure_tiny_policy(tasks=tasks)
    info = {
        "kind": "sft",
        "base": base.name,
        "max_steps": max_steps,
        "extra": list(extra_args),
        "tasks": fingerprint({"t": [t.to_dict() for t in tasks]}),
        "recipe": TINY_RECIPE_VERSION,
    }
    final = Path(out_dir) if out_dir is not None else cache_root() / f"tiny-sft-{fingerprint(info)}"
    return build_or_reuse(
        final,
        info,
        lambda tmp: run_sft_on_tasks(
            tasks, model=str(base), out_dir=tmp, max_steps=max_steps, extra_args=extra_args
        ),
    )


# The warm start is deliberately partial: it runs the first half of a cosine schedule (the learning rate
# ends at half its peak), so the policy writes most training designs but still samples slips at
# temperature 1 and GRPO's groups have reward variance. Measured on 2 cores (400 steps, ~5.5 min): val
# pass@1 10.8% at T=1; the same schedule run to its end (800 steps, ~12 min) reached 23.5%, and GRPO
# from that converged policy lowered val pass@1 (23.5% -> 19.3% after 60 steps).
WARM_START_ARGS = ("--lr_scheduler_kwargs", '{"num_cycles": 0.25}')


def warm_start_policy(model_name_or_path: str, train_tasks: Sequence[Task], steps: int) -> str:
    """``tiny`` → the cached tiny policy after its SFT warm start on ``train_tasks`` (built by the main
    process first, then shared); any other name is returned unchanged."""
    if model_name_or_path != "tiny":
        return model_name_or_path
    from accelerate import PartialState

    with PartialState().main_process_first():
        path = str(ensure_tiny_sft_policy(tasks=train_tasks, max_steps=steps, extra_args=WARM_START_ARGS))
    log.info("tiny policy (SFT warm start, %d steps): %s", steps, path)
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    """Entry point: ``python train/sft.py [--config YAML] [--field value ...]``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(
        SFTScriptConfig, list(sys.argv[1:] if argv is None else argv), defaults=script_defaults()
    )
    return train(cfg)


if __name__ == "__main__":
    main()
