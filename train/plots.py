"""The learning curve of a run: rollout pass rate and mean reward per step, held-out pass@1 before/after."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Metric names as the trainers log them (GRPO: our reward wrapper's keys; DPO: TRL's).
STEP_SERIES = {
    "rollout pass rate": ("verilog/pass_rate",),
    "mean reward": ("rewards/verilog/mean", "reward"),
    "DPO reward accuracy": ("rewards/accuracies",),
    "DPO reward margin": ("rewards/margins",),
}


def _series(records: list[dict[str, Any]], keys: tuple[str, ...]) -> tuple[list[int], list[float]]:
    for key in keys:
        points = [(r["step"], float(r[key])) for r in records if key in r]
        if points:
            return [p[0] for p in points], [p[1] for p in points]
    return [], []


def plot_learning_curve(metrics_path: Path, summary: dict[str, Any], out: Path, *, algo: str) -> Path:
    """Draw ``out`` (PNG): per-step training series from ``metrics_path`` (when present) on the left,
    held-out pass@1 before/after with 95% intervals per split on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = []
    if metrics_path.is_file():
        records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    drawn = False
    for label, keys in STEP_SERIES.items():
        steps, values = _series(records, keys)
        if steps:
            left.plot(steps, values, label=label, marker="." if len(steps) < 30 else None)
            drawn = True
    left.set_xlabel("training step")
    left.set_title(f"{algo}: training rollouts")
    if drawn:
        left.legend(loc="best", fontsize=8)
    left.grid(alpha=0.3)

    blocks = [("test", summary)] + ([("test_ood", summary["ood"])] if "ood" in summary else [])
    blocks = [(name, block) for name, block in blocks if "before" in block and "after" in block]
    for offset, (when, colour) in enumerate((("before", "#999999"), ("after", "#1f77b4"))):
        xs = [i + (offset - 0.5) * 0.35 for i in range(len(blocks))]
        ys = [100 * block[when]["pass@1"] for _, block in blocks]
        err = [
            [100 * (block[when]["pass@1"] - block[when]["ci95"][0]) for _, block in blocks],
            [100 * (block[when]["ci95"][1] - block[when]["pass@1"]) for _, block in blocks],
        ]
        right.bar(xs, ys, width=0.35, yerr=err, capsize=4, color=colour, label=f"{when} {algo}")
    right.set_xticks(
        range(len(blocks)),
        [
            f"{name}\n({block['after']['tasks']} tasks, {block['after']['samples']} samples)"
            for name, block in blocks
        ],
    )
    right.set_ylabel("functional pass@1 (%)")
    right.set_title("held-out pass@1, 95% bootstrap intervals")
    if blocks:
        right.legend(loc="best", fontsize=8)
    right.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
