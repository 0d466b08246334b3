"""What the training recipes share: tasks, policy loading, reporting, resume, held-out pass@1 and the run summary.

``train/grpo.py``, ``train/dpo.py`` and ``train/sft.py`` each read top to bottom; the components they
have in common live here, once:

- :func:`resolve_tasks`: a task file, or a split of the embedded corpus;
- :func:`load_model_and_tokenizer`: the policy named by ``model_name_or_path`` (``tiny`` = the
  embedded tiny policy, a local directory, a hub id, or a ``.gguf`` file);
- :func:`setup_reporting`: wandb offline unless the user has a key, logging into the run directory;
- :func:`resume_arg`: the one resume rule (``latest`` = the newest checkpoint in the run directory,
  or a fresh start when there is none);
- :func:`held_out_splits`, :func:`evaluate`: functional pass@1 on the held-out splits (``test``: unseen
  instances of the training families; ``test_ood``: unseen widths and families), with intervals
  (:mod:`train.heldout`);
- :func:`finish_run`: ``summary.json``, ``learning_curve.png`` and the closing lines a person reads.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rewards.types import Task
from train.config import ModelFields, torch_dtype
from train.heldout import HeldOutResult, measure, paired_gain

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
CURVE_NAME = "learning_curve.png"


# ------------------------------------------------------------------------------------ tasks, model
def resolve_tasks(path: str | None, split: str) -> list[Task]:
    """Tasks of ``path``, or of the embedded corpus split ``split`` when ``path`` is None."""
    if path is not None:
        from rewards.tasks import load_tasks

        return load_tasks(path)
    from train.corpus import load_split

    return load_split(split)


def model_path(name: str) -> str:
    """A loadable checkpoint for ``model_name_or_path``: 'tiny' → the cached tiny policy; a ``.gguf`` file
    → its converted checkpoint (cached); anything else unchanged."""
    if name == "tiny":
        from train.tiny import ensure_tiny_policy

        return str(ensure_tiny_policy())
    try:
        from rollout.model import resolve_model_path
    except ImportError:  # a rollout without GGUF support: names pass through
        return name
    return str(resolve_model_path(name))


def load_model_and_tokenizer(cfg: ModelFields):
    """The policy named by ``cfg.model_name_or_path`` and its tokenizer (pad = EOS when it has none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = model_path(cfg.model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs = {"dtype": torch_dtype(cfg.model_dtype)}
    if cfg.attn_implementation:
        kwargs["attn_implementation"] = cfg.attn_implementation
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if str(cfg.model_name_or_path).endswith(".gguf"):
        from rollout.gguf import record_source

        record_source(model, cfg.model_name_or_path)  # a LoRA adapter then names the .gguf as its base
    return model, tokenizer


# ------------------------------------------------------------------------------ run bookkeeping
def setup_reporting(report_to: Sequence[str] | str | None, output_dir: str | Path) -> None:
    """wandb offline unless the user has a key (or set WANDB_MODE), logging into the run directory."""
    if "wandb" in (report_to or []):
        if "WANDB_MODE" not in os.environ and not os.environ.get("WANDB_API_KEY"):
            os.environ["WANDB_MODE"] = "offline"
        os.environ.setdefault("WANDB_DIR", str(Path(output_dir).resolve()))
        os.environ.setdefault("WANDB_PROJECT", "rtlforge")


def resume_arg(value: str | None, run_dir: str | Path) -> str | bool | None:
    """``resume_from_checkpoint`` as the trainer takes it: ``latest`` (or true) = the newest
    ``checkpoint-*`` in ``run_dir`` when there is one, else a fresh start; a path is used as given."""
    if value in ("latest", "true", "True"):
        return True if any(Path(run_dir).glob("checkpoint-*")) else None
    return value


def is_main() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


def on_main(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on the main process only; every process gets its (picklable) result."""
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState()
    box = [fn(*args) if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(box)
    return box[0]


# ------------------------------------------------------------------------------ held-out pass@1
def held_out_splits(
    eval_tasks: str | None, ood_tasks: str | None, max_tasks: int | None
) -> dict[str, list[Task]]:
    """The held-out task lists by name: ``test`` (``eval_tasks`` or the corpus' instance hold-out) and
    ``test_ood`` (``ood_tasks``, or the corpus' out-of-distribution split when ``eval_tasks`` is the
    corpus too; omitted when a user's eval file is given without an OOD file)."""
    splits = {"test": resolve_tasks(eval_tasks, "test")[: max_tasks or None]}
    if ood_tasks is not None or eval_tasks is None:
        splits["test_ood"] = resolve_tasks(ood_tasks, "test_ood")[: max_tasks or None]
    return splits


Sampler = Callable[[Sequence[Task]], list[list[str]]]


def evaluate(
    splits: dict[str, list[Task]], sample: Sampler, scorer: Callable[[list[dict]], list]
) -> dict[str, HeldOutResult]:
    """pass@1 of one policy on every split: ``sample(tasks)`` gives the completions per task."""
    results = {}
    for name, tasks in splits.items():
        start = time.perf_counter()
        log.info("held-out pass@1 on %s: sampling %d tasks", name, len(tasks))
        results[name] = measure(name, tasks, sample(tasks), scorer)
        log.info(
            "held-out pass@1 on %s: %.3f (%d tasks, %d samples, %.0f s)",
            name,
            results[name].pass_at_1,
            len(tasks),
            results[name].samples,
            time.perf_counter() - start,
        )
    return results


def summarise(
    before: dict[str, HeldOutResult], after: dict[str, HeldOutResult], *, seed: int = 0
) -> dict[str, Any]:
    """``before``/``after``/``gain_ci95`` on ``test`` plus the same for ``test_ood`` under ``ood``."""
    out: dict[str, Any] = {}
    for name, target in (("test", out), ("test_ood", None)):
        if name not in before or name not in after:
            continue
        gain = paired_gain(before[name], after[name], seed=seed)
        block = {
            "split": name,
            "before": before[name].to_dict(seed=seed),
            "after": after[name].to_dict(seed=seed + 1),
            "gain": gain["gain"],
            "gain_ci95": gain["ci95"],
            "gain_method": gain["method"],
        }
        if target is None:
            out["ood"] = block
        else:
            out.update(block)
    return out


def finish_run(summary: dict[str, Any], run_dir: str | Path, *, algo: str, started: float) -> dict[str, Any]:
    """Write ``summary.json`` and ``learning_curve.png`` into ``run_dir`` (main process only)."""
    summary["wall_s"] = round(time.time() - started, 1)
    run_dir = Path(run_dir)
    if not is_main():
        return summary
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1, default=str))
    try:
        from train.plots import plot_learning_curve

        plot_learning_curve(run_dir / "metrics.jsonl", summary, run_dir / CURVE_NAME, algo=algo)
    except Exception as exc:  # a plot must never fail a finished run
        log.warning("learning curve not drawn (%s: %s)", type(exc).__name__, exc)
    return summary


def _line(name: str, block: dict[str, Any], algo: str) -> str:
    b, a = block["before"], block["after"]
    lo, hi = block["gain_ci95"]
    return (
        f"{name:<8} pass@1 ({a['tasks']} tasks, {a['samples']} samples): "
        f"before {algo} {b['pass@1']:.1%} [{b['ci95'][0]:.1%}, {b['ci95'][1]:.1%}]  "
        f"after {a['pass@1']:.1%} [{a['ci95'][0]:.1%}, {a['ci95'][1]:.1%}]  "
        f"gain {100 * block['gain']:+.1f} points, 95% CI [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    )


def print_summary(summary: dict[str, Any], *, algo: str) -> None:
    """The closing lines: where the run is, then held-out pass@1 before/after (last, so they stay in view)."""
    print(
        f"run directory: {summary['output_dir']} (resolved_config.yaml, metrics.jsonl, {SUMMARY_NAME}, {CURVE_NAME})"
    )
    print(f"wall time: {summary.get('wall_s', 0.0) / 60:.1f} min")
    if "before" in summary and "after" in summary:
        print("held-out functional pass@1, 95% intervals by bootstrap over tasks (gain: paired):")
        print("  " + _line("test", summary, algo))
        if "ood" in summary:
            print("  " + _line("test_ood", summary["ood"], algo))
