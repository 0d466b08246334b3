"""Config loading for the training scripts: dataclass defaults ← YAML file ← command-line flags.

Each entry script declares one dataclass that subclasses a TRL config (``GRPOConfig``, ``SFTConfig``,
``DPOConfig``) only to add fields, usually by mixing in the field groups below::

    @dataclass
    class DPOScriptConfig(ModelFields, TaskFields, DPOConfig):
        beta_schedule: str = option("constant", "...")

    cfg = load_config(DPOScriptConfig, argv)          # argv like ["--config", "x.yaml", "--lr", "1e-5"]
    save_resolved_config(cfg, cfg.output_dir)        # writes <output_dir>/resolved_config.yaml

Rules (docs/design.md, "Training"): every field has a default and a help string; the YAML file
(``--config``) overrides the defaults, flags override the YAML; an unknown key in either place is a
:class:`ConfigError` listing close matches. Like ``argparse``, :func:`load_config` ends the process on
such an error with one line on stderr and exit status 2 (no traceback); ``exit_on_error=False``
raises the :class:`ConfigError` instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from transformers import HfArgumentParser, TrainerCallback

from rewards.config import ConfigError, option

log = logging.getLogger(__name__)

T = TypeVar("T")

RESOLVED_CONFIG_NAME = "resolved_config.yaml"
RERUN_CONFIG_NAME = "config.yaml"
_EXPLICIT_ATTR = "_rtlforge_explicit_keys"
# Counts of scoring workers where 0 means one per core (as --jobs/--workers of the CLIs).
_PER_CORE_FIELDS = ("reward_workers",)

# The linear layers of Qwen2/Llama-style blocks: LoRA on all of them is the usual recipe for code RL.
DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class ModelFields:
    """Which policy to load and whether to train it fully or through a LoRA adapter."""

    model_name_or_path: str = option(
        "tiny", "HF model id or local dir; 'tiny' = the embedded tiny policy (built and cached on first use)"
    )
    tiny_cache_dir: str | None = option(
        None, "where the tiny policy is cached (default: $RTLFORGE_CACHE or ~/.cache/rtlforge)"
    )
    model_dtype: str = option(
        "auto", "weights dtype: auto | float32 | bfloat16 | float16 (auto = bf16 on GPU, fp32 on CPU)"
    )
    attn_implementation: str | None = option(
        None, "e.g. flash_attention_2 or sdpa; None = transformers' default"
    )
    use_peft: bool = option(False, "train a LoRA adapter (PEFT) instead of all weights")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = option(0.05, "LoRA dropout")
    lora_target_modules: list[str] = option(DEFAULT_LORA_TARGETS, "module names LoRA adapts")
    lora_modules_to_save: list[str] = option(
        [],
        "modules trained in full next to the adapter (PEFT modules_to_save, matched by name suffix), e.g. "
        "['model.norm']: the final RMSNorm, whose scale sets how sharply the policy samples",
    )
    modules_to_save_learning_rate: float | None = option(
        None,
        "learning rate of the lora_modules_to_save (with use_peft false: of those modules' own weights); "
        "None = learning_rate",
    )


@dataclass
class TaskFields:
    """Which tasks to train (and evaluate) on and how prompts are written."""

    train_tasks: str | None = option(
        None, "task JSONL/parquet for training; None = embedded corpus split 'train'"
    )
    eval_tasks: str | None = option(
        None, "held-out task file for pass@1; None = embedded corpus split 'test' (unseen instances)"
    )
    eval_ood_tasks: str | None = option(
        None,
        "second held-out file, reported separately; None = the corpus split 'test_ood' (unseen widths and "
        "families) when eval_tasks is the corpus too, else none",
    )
    max_train_tasks: int | None = option(None, "use only the first N training tasks (None = all)")
    prompt_style: str = option("plain", "prompt style from rollout.prompts: plain | think | chat")


@dataclass
class EvalFields:
    """Held-out functional pass@1 before and after training (statistics in ``train/heldout.py``)."""

    eval_pass_at_1: bool = option(
        True, "measure functional pass@1 on the held-out splits before and after training"
    )
    eval_samples: int = option(4, "samples per held-out task for pass@1 (mean pass rate over samples)")
    eval_temperature: float = option(1.0, "sampling temperature of the pass@1 measurement (0 = greedy)")
    eval_max_tasks: int | None = option(
        None, "use only the first N tasks of each held-out split (None = all)"
    )


def _flag_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _unknown_key_error(unknown: list[str], known: set[str], where: str) -> ConfigError:
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=3)
        hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return ConfigError(
        f"unknown config keys in {where}: {', '.join(hints)}. Every key must be a field of the script's "
        "config dataclass; run the script with --help for the list."
    )


def read_yaml_config(path: str | Path, cls: type) -> dict[str, Any]:
    """Read a recipe YAML and check every key is a field of ``cls``; returns the mapping."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"config file {path} does not exist; pass an existing recipe, e.g. configs/grpo/"
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"config file {path} is not valid YAML: {exc}. Fix the syntax at the position shown."
        ) from exc
    loaded = loaded or {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of field: value, got {type(loaded).__name__}"
        )
    unknown = sorted(set(loaded) - _flag_names(cls))
    if unknown:
        raise _unknown_key_error(unknown, _flag_names(cls), str(path))
    return loaded


def _split_config_flag(argv: list[str]) -> tuple[str | None, list[str]]:
    rest, path = [], None
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--config":
            if index + 1 >= len(argv):
                raise ConfigError("--config needs a path, e.g. --config configs/grpo/tiny_cpu.yaml")
            path = argv[index + 1]
            index += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        index += 1
    return path, rest


def load_config(
    cls: type[T],
    argv: list[str] | None = None,
    *,
    defaults: dict[str, Any] | None = None,
    exit_on_error: bool = True,
) -> T:
    """Build ``cls`` from dataclass defaults ← ``defaults`` ← ``--config`` YAML ← the other flags in ``argv``.

    This is the training scripts' command-line parser. Like ``argparse``, it reports a bad command line
    or recipe as one line on stderr (``error: …``, written by the main process only) and ends the
    process with exit status 2, without a traceback.

    Args:
        cls: a dataclass (normally a TRL config subclass) whose fields are the valid keys.
        argv: command-line arguments without the program name (``None`` = ``[]``, not ``sys.argv``).
        defaults: script-level defaults applied under the YAML (e.g. the embedded CPU recipe).
        exit_on_error: ``False`` raises :class:`ConfigError` instead of ending the process.

    Raises:
        ConfigError: (``exit_on_error=False``) unknown keys in the YAML or on the command line,
            unreadable YAML, a bad value, or a local model path that does not exist.
        SystemExit: (``exit_on_error=True``) status 2 for the same errors.
    """
    try:
        return _load_config(cls, argv, defaults)
    except ConfigError as exc:
        if not exit_on_error:
            raise
        # Under `accelerate launch` every process parses the same argv; one copy of the line is enough.
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _load_config(cls: type[T], argv: list[str] | None, defaults: dict[str, Any] | None) -> T:
    path, flags = _split_config_flag(list(argv or []))
    values = dict(defaults or {})
    if path is not None:
        values.update(read_yaml_config(path, cls))
    unknown = sorted(set(values) - _flag_names(cls))
    if unknown:
        raise _unknown_key_error(unknown, _flag_names(cls), "script defaults")
    parser = HfArgumentParser(cls)
    parser.set_defaults(**values)
    unknown_flags = [
        a
        for a in flags
        if a.startswith("--") and a != "--help" and a[2:].split("=", 1)[0] not in _flag_names(cls)
    ]
    if unknown_flags:
        raise _unknown_key_error(
            [a[2:].split("=", 1)[0] for a in unknown_flags], _flag_names(cls), "command line"
        )
    try:
        (cfg,) = parser.parse_args_into_dataclasses(args=flags)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"invalid config ({cls.__name__}): {exc}. Fix the value in the recipe or on the command line."
        ) from exc
    _check_model_path(cfg)
    if isinstance(cfg, ModelFields):
        check_saved_modules(cfg)
    for name in _PER_CORE_FIELDS:
        if getattr(cfg, name, 0) < 0:
            raise ConfigError(
                f"{name}={getattr(cfg, name)} is negative; pass a count >= 1, or 0 for one per core"
            )
    explicit = set(values) | {a[2:].split("=", 1)[0] for a in flags if a.startswith("--")}
    object.__setattr__(cfg, _EXPLICIT_ATTR, sorted(explicit))
    if path is not None:
        log.info("config: %s with command-line overrides %s", path, [a for a in flags if a.startswith("--")])
    return cfg


def _check_model_path(cfg: Any) -> None:
    """A ``model_name_or_path`` that is neither 'tiny', an existing path nor a hub id is an error now,
    not after a minute of hub retries inside the trainer."""
    name = getattr(cfg, "model_name_or_path", None)
    if not name or name == "tiny":
        return
    from rollout.model import CheckpointError, check_checkpoint

    try:
        check_checkpoint(name)
    except CheckpointError as exc:
        raise ConfigError(f"model_name_or_path: {exc}") from exc


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML-safe mapping of a config dataclass (enums as values, paths as strings)."""
    source = (
        cfg.to_dict()
        if hasattr(cfg, "to_dict")
        else {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    )
    out = {}
    for f in dataclasses.fields(cfg):
        if not f.init or f.name not in source:
            continue
        value = source[f.name]
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, Path):
            value = str(value)
        elif not isinstance(value, str | int | float | bool | list | dict | type(None)):
            value = str(value)
        out[f.name] = value
    return out


def save_resolved_config(cfg: Any, run_dir: str | Path) -> Path:
    """Write the config of a run into ``run_dir``; returns the path of ``resolved_config.yaml``.

    ``resolved_config.yaml`` holds every field after validation (the record of what ran, including
    values TRL derives, so it is not meant to be fed back); ``config.yaml`` holds only the keys that
    were set by script defaults, the YAML recipe or flags, and reruns the same config with ``--config``.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    values = config_to_dict(cfg)
    path = run_dir / RESOLVED_CONFIG_NAME
    body = yaml.safe_dump(values, sort_keys=True, allow_unicode=True)
    path.write_text(
        f"# every field of {type(cfg).__name__} as the run used it (a record; "
        f"rerun with --config {run_dir / RERUN_CONFIG_NAME})\n{body}"
    )
    explicit = getattr(cfg, _EXPLICIT_ATTR, None)
    if explicit is not None:
        rerun = {key: values[key] for key in explicit if key in values}
        (run_dir / RERUN_CONFIG_NAME).write_text(
            f"# keys set explicitly for this run; rerun: --config {run_dir / RERUN_CONFIG_NAME}\n"
            + yaml.safe_dump(rerun, sort_keys=True, allow_unicode=True)
        )
    return path


def torch_dtype(name: str) -> torch.dtype:
    """Map ``model_dtype`` to a torch dtype ('auto' = bf16 with CUDA, else fp32)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name not in table:
        raise ConfigError(f"model_dtype={name!r} is unknown; valid: auto, {', '.join(table)}")
    return table[name]


def check_saved_modules(fields: ModelFields) -> None:
    """A learning rate for the saved modules needs modules to apply to."""
    if fields.modules_to_save_learning_rate is not None and not fields.lora_modules_to_save:
        raise ConfigError(
            "modules_to_save_learning_rate is set but lora_modules_to_save is empty: name the modules, "
            "e.g. lora_modules_to_save: [model.norm]"
        )


def lora_config(fields: ModelFields, task_type: str = "CAUSAL_LM"):
    """A PEFT ``LoraConfig`` from the LoRA fields, or ``None`` when ``use_peft`` is off."""
    check_saved_modules(fields)
    if not fields.use_peft:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=fields.lora_r,
        lora_alpha=fields.lora_alpha,
        lora_dropout=fields.lora_dropout,
        target_modules=list(fields.lora_target_modules),
        modules_to_save=list(fields.lora_modules_to_save) or None,
        task_type=task_type,
    )


class SavedModulesLearningRate:
    """Trainer mixin: the named modules get a learning rate of their own.

    Keyword arguments ``saved_modules`` (module paths, e.g. ``["model.norm"]``: with an adapter, the
    modules PEFT trains in full; with full weights, those modules' own weights) and
    ``saved_modules_learning_rate`` (``None`` = the trainer's one rate). The optimizer is built as usual,
    then those parameters move into a group of their own, so the learning-rate schedule scales both
    groups alike.
    """

    def __init__(
        self,
        *args,
        saved_modules: Sequence[str] = (),
        saved_modules_learning_rate: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.saved_modules = tuple(saved_modules)
        self.saved_modules_learning_rate = saved_modules_learning_rate

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        rate = self.saved_modules_learning_rate
        if rate is None:
            return optimizer
        opt_model = self.model if model is None else model
        # With an adapter, PEFT's trained copies (<path>.modules_to_save.default.weight; the originals
        # are frozen), whatever suffix matched them; with full weights, a module path inside the name.
        marks = (".modules_to_save.", *(f".{name.strip('.')}." for name in self.saved_modules))
        saved = {
            id(p)
            for n, p in opt_model.named_parameters()
            if p.requires_grad and any(mark in f".{n}" for mark in marks)
        }
        if not saved:
            raise ConfigError(
                f"modules_to_save_learning_rate is set but no trainable parameter is in the modules "
                f"{list(self.saved_modules)}; give full module paths, e.g. model.norm"
            )
        moved = []
        for group in optimizer.param_groups:
            moved += [p for p in group["params"] if id(p) in saved]
            group["params"] = [p for p in group["params"] if id(p) not in saved]
        optimizer.add_param_group({"params": moved, "lr": rate, "weight_decay": 0.0})
        return optimizer


def cpu_training_defaults() -> dict[str, Any]:
    """TRL settings that must change on a machine without CUDA (bf16 would fail; no pinned memory)."""
    if torch.cuda.is_available():
        return {}
    return {"bf16": False, "fp16": False, "use_cpu": True, "dataloader_pin_memory": False}


class JsonlMetrics(TrainerCallback):
    """Append every log record (step, loss, rewards/…, status mix) to ``<output_dir>/metrics.jsonl``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "time": round(time.time(), 3), **logs}
            with self.path.open("a") as handle:
                handle.write(json.dumps(record, default=float) + "\n")
