"""Result cache: keys, persistence, what is never stored, and the scoring engine's use of it (real tools)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from rewards.cache import ResultCache, cache_key, normalise_layout, tools_fingerprint
from rewards.config import RewardConfig
from rewards.engine import ScoringEngine, extract_and_fingerprint
from rewards.score import score
from rewards.tasks import load_task_index
from rewards.types import RewardResult, Status, Task

TASKS = load_task_index([Path(__file__).parent / "data" / "grpo_tasks.jsonl"])
AND2 = TASKS["tiny/and2"]
GOLDEN = "module TopModule(input a, input b, output y);\n  // and gate\n  assign y = a & b;\nendmodule"
# Same text with one newline turned into a space: the assign is now inside the comment.
COMMENTED_OUT = "module TopModule(input a, input b, output y);\n  // and gate assign y = a & b;\nendmodule"
CONFIG = RewardConfig()


def _fingerprint(task: Task, completion: str, config: RewardConfig) -> str:
    return extract_and_fingerprint(task, completion, config)[1]


def _key(task: Task, completion: str, config: RewardConfig = CONFIG, tools: str = "t") -> str:
    fingerprint = _fingerprint(task, completion, config)
    return cache_key(task.content_hash(), fingerprint, config.content_hash(), tools)


def _result(status: Status = Status.OK, reward: float | None = 1.5) -> RewardResult:
    return RewardResult(
        task_id="tiny/and2",
        status=status,
        passed=status is Status.OK,
        reward=reward,
        levels={"format": 1.0, "syntax": 1.0, "function": 1.0, "ppa": 0.5},
        metrics={"area": 32.0},
    )


def test_key_ignores_text_around_the_same_code():
    fenced = f"<think>an AND gate</think>\nHere it is:\n```verilog\n{GOLDEN}\n```\nDone."
    assert _key(AND2, fenced) == _key(AND2, GOLDEN)


def test_key_keeps_newlines_that_change_the_design():
    assert _key(AND2, GOLDEN) != _key(AND2, COMMENTED_OUT)


def test_key_ignores_indentation_and_trailing_blanks_only():
    reindented = GOLDEN.replace("\n  ", "\n\t\t") + "   "
    assert _key(AND2, reindented) == _key(AND2, GOLDEN)
    assert _key(AND2, GOLDEN.replace("a & b", "a&b")) != _key(AND2, GOLDEN)  # inside a line: kept
    assert _key(AND2, GOLDEN.replace("\n  assign", "\n\u00a0assign")) != _key(
        AND2, GOLDEN
    )  # NBSP is no blank


def test_layout_keeps_continued_lines_verbatim():
    code = "`define PAIR(a) \\\n   {a,  a}\n  assign y = 1;   \nx"
    assert normalise_layout(code) == "`define PAIR(a) \\\n   {a,  a}\nassign y = 1;\nx"
    assert normalise_layout("a\n\n  b") == "a\n\nb"  # blank lines stay: line numbers hold


def test_key_changes_with_task_config_and_tools():
    base = _key(AND2, GOLDEN)
    other_task = dataclasses.replace(AND2, reference=AND2.reference + "\n")
    assert _key(other_task, GOLDEN) != base
    assert _key(AND2, GOLDEN, RewardConfig(w_ppa=0.25)) != base
    assert _key(AND2, GOLDEN, tools=tools_fingerprint({"yosys": "0.24"}, None)) != base


def test_key_separates_completions_rejected_before_extraction():
    config = RewardConfig(max_completion_chars=len(GOLDEN) + 100)
    long_one = GOLDEN + "\n" + "x" * 200
    assert _fingerprint(AND2, long_one, config) == f"too-long:{len(long_one)}"
    assert _key(AND2, long_one, config) != _key(AND2, GOLDEN, config)
    assert _fingerprint(AND2, "  \n", config) == "empty"
    assert _fingerprint(AND2, "no code", config) != _fingerprint(AND2, "no code here", config)


def test_key_follows_the_scorers_extraction_with_a_header():
    completion = "```verilog\n  assign y = a & b;\nendmodule\n```"  # a body for a code-completion prompt
    with_header = dataclasses.replace(AND2, interface="module TopModule(input a, input b, output y);")
    assert _fingerprint(AND2, completion, CONFIG).startswith("raw:")
    assert _fingerprint(with_header, completion, CONFIG) == "code:" + normalise_layout(
        "module TopModule(input a, input b, output y);\nassign y = a & b;\nendmodule\n"
    )


def test_round_trip_and_persistence(tmp_path):
    path = tmp_path / "c.sqlite"
    cache = ResultCache(path)
    assert cache.put("k1", _result())
    cache.close()
    reopened = ResultCache(path)
    found = reopened.get_many(["k1", "k2"])
    assert list(found) == ["k1"]
    assert found["k1"].cached is True
    expected = _result().to_dict()
    expected["cached"] = True
    assert found["k1"].to_dict() == expected
    assert reopened.hits == 1 and reopened.misses == 1
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_infra_and_invalid_input_are_never_stored(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    assert not cache.put("infra", RewardResult.infra_error("tiny/and2", "sandbox crashed"))
    assert not cache.put("invalid", RewardResult("tiny/and2", Status.INVALID_INPUT, reward=None))
    assert cache.put("mismatch", _result(Status.SIM_MISMATCH, 0.3))
    assert set(cache.get_many(["infra", "invalid", "mismatch"])) == {"mismatch"}
    assert len(cache) == 1


def test_cache_is_bounded_and_evicts_the_oldest_first(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite", max_entries=5, evict_every=1)
    for i in range(12):
        assert cache.put(f"k{i}", _result())
    assert len(cache) == 5 and cache.evicted == 7
    kept = cache.get_many([f"k{i}" for i in range(12)])
    assert sorted(kept) == sorted(f"k{i}" for i in range(7, 12))
    unbounded = ResultCache(tmp_path / "u.sqlite", max_entries=0, evict_every=1)
    for i in range(12):
        unbounded.put(f"k{i}", _result())
    assert len(unbounded) == 12 and unbounded.evicted == 0
    with pytest.raises(ValueError, match="max_entries"):
        ResultCache(None, max_entries=-1)


def test_concurrent_writers(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")

    def write(worker: int) -> None:
        for n in range(50):
            cache.put(f"{worker}-{n}", _result())

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 400
    assert len(cache.get_many(f"{w}-{n}" for w in range(8) for n in range(50))) == 400


def test_unopenable_cache_says_what_to_do(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(OSError, match="cannot open the result cache"):
        ResultCache(tmp_path / "dir.sqlite")


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engine") / "cache.sqlite"


def test_engine_scores_duplicates_once_and_reuses_the_cache(engine_cache):
    items = [
        {"task_id": "tiny/and2", "completion": f"```verilog\n{GOLDEN}\n```"},
        {"task_id": "tiny/and2", "completion": GOLDEN},
        {"task_id": "tiny/and2", "completion": COMMENTED_OUT},
        {"task_id": "tiny/and2", "completion": f"<think>x</think>{GOLDEN}"},
    ]
    engine = ScoringEngine(CONFIG, TASKS, workers=2, cache=ResultCache(engine_cache))
    first = engine.score_items(items)
    assert [r.status for r in first] == [Status.OK, Status.OK, Status.SIM_MISMATCH, Status.OK]
    assert engine.metrics.item.count(status="OK") == 1  # three items, one code: scored once
    assert engine.metrics.item.count(status="SIM_MISMATCH") == 1
    assert not any(r.cached for r in first)
    direct = score(AND2, COMMENTED_OUT, CONFIG)
    assert (first[2].status, first[2].reward) == (direct.status, direct.reward)
    engine.close()

    again = ScoringEngine(CONFIG, TASKS, workers=2, cache=ResultCache(engine_cache))
    second = again.score_items(items)
    assert all(r.cached for r in second)
    assert engine_cache.exists() and again.metrics.item.count(status="OK") == 0
    assert [r.reward for r in second] == [r.reward for r in first]
    again.close()


def test_engine_does_not_cache_infra_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("VERILATOR", str(tmp_path / "no-such-verilator"))
    engine = ScoringEngine(CONFIG, TASKS, workers=1, cache=ResultCache(tmp_path / "c.sqlite"))
    result = engine.score_items([{"task_id": "tiny/and2", "completion": GOLDEN}])[0]
    assert result.status is Status.INFRA_ERROR and result.reward is None
    assert len(engine.cache) == 0
    engine.close()


def test_content_hashes_are_remembered_and_follow_every_field():
    changed = dataclasses.replace
    task = Task(
        id="t", prompt="p", top_module="top", reference="module top; endmodule", meta={"clock": "clk"}
    )
    first = task.content_hash()
    assert task.content_hash() == first == Task.from_dict(task.to_dict()).content_hash()
    assert "_content_hash" not in task.to_dict()
    assert changed(task, reference=task.reference + "\n").content_hash() != first
    assert changed(task, meta={"clock": None}).content_hash() != first
    config = RewardConfig()
    assert config.content_hash() == RewardConfig().content_hash() == config.content_hash()
    assert "_content_hash" not in config.to_dict()
    assert changed(config, comb_vectors=config.comb_vectors + 1).content_hash() != config.content_hash()
