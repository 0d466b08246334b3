"""Preference-pair building on constructed score sets: each rule, caps, skips, records and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards.types import RewardResult, Status, Task
from train import pairs
from train.pairs import PairingError, Sample, build_pairs, pair_samples

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "data" / "grpo_tasks.jsonl"


def _result(status: Status, *, ppa: float = 0.0, matched: int = 0, vectors: int = 0) -> RewardResult:
    levels = {"format": 0.0, "syntax": 0.0, "function": 0.0, "ppa": 0.0}
    metrics = {}
    if status is Status.OK:
        levels = {"format": 1.0, "syntax": 1.0, "function": 1.0, "ppa": ppa}
        metrics = {"area": 100.0 - 50 * ppa, "matched": vectors, "vectors": vectors}
    elif status in (Status.SIM_MISMATCH, Status.SIM_TIMEOUT):
        levels = {"format": 1.0, "syntax": 1.0, "function": 0.5 * matched / max(1, vectors), "ppa": 0.0}
        metrics = {"matched": matched, "vectors": vectors}
    elif status in (Status.SYNTAX_ERROR, Status.INTERFACE_MISMATCH, Status.FORBIDDEN):
        levels["format"] = 1.0
    if status is Status.INFRA_ERROR:
        return RewardResult.infra_error("t", "bwrap crashed")
    reward = sum(levels.values()) if status is not Status.FORBIDDEN else 0.0
    return RewardResult(
        "t", status, passed=status is Status.OK, reward=reward, levels=levels, metrics=metrics
    )


def _samples(*results: RewardResult) -> list[Sample]:
    return [Sample(f"completion {i}", r, i) for i, r in enumerate(results)]


def test_pass_beats_fail_first():
    samples = _samples(
        _result(Status.SYNTAX_ERROR), _result(Status.OK, ppa=0.3), _result(Status.FORMAT_ERROR)
    )
    found = pair_samples("t", samples, max_pairs=2)
    assert [(p.rule, p.chosen.index, p.rejected.index) for p in found] == [
        ("pass_vs_fail", 1, 2),
        ("pass_vs_fail", 1, 0),
    ]
    assert all(p.margin > 0 for p in found)


def test_ppa_among_passes_needs_margin():
    samples = _samples(
        _result(Status.OK, ppa=0.10), _result(Status.OK, ppa=0.40), _result(Status.OK, ppa=0.41)
    )
    found = pair_samples("t", samples, rules=["ppa"], ppa_margin=0.05, max_pairs=5)
    assert {(p.chosen.index, p.rejected.index) for p in found} == {(1, 0), (2, 0)}
    assert all(p.rule == "ppa" for p in found)
    assert pair_samples("t", samples, rules=["ppa"], ppa_margin=0.5) == []


def test_closer_fail_orders_stages_and_vectors():
    samples = _samples(
        _result(Status.FORMAT_ERROR),
        _result(Status.SYNTAX_ERROR),
        _result(Status.INTERFACE_MISMATCH),
        _result(Status.SIM_MISMATCH, matched=10, vectors=100),
        _result(Status.SIM_MISMATCH, matched=90, vectors=100),
    )
    found = pair_samples("t", samples, rules=["closer_fail"], max_pairs=20, fail_margin=0.1)
    edges = {(p.chosen.index, p.rejected.index) for p in found}
    assert (4, 3) in edges, "more matching vectors must beat fewer"
    assert (1, 0) in edges, "parses-but-fails-lint must beat no module at all"
    assert (2, 1) in edges and (3, 2) in edges
    assert all(p.chosen.index > p.rejected.index for p in found), "every pair must point up the stage order"
    assert len(edges) == 10
    # 10 vs 90 of 100 is 0.8 apart: a margin above that drops only that pair.
    narrow = pair_samples("t", samples, rules=["closer_fail"], max_pairs=20, fail_margin=0.85)
    assert (4, 3) not in {(p.chosen.index, p.rejected.index) for p in narrow}


def test_forbidden_is_no_better_than_no_code():
    samples = _samples(_result(Status.FORBIDDEN), _result(Status.FORMAT_ERROR))
    assert pair_samples("t", samples) == []
    with_syntax = _samples(_result(Status.FORBIDDEN), _result(Status.SYNTAX_ERROR))
    (pair,) = pair_samples("t", with_syntax)
    assert (pair.chosen.index, pair.rejected.index) == (1, 0)


def test_rule_order_fills_the_cap():
    samples = _samples(
        _result(Status.OK, ppa=0.0),
        _result(Status.OK, ppa=0.5),
        _result(Status.SIM_MISMATCH, matched=5, vectors=10),
        _result(Status.SYNTAX_ERROR),
    )
    first = pair_samples("t", samples, rules=["closer_fail", "ppa", "pass_vs_fail"], max_pairs=2)
    assert [p.rule for p in first] == ["closer_fail", "ppa"]
    default = pair_samples("t", samples, max_pairs=3)
    assert [p.rule for p in default] == ["pass_vs_fail"] * 3
    # disjoint pairs come first: the two passes each meet a different failure before any reuse
    assert {default[0].chosen.index, default[1].chosen.index} == {0, 1}
    assert {default[0].rejected.index, default[1].rejected.index} == {2, 3}


def test_prefer_narrowest_takes_hard_negatives_first():
    samples = _samples(
        _result(Status.OK), _result(Status.FORMAT_ERROR), _result(Status.SIM_MISMATCH, matched=9, vectors=10)
    )
    (wide,) = pair_samples("t", samples, rules=["pass_vs_fail"], max_pairs=1, prefer="widest")
    (narrow,) = pair_samples("t", samples, rules=["pass_vs_fail"], max_pairs=1, prefer="narrowest")
    assert wide.rejected.index == 1 and narrow.rejected.index == 2


def test_no_contrast_gives_no_pair():
    all_pass = _samples(_result(Status.OK, ppa=0.2), _result(Status.OK, ppa=0.2))
    all_same_fail = _samples(_result(Status.SYNTAX_ERROR), _result(Status.SYNTAX_ERROR))
    found, stats = build_pairs([("a", all_pass), ("b", all_same_fail)])
    assert found == []
    assert stats.no_contrast == 2 and stats.prompts_paired == 0 and stats.pairs == 0


def test_infra_error_is_never_paired():
    infra = _result(Status.INFRA_ERROR)
    assert infra.reward is None
    samples = _samples(infra, _result(Status.SYNTAX_ERROR), _result(Status.FORMAT_ERROR))
    found, stats = build_pairs([("t", samples)], max_pairs=10)
    assert found and all(0 not in (p.chosen.index, p.rejected.index) for p in found)
    assert stats.unscorable == 1
    only_infra_and_pass = _samples(infra, _result(Status.OK))
    found, stats = build_pairs([("t", only_infra_and_pass)])
    assert found == [] and stats.no_contrast == 1
    invalid = RewardResult("t", Status.INVALID_INPUT, reward=0.0)
    assert pair_samples("t", _samples(_result(Status.OK), invalid)) == []


def test_identical_completions_are_deduplicated():
    same = _result(Status.OK)
    samples = [
        Sample("module m; endmodule", same, 0),
        Sample("module m;\n endmodule ", same, 1),
        Sample("nothing", _result(Status.FORMAT_ERROR), 2),
    ]
    found, stats = build_pairs([("t", samples)], max_pairs=4)
    assert stats.duplicates == 1
    assert [(p.chosen.index, p.rejected.index) for p in found] == [(0, 2)]


def test_max_pairs_caps_each_prompt_and_stats_count_rules():
    samples = _samples(
        *[_result(Status.OK, ppa=0.1 * i) for i in range(4)],
        *[_result(Status.SYNTAX_ERROR) for _ in range(4)],
    )
    samples = [Sample(f"c{i}", s.result, i) for i, s in enumerate(samples)]
    found, stats = build_pairs([("t", samples), ("u", samples)], max_pairs=5)
    assert len(found) == 10 and stats.pairs == 10
    assert stats.pairs_by_rule == {"pass_vs_fail": 10}
    assert stats.passed == 8 and stats.samples == 16


def test_bad_options_are_errors():
    samples = _samples(_result(Status.OK), _result(Status.FORMAT_ERROR))
    with pytest.raises(PairingError, match="valid"):
        pair_samples("t", samples, rules=["pass_vs_fail", "longest"])
    with pytest.raises(PairingError, match="prefer"):
        pair_samples("t", samples, prefer="random")
    with pytest.raises(PairingError, match="max_pairs"):
        pair_samples("t", samples, max_pairs=0)


def test_records_load_as_a_dpo_dataset(tmp_path):
    task = Task(
        "tiny/and2", "AND of a and b.", "TopModule", "module TopModule(input a, b, output y); endmodule"
    )
    samples = _samples(_result(Status.OK, ppa=0.2), _result(Status.SIM_MISMATCH, matched=3, vectors=4))
    path, stats = pairs.pair_file_from_groups(
        [task], [samples], tmp_path / "p.jsonl", style="plain", scored_out=tmp_path / "scored.jsonl"
    )
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["prompt"].startswith("AND of a and b.") and "```verilog" in record["prompt"]
    assert record["chosen"] == "completion 0" and record["rejected"] == "completion 1"
    assert record["rule"] == "pass_vs_fail"
    assert record["rejected_score"]["status"] == "SIM_MISMATCH" and record["rejected_score"]["matched"] == 3.0
    assert record["chosen_score"]["levels"]["ppa"] == 0.2
    assert len((tmp_path / "scored.jsonl").read_text().splitlines()) == 2
    dataset = pairs.load_pairs(path)
    assert dataset.column_names[:3] == ["prompt", "chosen", "rejected"] and len(dataset) == 1
    chat_path, _ = pairs.pair_file_from_groups([task], [samples], tmp_path / "c.jsonl", style="chat")
    chat = json.loads(chat_path.read_text())
    assert chat["prompt"][-1]["role"] == "user" and chat["chosen"] == [
        {"role": "assistant", "content": "completion 0"}
    ]
    with pytest.raises(PairingError, match="lacks columns"):
        (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\n')
        pairs.load_pairs(tmp_path / "bad.jsonl")
