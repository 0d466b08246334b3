"""The reward server on loopback with real tools: round trip vs the offline CLI, bad requests, cache
persistence, a kill -9 mid-batch, overload (429 + retries), deadlines, disconnects and a load test."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from rewards.background import start_background
from rewards.client import RewardClient
from rewards.config import load_reward_config
from rewards.score import score
from rewards.tasks import load_task_index
from rewards.types import Status, Task

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "reward" / "default.yaml"
TINY = REPO / "tests" / "data" / "grpo_tasks.jsonl"
COUNTER = (REPO / "tests" / "data" / "sim" / "counter10.v").read_text()
COUNTER_TASK = {
    "id": "seq/counter10",
    "prompt": "A decade counter with enable and synchronous reset.",
    "top_module": "TopModule",
    "reference": COUNTER,
    "meta": {"clock": "clk", "reset": "reset"},
}


def golden(task_id: str) -> str:
    return TASKS[task_id].reference


@pytest.fixture(scope="module")
def task_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tasks") / "tasks.jsonl"
    path.write_text(TINY.read_text().rstrip("\n") + "\n" + json.dumps(COUNTER_TASK) + "\n")
    return path


TASKS: dict[str, Task] = {**load_task_index([TINY]), "seq/counter10": Task.from_dict(COUNTER_TASK)}


@pytest.fixture(scope="module")
def server(task_file, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "rewards.sqlite"
    handle = start_background(config=CONFIG, task_files=[task_file], workers=2, cache=cache)
    yield handle
    handle.stop()


def stable(result: dict) -> dict:
    """A result without what legitimately differs between two runs: the cache flag, wall and CPU times."""
    out = {k: v for k, v in result.items() if k != "cached"}
    out["metrics"] = {
        k: v for k, v in result.get("metrics", {}).items() if not k.endswith(("wall_s", "cpu_s"))
    }
    return out


def post(url: str, **kwargs) -> httpx.Response:
    return httpx.post(url + "/score", timeout=120, **kwargs)


MIXED = [
    ("tiny/and2", f"```verilog\n{golden('tiny/and2')}\n```", Status.OK),
    ("tiny/and2", golden("tiny/and2"), Status.OK),
    ("tiny/or2", golden("tiny/or2").replace("|", "&"), Status.SIM_MISMATCH),
    ("tiny/xor2", golden("tiny/xor2").replace(";", "", 1), Status.SYNTAX_ERROR),
    ("tiny/not1", golden("tiny/not1").replace("endmodule", "initial $finish;\nendmodule"), Status.FORBIDDEN),
    ("tiny/add4", golden("tiny/add4").replace("output [3:0] y", "output [4:0] y"), Status.INTERFACE_MISMATCH),
    ("tiny/mux2", "", Status.FORMAT_ERROR),
    ("tiny/mux2", "I would use a multiplexer.", Status.FORMAT_ERROR),
    ("seq/counter10", f"<think>count to 9</think>\n```verilog\n{COUNTER}```", Status.OK),
    ("seq/counter10", COUNTER.replace("4'd9", "4'd10"), Status.SIM_MISMATCH),
    ("tiny/nope", golden("tiny/and2"), Status.INVALID_INPUT),
]


def test_round_trip_equals_offline_cli(server, task_file, tmp_path):
    items = [{"task_id": t, "completion": c} for t, c, _ in MIXED] + [{"task_id": "tiny/and2"}]
    response = post(server.url, json={"items": items})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [s.value for _, _, s in MIXED] + ["INVALID_INPUT"]
    assert [r["task_id"] for r in results] == [t for t, _, _ in MIXED] + ["tiny/and2"]
    assert results[0]["reward"] > 1.3 and results[0]["passed"]
    assert results[-1]["reward"] is None and "'completion' is missing" in results[-1]["log"]

    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps(item) + "\n" for item in items))
    out = tmp_path / "offline.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewards",
            "score",
            "--tasks",
            str(task_file),
            "--completions",
            str(completions),
            "--out",
            str(out),
            "--config",
            str(CONFIG),
            "--jobs",
            "2",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    offline = [json.loads(line) for line in out.read_text().splitlines()]
    for served, expected in zip(results, offline, strict=True):
        if expected["status"] == "INVALID_INPUT":  # the CLI names the line, the server the item
            assert (served["status"], served["reward"], served["task_id"]) == (
                "INVALID_INPUT",
                None,
                expected["task_id"],
            )
        else:
            assert stable(served) == stable(expected)


def test_inline_task_equals_direct_score(server):
    task = dict(COUNTER_TASK, id="inline/counter10")
    mutant = COUNTER.replace("q + 4'd1", "q + 4'd2")
    response = post(server.url, json={"items": [{"task": task, "completion": mutant}]})
    served = response.json()["results"][0]
    direct = score(Task.from_dict(task), mutant, load_reward_config(CONFIG))
    assert served["status"] == "SIM_MISMATCH"
    assert stable(served) == stable(direct.to_dict())


def test_malformed_bodies_are_4xx_with_reasons(server):
    cases = [
        (b'{"items": [', 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not UTF-8"),
        (b"[]", 422, "must be an object"),
        (b'{"items": 5}', 422, "must be an object"),
        (b'{"items": [], "extra": 1}', 422, "unknown fields"),
    ]
    for body, code, reason in cases:
        response = post(server.url, content=body, headers={"content-type": "application/json"})
        assert response.status_code == code, (body, response.text)
        assert reason in response.json()["detail"]
    too_many = {"items": [{"task_id": "tiny/and2", "completion": ""}] * 10_000}
    response = post(server.url, json=too_many)
    assert response.status_code == 413 and "10000 items" in response.json()["detail"]
    huge = b'{"items": [{"task_id": "tiny/and2", "completion": "' + b"x" * (50 << 20) + b'"}]}'
    response = post(server.url, content=huge, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]
    assert httpx.get(server.url + "/score").status_code == 405
    assert httpx.get(server.url + "/healthz").status_code == 200  # still serving


def test_bad_items_are_per_item_invalid_input(server):
    items = [
        {"task_id": "no/such", "completion": "x"},
        {"completion": "module TopModule; endmodule"},
        {"task_id": "tiny/and2", "completion": 42},
        {"task": {"id": "x", "prompt": "p", "top_module": "TopModule"}, "completion": "x"},
        {"task": dict(COUNTER_TASK), "task_id": "other", "completion": COUNTER},
        "just a string",
        {"task_id": "tiny/and2", "completion": ""},
    ]
    results = post(server.url, json={"items": items}).json()["results"]
    assert [r["status"] for r in results] == ["INVALID_INPUT"] * 6 + ["FORMAT_ERROR"]
    assert all(r["reward"] is None for r in results[:6])
    logs = [r["log"] for r in results]
    assert "unknown task id 'no/such'" in logs[0]
    assert "missing 'task'" in logs[1]
    assert "'completion' is a int" in logs[2]
    assert "bad task record" in logs[3] and "'reference'" in logs[3]
    assert "differs from task.id" in logs[4]
    assert "expected an object" in logs[5]


def test_healthz_metrics_docs(server):
    health = httpx.get(server.url + "/healthz").json()
    assert health["status"] == "ok" and health["tasks"] == 7
    assert set(health["tools"]) == {"verilator", "iverilog", "vvp", "yosys", "sta"}
    assert "missing" not in health["tools"].values() and health["liberty"].endswith(".lib")
    post(server.url, json={"items": [{"task_id": "tiny/mux2", "completion": "no code"}]})
    post(server.url, json={"items": [{"task_id": "tiny/mux2", "completion": golden("tiny/mux2")}]})
    text = httpx.get(server.url + "/metrics").text
    assert 'rtlforge_formal_total{verdict="proved"}' in text
    for series in (
        'rtlforge_requests_total{code="200"}',
        'rtlforge_items_total{status="FORMAT_ERROR"}',
        "rtlforge_stage_seconds_bucket",
        "rtlforge_cache_hit_ratio",
        "rtlforge_queue_depth",
        "rtlforge_item_seconds_count",
    ):
        assert series in text, series
    assert httpx.get(server.url + "/docs").status_code == 200
    assert "/score" in httpx.get(server.url + "/openapi.json").json()["paths"]


def test_cache_hits_and_survives_restart(task_file, tmp_path):
    cache = tmp_path / "cache.sqlite"
    items = [
        {"task_id": "tiny/xor2", "completion": golden("tiny/xor2")},
        {"task_id": "tiny/xor2", "completion": golden("tiny/or2")},
    ]
    with start_background(config=CONFIG, task_files=[task_file], workers=2, cache=cache) as first:
        fresh = post(first.url, json={"items": items}).json()["results"]
        again = post(first.url, json={"items": items}).json()["results"]
    assert [r["cached"] for r in fresh] == [False, False] and [r["cached"] for r in again] == [True, True]
    with start_background(config=CONFIG, task_files=[task_file], workers=2, cache=cache) as second:
        restarted = post(second.url, json={"items": items}).json()["results"]
        assert "rtlforge_cache_hits_total 2" in httpx.get(second.url + "/metrics").text
    assert [r["cached"] for r in restarted] == [True, True]
    assert [stable(r) for r in restarted] == [stable(r) for r in fresh]
    assert [r["status"] for r in fresh] == ["OK", "SIM_MISMATCH"]


def _metric(url: str, name: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_kill9_mid_batch_then_retry_completes_exactly_once(task_file, tmp_path):
    cache = tmp_path / "cache.sqlite"
    cases = [
        (t, golden(t), Status.OK) for t in ("tiny/and2", "tiny/or2", "tiny/xor2", "tiny/not1", "tiny/add4")
    ]
    cases += [
        ("tiny/mux2", golden("tiny/and2").replace("input b", "input b, input sel"), Status.SIM_MISMATCH),
        ("seq/counter10", COUNTER, Status.OK),
        ("tiny/and2", "module TopModule(); endmodule", Status.INTERFACE_MISMATCH),
    ]
    items = [{"task_id": t, "completion": c} for t, c, _ in cases]
    # one candidate per tool process, so results reach the cache one at a time before the kill
    first = start_background(config=CONFIG, task_files=[task_file], workers=1, cache=cache, batch_size=1)
    port = int(first.url.rsplit(":", 1)[1])
    client = RewardClient([first.url], retries=12, backoff_s=0.25, max_backoff_s=2.0, timeout_s=120)
    outcome: dict = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("results", client.score(items)))
    worker.start()
    deadline = time.monotonic() + 90
    while _metric(first.url, "rtlforge_cache_entries") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    first.kill()
    second = start_background(port=port, config=CONFIG, task_files=[task_file], workers=2, cache=cache)
    try:
        worker.join(timeout=180)
        assert not worker.is_alive()
        assert _metric(second.url, "rtlforge_cache_hits_total") >= 2  # finished work survived the kill
    finally:
        second.stop()
        client.close()
    results = outcome["results"]
    assert len(results) == len(items) and client.retried >= 1
    assert [r.task_id for r in results] == [t for t, _, _ in cases]
    assert [r.status for r in results] == [s for _, _, s in cases]
    assert sum(r.cached for r in results) >= 2


def test_overload_answers_429_then_everyone_is_served(task_file):
    with start_background(config=CONFIG, task_files=[task_file], workers=1, cache=None, queue_items=2) as srv:
        batches = [
            [
                {
                    "task_id": "tiny/and2",
                    "completion": f"module TopModule(input a, input b, output y);\n"
                    f"// variant {n}.{k}\n  assign y = a & ;\nendmodule",
                }
                for k in range(3)
            ]
            for n in range(4)
        ]
        clients = [RewardClient([srv.url], retries=30, backoff_s=0.2, max_backoff_s=1.0) for _ in batches]
        answers: list = [None] * len(batches)

        def run(i: int) -> None:
            answers[i] = clients[i].score(batches[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        rejected = _metric(srv.url, 'rtlforge_requests_total{code="429"}')
    assert rejected >= 1 and sum(c.retried for c in clients) >= 1
    for batch, results in zip(batches, answers, strict=True):
        assert results is not None and len(results) == len(batch)
        assert all(r.status is Status.SYNTAX_ERROR for r in results)
    for client in clients:
        client.close()


def test_deadline_is_infra_error_and_late_results_are_cached(task_file):
    items = [
        {"task_id": "tiny/or2", "completion": golden("tiny/or2")},
        {"task_id": "tiny/not1", "completion": golden("tiny/not1")},
    ]
    with start_background(config=CONFIG, task_files=[task_file], workers=1, item_timeout_s=0.1) as srv:
        late = post(srv.url, json={"items": items}).json()["results"]
        assert [r["status"] for r in late] == ["INFRA_ERROR"] * 2
        assert all(r["reward"] is None and "deadline exceeded" in r["log"] for r in late)
        deadline = time.monotonic() + 60
        while _metric(srv.url, "rtlforge_cache_entries") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        done = post(srv.url, json={"items": items}).json()["results"]
    assert [(r["status"], r["cached"]) for r in done] == [("OK", True), ("OK", True)]


def test_disconnect_drops_queued_items(task_file):
    items = [
        {"task_id": t, "completion": golden(t)}
        for t in ("tiny/and2", "tiny/or2", "tiny/xor2", "tiny/not1", "tiny/add4", "tiny/mux2")
    ]
    # one candidate per work unit, so five of the six are still queued at the disconnect
    with start_background(config=CONFIG, task_files=[task_file], workers=1, batch_size=1) as srv:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(srv.url + "/score", json={"items": items}, timeout=httpx.Timeout(1.0, connect=5.0))
        deadline = time.monotonic() + 20
        while _metric(srv.url, "rtlforge_cancelled_items_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _metric(srv.url, "rtlforge_cancelled_items_total") >= 1
        time.sleep(2.0)  # the item running at the disconnect finishes; the dropped ones never start
        assert (
            _metric(srv.url, "rtlforge_queue_depth") == 0 and _metric(srv.url, "rtlforge_running_items") == 0
        )
        assert _metric(srv.url, "rtlforge_cache_entries") < len(items)
        assert _metric(srv.url, 'rtlforge_requests_total{code="499"}') == 1


def test_load_thousands_of_items(server):
    tasks = sorted(t for t in TASKS if t.startswith("tiny/"))
    primer = [{"task_id": t, "completion": golden(t)} for t in tasks]
    post(server.url, json={"items": primer})
    items, expected = [], []
    for n in range(3000):
        task_id = tasks[n % len(tasks)]
        if n % 3 == 0:
            items.append({"task_id": task_id, "completion": f"```verilog\n{golden(task_id)}\n```"})
            expected.append((task_id, Status.OK))
        else:
            items.append({"task_id": task_id, "completion": f"answer {n}: think about it"})
            expected.append((task_id, Status.FORMAT_ERROR))
    clients = [RewardClient([server.url], max_items=500) for _ in range(3)]
    chunks = [items[i::3] for i in range(3)]
    answers: list = [None] * 3

    def run(i: int) -> None:
        answers[i] = clients[i].score(chunks[i])

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    elapsed = time.perf_counter() - start
    results = [None] * len(items)
    for i in range(3):
        results[i::3] = answers[i]
    assert [(r.task_id, r.status) for r in results] == expected
    assert all(r.cached for r, (_, s) in zip(results, expected, strict=True) if s is Status.OK)
    print(f"load: {len(items)} items in {elapsed:.2f} s ({len(items) / elapsed:.0f} items/s)")
    for client in clients:
        client.close()


def test_cli_reports_bad_config(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rewards.server", "--port", "0", "--config", str(tmp_path / "missing.yaml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_concurrent_requests_share_an_item_in_flight(server):
    item = {"task_id": "tiny/xor2", "completion": golden("tiny/xor2").replace("^", "^ ~")}
    before = _metric(server.url, 'rtlforge_item_seconds_count{status="SIM_MISMATCH"}')
    answers: list = []
    threads = [
        threading.Thread(target=lambda: answers.append(post(server.url, json={"items": [item]}).json()))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [a["results"][0]["status"] for a in answers]
    assert statuses == ["SIM_MISMATCH"] * 3
    assert _metric(server.url, 'rtlforge_item_seconds_count{status="SIM_MISMATCH"}') - before == 1
