"""The fair baseline of an RL run: the same SFT start trained further with SFT for the same wall time.

    python -m train.baseline --run runs/grpo-tiny [--learning_rate 1e-3]

Reads the finished run's ``summary.json`` (its starting policy, its training wall time ``train_s`` and
the held-out ``test`` measurement before training) and ``resolved_config.yaml`` (held-out sampling
settings), continues SFT of the starting policy on the training split for ``train_s`` seconds at a
constant learning rate, then measures ``test`` pass@1 exactly as the run did (same tasks, samples,
temperature, seed, reward config). Prints the baseline next to the run's own figure and writes
``<run>/baseline_sft.json``. Say whether RL beats more imitation on the same budget; no target.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from transformers import TrainerCallback

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.config import load_reward_config  # noqa: E402
from rewards.engine import score_batch  # noqa: E402
from train.common import SUMMARY_NAME, held_out_splits, resolve_tasks  # noqa: E402
from train.heldout import HeldOutResult, measure, paired_gain  # noqa: E402

log = logging.getLogger(__name__)
BASELINE_NAME = "baseline_sft.json"


def result_from_dict(split: str, block: dict[str, Any]) -> HeldOutResult:
    """A :class:`HeldOutResult` back from its ``summary.json`` form (per-task counts)."""
    per_task = block["per_task"]
    return HeldOutResult(
        split=split,
        task_ids=tuple(per_task),
        passed=tuple(int(v[0]) for v in per_task.values()),
        scored=tuple(int(v[1]) for v in per_task.values()),
        infra_errors=int(block.get("infra_errors", 0)),
    )


class WallClockStop(TrainerCallback):
    """Trainer callback that ends training once ``seconds`` of wall time have passed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()
        self.steps = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        self.steps = state.global_step
        if time.monotonic() - self.start >= self.seconds:
            control.should_training_stop = True
        return control


def run(run_dir: Path, out_dir: Path, learning_rate: float, max_steps: int | None = None) -> dict[str, Any]:
    from train import sft
    from train.grpo import policy_sampler

    summary = json.loads((run_dir / SUMMARY_NAME).read_text())
    settings = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    if "before" not in summary or "train_s" not in summary:
        raise SystemExit(
            f"error: {run_dir / SUMMARY_NAME} has no held-out 'before' or 'train_s'; run the recipe first"
        )
    budget = float(summary["train_s"])
    start_policy = summary["model"]
    tasks = resolve_tasks(settings.get("train_tasks"), "train")
    stop = WallClockStop(budget if max_steps is None else float("inf"))
    args = [
        "--model_name_or_path", start_policy,
        "--output_dir", str(out_dir),
        "--max_steps", str(max_steps or 1_000_000),
        "--learning_rate", str(learning_rate),
        "--lr_scheduler_type", "constant",
        "--warmup_steps", "0",
        "--save_strategy", "no",
        "--report_to", "none",
        "--prompt_style", settings.get("prompt_style", "plain"),
    ]  # fmt: skip
    cfg = sft.load_config(sft.SFTScriptConfig, args, defaults=sft.script_defaults())
    started = time.time()
    sft.train(cfg, tasks, callbacks=[stop])
    sft_s = time.time() - started

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    sampling = SimpleNamespace(
        eval_samples=settings["eval_samples"],
        eval_temperature=settings["eval_temperature"],
        max_completion_length=settings.get("max_completion_length")
        or settings.get("sample_max_new_tokens", 320),
        seed=settings.get("seed", 0),
        prompt_style=settings.get("prompt_style", "plain"),
        cache_implementation=settings.get("cache_implementation"),
    )
    test = held_out_splits(settings.get("eval_tasks"), None, settings.get("eval_max_tasks"))["test"]
    config = load_reward_config(settings.get("reward_config"))
    by_id = {t.id: t for t in test}

    def scorer(items):
        return score_batch([(by_id[i["task_id"]], i["completion"]) for i in items], config)

    after = measure("test", test, policy_sampler(model, tokenizer, sampling)(test), scorer)
    before = result_from_dict("test", summary["before"])
    gain = paired_gain(before, after, seed=settings.get("seed", 0))
    report = {
        "start_policy": start_policy,
        "budget_s": budget,
        "sft_s": round(sft_s, 1),
        "sft_steps": stop.steps,
        "budget": "wall clock" if max_steps is None else f"{max_steps} steps",
        "learning_rate": learning_rate,
        "before": summary["before"]["pass@1"],
        "baseline_sft": after.to_dict(seed=settings.get("seed", 0) + 2),
        "baseline_gain": gain["gain"],
        "baseline_gain_ci95": gain["ci95"],
        "rl": {"algo": summary.get("algo"), "after": summary["after"]["pass@1"], "gain": summary.get("gain"),
               "gain_ci95": summary.get("gain_ci95")},
    }  # fmt: skip
    (run_dir / BASELINE_NAME).write_text(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished GRPO/DPO run directory (has summary.json)")
    parser.add_argument(
        "--out", default=None, help="where the baseline policy goes (default <run>/baseline-sft)"
    )
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="constant SFT learning rate")
    parser.add_argument(
        "--max_steps",
        type=int,
        default=None,
        help="SFT steps instead of the wall-clock budget (when other jobs share the machine: steps the run's "
        "train_s would buy on an idle one)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_dir = Path(args.run)
    out = Path(args.out) if args.out else run_dir / "baseline-sft"
    report = run(run_dir, out, args.learning_rate, args.max_steps)
    b = report["baseline_sft"]
    lo, hi = report["baseline_gain_ci95"]
    rl_lo, rl_hi = report["rl"]["gain_ci95"] or (float("nan"), float("nan"))
    print(f"start (before): test pass@1 {report['before']:.1%}")
    print(
        f"{report['rl']['algo']} ({report['budget_s'] / 60:.1f} min): {report['rl']['after']:.1%}, gain "
        f"{100 * report['rl']['gain']:+.1f} points [{100 * rl_lo:+.1f}, {100 * rl_hi:+.1f}]"
    )
    print(
        f"more SFT, same wall time ({report['sft_steps']} steps, lr {report['learning_rate']:g}): "
        f"{b['pass@1']:.1%} [{b['ci95'][0]:.1%}, {b['ci95'][1]:.1%}], gain {100 * report['baseline_gain']:+.1f} "
        f"points [{100 * lo:+.1f}, {100 * hi:+.1f}] ({b['samples']} samples)"
    )
    return report


if __name__ == "__main__":
    main()
