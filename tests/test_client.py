"""Reward client against real servers on loopback: in-process parity, retries and failover, spreading,
refusals, dedup, and the TRL reward function (called the way GRPOTrainer calls it)."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import httpx
import pytest

from rewards.background import start_background
from rewards.client import RewardClient, RewardClientError, RewardInfraError, completion_text, make_trl_reward
from rewards.config import RewardConfig
from rewards.tasks import load_tasks
from rewards.types import Status

TASKS = load_tasks(Path(__file__).parent / "data" / "grpo_tasks.jsonl")
BY_ID = {t.id: t for t in TASKS}


def fenced(code: str) -> str:
    return f"<think>plan</think>\n```verilog\n{code}\n```"


ITEMS = [
    {"task_id": "tiny/and2", "completion": fenced(BY_ID["tiny/and2"].reference)},
    {"task_id": "tiny/or2", "completion": BY_ID["tiny/and2"].reference},
    {"task_id": "tiny/and2", "completion": fenced(BY_ID["tiny/and2"].reference)},
    {"task_id": "tiny/xor2", "completion": "no code at all"},
    {"task": BY_ID["tiny/not1"], "completion": BY_ID["tiny/not1"].reference.replace("~a", "a")},
    {"task_id": "tiny/unknown", "completion": "x"},
]
EXPECTED = [
    Status.OK,
    Status.SIM_MISMATCH,
    Status.OK,
    Status.FORMAT_ERROR,
    Status.SIM_MISMATCH,
    Status.INVALID_INPUT,
]


@pytest.fixture(scope="module")
def server():
    handle = start_background("127.0.0.1", 0, tasks=TASKS, workers=2)
    yield handle
    handle.stop()


def dead_url() -> str:
    with socket.socket() as sock:  # a port nothing listens on once this closes
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def comparable(result) -> dict:
    out = result.to_dict()
    out.pop("cached")
    out["metrics"] = {k: v for k, v in out["metrics"].items() if not k.endswith(("wall_s", "cpu_s"))}
    return out


def items_scored(url: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("rtlforge_items_total{"))


def test_in_process_mode_gives_the_servers_results(server):
    with RewardClient([server.url], tasks=BY_ID) as remote, RewardClient(None, tasks=BY_ID) as local:
        served = remote.score(ITEMS)
        computed = local.score(ITEMS)
    assert [r.status for r in served] == EXPECTED
    assert [comparable(r) for r in served] == [comparable(r) for r in computed]
    assert [r.task_id for r in served] == [
        "tiny/and2",
        "tiny/or2",
        "tiny/and2",
        "tiny/xor2",
        "tiny/not1",
        "tiny/unknown",
    ]


def test_unknown_ids_are_resent_with_full_records(tmp_path):
    with start_background(workers=1) as bare, RewardClient([bare.url], tasks=BY_ID) as client:
        results = client.score(ITEMS[:2])
        assert [r.status for r in results] == [Status.OK, Status.SIM_MISMATCH]
        first_requests = client.requests
        client.score(ITEMS[:2])
        assert first_requests == 2 and client.requests == 3  # the second call sends full records at once


def test_duplicates_are_sent_once(server):
    before = items_scored(server.url)
    item = {"task_id": "tiny/mux2", "completion": "module nothing_here; endmodule"}
    with RewardClient([server.url]) as client:
        results = client.score([item] * 10)
    assert [r.status for r in results] == [Status.FORMAT_ERROR] * 10
    assert len({id(r) for r in results}) == 10
    assert items_scored(server.url) - before == 1


def test_unreachable_servers_give_infra_errors_not_zeros():
    with RewardClient([dead_url()], retries=2, backoff_s=0.01) as client:
        results = client.score(ITEMS[:3])
    assert [r.status for r in results] == [Status.INFRA_ERROR] * 3
    assert all(r.reward is None and "unreachable after 3 attempts" in r.log for r in results)
    assert [r.task_id for r in results] == ["tiny/and2", "tiny/or2", "tiny/and2"]
    assert client.requests == 3


def test_failover_to_the_next_server(server):
    with RewardClient([dead_url(), server.url], tasks=BY_ID, retries=3, backoff_s=0.01) as client:
        results = client.score(ITEMS)
    assert [r.status for r in results] == EXPECTED
    assert client.retried >= 1


def test_batches_are_spread_over_servers_by_task(server):
    with start_background(tasks=TASKS, workers=1) as other:
        before = [items_scored(server.url), items_scored(other.url)]
        items = [
            {"task_id": t.id, "completion": f"{t.id} has no code, try {k}"} for t in TASKS for k in range(3)
        ]
        with RewardClient([server.url, other.url]) as client:
            results = client.score(items)
        after = [items_scored(server.url), items_scored(other.url)]
    assert [r.task_id for r in results] == [item["task_id"] for item in items]
    assert all(r.status is Status.FORMAT_ERROR for r in results)
    shares = [a - b for a, b in zip(after, before, strict=True)]
    assert shares == [9, 9]


def test_refused_requests_raise(server):
    with start_background(tasks=TASKS, workers=1, max_items=5) as small:
        with (
            RewardClient([small.url], max_items=100) as client,
            pytest.raises(RewardClientError, match="HTTP 413"),
        ):
            client.score([{"task_id": "tiny/and2", "completion": f"text {n}"} for n in range(8)])
        with RewardClient([small.url], max_items=5) as client:  # split to fit
            assert (
                len(client.score([{"task_id": "tiny/and2", "completion": f"text {n}"} for n in range(8)]))
                == 8
            )


def test_async_callers(server):
    async def main():
        with RewardClient([server.url]) as client:
            return await asyncio.gather(client.ascore(ITEMS[:2]), client.ascore(ITEMS[3:4]))

    first, second = asyncio.run(main())
    assert [r.status for r in first] == EXPECTED[:2] and second[0].status is Status.FORMAT_ERROR


def test_config_mismatch_is_reported(server, caplog):
    with caplog.at_level(logging.WARNING, logger="rewards.client"):
        with RewardClient([server.url], config=RewardConfig(w_ppa=0.1)) as client:
            client.score(ITEMS[3:4])
    assert "another reward config" in caplog.text


def test_completion_text_of_chat_messages():
    assert completion_text("plain") == "plain"
    assert (
        completion_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}])
        == "ab"
    )
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]) == "x"


def test_trl_reward_function(server):
    logged: dict[str, float] = {}
    extra: dict[str, list] = {}
    chosen = [0, 1, 3, 2]
    with RewardClient([server.url], tasks=BY_ID) as client:
        reward = make_trl_reward(client, fail_on_infra_rate=0.5, min_items=1)
        values = reward(
            prompts=[[{"role": "user", "content": "spec"}]] * 4,
            completions=[[{"role": "assistant", "content": ITEMS[i]["completion"]}] for i in chosen],
            completion_ids=[[1, 2, 3]] * 4,
            task_id=[ITEMS[i]["task_id"] for i in chosen],
            trainer_state=None,
            log_metric=logged.__setitem__,
            log_extra=extra.__setitem__,
        )
    assert reward.__name__ == "verilog"
    assert values[0] > 1.3 and values[0] == values[3] and 0 < values[1] < 0.8 and values[2] == 0.0
    assert logged["verilog/level/format"] == 0.75 and logged["verilog/status/OK"] == 0.5
    assert logged["verilog/pass_rate"] == 0.5 and "verilog/status/INFRA_ERROR" in logged
    assert extra["verilog_status"] == ["OK", "SIM_MISMATCH", "FORMAT_ERROR", "OK"]
    assert (reward.infra_total, reward.scored_total) == (0, 4)


def test_trl_reward_returns_none_for_infra_and_stops_past_the_rate():
    with RewardClient([dead_url()], retries=0) as client:
        reward = make_trl_reward(client, fail_on_infra_rate=0.2, min_items=4)
        kwargs = {"prompts": ["p", "p"], "completions": ["a", "b"], "task_id": ["tiny/and2", "tiny/or2"]}
        assert reward(**kwargs) == [None, None]  # below min_items: TRL masks them
        with pytest.raises(RewardInfraError, match="INFRA_ERROR rate 100.0%"):
            reward(**kwargs)
    assert (reward.infra_total, reward.scored_total) == (4, 4)


def test_trl_reward_needs_known_task_ids(server):
    with RewardClient([server.url]) as client:
        reward = make_trl_reward(client)
        with pytest.raises(ValueError, match="'task_id' column"):
            reward(prompts=["p"], completions=["c"])
        with pytest.raises(ValueError, match="unknown task id"):
            reward(prompts=["p"], completions=["c"], task_id=["nope/none"])


def test_trl_reward_logs_the_formal_mix_per_step():
    from rewards.client import TRLReward
    from rewards.types import RewardResult

    reward = TRLReward(RewardClient([], tasks={}))
    results = [
        RewardResult("a", Status.OK, True, 1.5, metrics={"formal": "proved"}),
        RewardResult("a", Status.OK, True, 1.5, metrics={"formal": "bounded:20"}),
        RewardResult("a", Status.SIM_MISMATCH, False, 0.6, metrics={"formal": "counterexample"}),
        RewardResult("a", Status.SYNTAX_ERROR, False, 0.1),
    ]
    logged = {}
    reward._log(results, lambda key, value: logged.__setitem__(key, value), None)
    assert logged["verilog/formal/proved"] == logged["verilog/formal/bounded"] == 0.25
    assert logged["verilog/formal/counterexample"] == 0.25 and logged["verilog/formal/unknown"] == 0.0
