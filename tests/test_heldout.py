"""Held-out statistics on constructed before/after samples, and the decontamination of the held-out splits."""

from __future__ import annotations

import json
import random

import pytest

from train.common import summarise
from train.corpus import load_split
from train.corpus.base import normalised_golden
from train.heldout import HeldOutResult, bootstrap_ci, measure, paired_gain
from train.plots import plot_learning_curve


def _result(rates_passed: list[int], n: int, split: str = "test") -> HeldOutResult:
    ids = tuple(f"t{i}" for i in range(len(rates_passed)))
    return HeldOutResult(split, ids, tuple(rates_passed), tuple([n] * len(rates_passed)))


def test_pass_at_1_is_the_mean_of_per_task_rates():
    result = _result([0, 2, 4, 4], 4)
    assert result.pass_at_1 == pytest.approx((0 + 0.5 + 1 + 1) / 4)
    assert result.samples == 16
    infra = HeldOutResult("test", ("a", "b"), (1, 0), (2, 0), infra_errors=2)
    assert infra.pass_at_1 == pytest.approx(0.5)  # a task with no verdict is left out, not counted as 0


def test_a_certain_gain_has_a_point_interval():
    before, after = _result([0] * 50, 4), _result([4] * 50, 4)
    gain = paired_gain(before, after)
    assert gain["gain"] == pytest.approx(1.0)
    assert gain["ci95"] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_no_change_has_an_interval_around_zero():
    rng = random.Random(1)
    passed = [rng.randrange(5) for _ in range(100)]
    gain = paired_gain(_result(passed, 4), _result(passed, 4))
    assert gain["gain"] == 0.0 and gain["ci95"] == [0.0, 0.0]
    shuffled = passed[:]
    rng.shuffle(shuffled)
    noisy = paired_gain(_result(passed, 4), _result(shuffled, 4))
    assert noisy["ci95"][0] < 0.0 < noisy["ci95"][1]


def test_paired_interval_matches_the_normal_approximation():
    """100 tasks, every task gains 0 or 0.5 with equal odds: mean 0.25, sd of the mean 0.025."""
    rng = random.Random(7)
    before = [rng.randrange(3) for _ in range(400)]
    after = [b + 2 * rng.randrange(2) for b in before]
    gain = paired_gain(_result(before, 4), _result(after, 4), seed=3)
    diffs = [(a - b) / 4 for a, b in zip(after, before, strict=True)]
    mean = sum(diffs) / len(diffs)
    sd = (sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) ** 0.5 / len(diffs) ** 0.5
    lo, hi = gain["ci95"]
    assert gain["gain"] == pytest.approx(mean)
    assert lo == pytest.approx(mean - 1.96 * sd, abs=0.01) and hi == pytest.approx(mean + 1.96 * sd, abs=0.01)


def test_single_interval_covers_the_mean_and_is_reproducible():
    values = [0.0, 0.25, 0.5, 1.0] * 25
    lo, hi = bootstrap_ci(values, seed=5)
    assert lo < sum(values) / len(values) < hi
    assert bootstrap_ci(values, seed=5) == (lo, hi)


def test_gain_needs_the_same_tasks():
    with pytest.raises(ValueError, match="same tasks"):
        paired_gain(_result([1, 2], 4), _result([1, 2, 3], 4))


class _Verdict:
    def __init__(self, passed: bool, reward: float | None) -> None:
        from rewards.types import Status

        self.passed, self.reward = passed, reward
        self.status = Status.OK if passed else (Status.INFRA_ERROR if reward is None else Status.SIM_MISMATCH)


class _Task:
    def __init__(self, task_id: str) -> None:
        self.id = task_id


def test_measure_groups_verdicts_per_task_and_leaves_infra_out():
    verdicts = iter([_Verdict(True, 1.5), _Verdict(False, 0.3), _Verdict(False, None), _Verdict(True, 1.4)])
    result = measure("test", [_Task("a"), _Task("b")], [["x", "y"], ["z", "w"]], lambda items: list(verdicts))
    assert result.passed == (1, 1) and result.scored == (2, 1) and result.infra_errors == 1
    assert result.pass_at_1 == pytest.approx((0.5 + 1.0) / 2)
    assert result.statuses == {"OK": 2, "SIM_MISMATCH": 1, "INFRA_ERROR": 1}


def test_summary_and_curve(tmp_path):
    before = {"test": _result([1] * 10, 4), "test_ood": _result([0] * 5, 4, "test_ood")}
    after = {"test": _result([3] * 10, 4), "test_ood": _result([0] * 5, 4, "test_ood")}
    summary = {"output_dir": str(tmp_path), **summarise(before, after)}
    assert summary["split"] == "test" and summary["gain"] == pytest.approx(0.5)
    assert summary["before"]["pass@1"] == pytest.approx(0.25) and summary["after"]["samples"] == 40
    assert summary["gain_ci95"] == [pytest.approx(0.5), pytest.approx(0.5)]
    assert summary["ood"]["gain"] == 0.0 and summary["ood"]["after"]["tasks"] == 5
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(
        "".join(json.dumps({"step": s, "verilog/pass_rate": s / 10}) + "\n" for s in range(1, 6))
    )
    out = plot_learning_curve(metrics, summary, tmp_path / "curve.png", algo="GRPO")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_held_out_splits_share_no_id_or_golden_with_train():
    train = load_split("train")
    train_ids = {t.id for t in train}
    train_goldens = {normalised_golden(t.reference) for t in train}
    for split in ("val", "test", "test_ood"):
        tasks = load_split(split)
        assert not train_ids & {t.id for t in tasks}, split
        assert not train_goldens & {normalised_golden(t.reference) for t in tasks}, split
    test = load_split("test")
    assert len(test) * 4 >= 400  # the demo's 4 samples per task give at least 400 held-out samples
    # instance hold-out: the same families and parameter ranges as train, other instances
    assert {t.meta["family"] for t in test} <= {t.meta["family"] for t in train}
    ood_families = {t.meta["family"] for t in load_split("test_ood")} - {t.meta["family"] for t in train}
    assert ood_families, "test_ood holds whole families the training split never shows"
