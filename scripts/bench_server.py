"""Reward-server throughput on a GRPO-shaped workload, against the in-process scoring path.

    python scripts/bench_server.py [--prompts 64] [--generations 8] [--workers N] [--repeats 20] [--rounds 1]

Workload: ``--prompts`` prompts drawn from a pool of generated tasks (adders, gates, muxes, comparators,
counters, shift registers of several widths), each with ``--generations`` completions sampled from a
mix a small policy produces: the golden design (under different reasoning text and fences: same code),
a reformatted golden, operator/constant mutants, syntax errors, a wrong interface, prose without code,
and a forbidden ``$finish`` — so duplicates inside a group are as common as in real GRPO groups.

Prints, each on a fresh process (golden artefacts are computed cold in both):
  * in-process: ``rewards.engine.score_batch`` (the offline CLI's path) with ``--workers`` jobs;
  * server, uncached: one client call of the whole batch to a fresh server with ``--workers`` workers,
    and its ratio to the in-process path;
  * server, cached: the same batch again ``--repeats`` times (items/s, p50/p95 batch latency), four
    concurrent clients, and one 4096-item batch of cache hits.
Figures, not assertions: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.config import jobs_count  # noqa: E402
from rewards.types import Task  # noqa: E402

COMB = {
    "and": ("assign y = a & b;", "assign y = a | b;"),
    "xor": ("assign y = a ^ b;", "assign y = a ~^ b;"),
    "add": ("assign y = a + b;", "assign y = a - b;"),
    "min": ("assign y = (a < b) ? a : b;", "assign y = (a > b) ? a : b;"),
}


def _comb_task(op: str, width: int) -> tuple[Task, str]:
    body, mutant = COMB[op]
    msb = width - 1
    code = (
        f"module TopModule(input [{msb}:0] a, input [{msb}:0] b, output [{msb}:0] y);\n  {body}\nendmodule\n"
    )
    task = Task(
        id=f"gen/{op}{width}",
        prompt=f"{op} of two {width}-bit inputs",
        top_module="TopModule",
        reference=code,
    )
    return task, code.replace(body, mutant)


def _counter_task(modulus: int) -> tuple[Task, str]:
    width = max(1, (modulus - 1).bit_length())
    top = f"{width}'d{modulus - 1}"
    code = (
        f"module TopModule(input clk, input reset, input en, output reg [{width - 1}:0] q);\n"
        f"  always @(posedge clk) begin\n    if (reset) q <= 0;\n"
        f"    else if (en) q <= (q == {top}) ? 0 : q + 1'b1;\n  end\nendmodule\n"
    )
    task = Task(
        id=f"gen/count{modulus}",
        prompt=f"counter modulo {modulus} with enable",
        top_module="TopModule",
        reference=code,
        meta={"clock": "clk", "reset": "reset", "reset_active": 1},
    )
    return task, code.replace(f"q == {top}", f"q == {width}'d{modulus - 2}")


def _shift_task(width: int) -> tuple[Task, str]:
    code = (
        f"module TopModule(input clk, input reset, input d, output reg [{width - 1}:0] q);\n"
        f"  always @(posedge clk) begin\n    if (reset) q <= 0;\n"
        f"    else q <= {{q[{width - 2}:0], d}};\n  end\nendmodule\n"
    )
    task = Task(
        id=f"gen/shift{width}",
        prompt=f"{width}-bit shift register",
        top_module="TopModule",
        reference=code,
        meta={"clock": "clk", "reset": "reset", "reset_active": 1},
    )
    return task, code.replace(f"{{q[{width - 2}:0], d}}", f"{{d, q[{width - 1}:1]}}")


def task_pool() -> list[tuple[Task, str]]:
    """(task, one functional mutant) for 48 generated tasks."""
    pool = [_comb_task(op, w) for op in COMB for w in (2, 3, 4, 5, 6, 8, 12, 16)]
    pool += [_counter_task(m) for m in (3, 5, 6, 7, 9, 10, 12)] + [
        _shift_task(w) for w in (2, 3, 4, 5, 6, 8, 9)
    ]
    return pool[:48]


def completions_for(task: Task, mutant: str, rng: random.Random, n: int) -> list[str]:
    """``n`` completions in the proportions a small policy produces (many exact or same-code repeats)."""
    golden = task.reference
    kinds = [
        (0.30, lambda: f"```verilog\n{golden}```"),
        (
            0.10,
            lambda: (
                f"<think>{rng.choice(['simple', 'easy', 'use assign', 'one line'])}</think>\n"
                f"```verilog\n{golden}```"
            ),
        ),
        (0.05, lambda: golden.replace("\n  ", "\n    ")),
        (0.20, lambda: f"```verilog\n{mutant}```"),
        (0.10, lambda: golden.replace(";", "", 1)),
        (
            0.05,
            lambda: (
                golden.replace("input clk", "input clock")
                .replace("output", "output wire", 1)
                .replace("[", "[1+", 1)
            ),
        ),
        (0.12, lambda: rng.choice(["I am not sure how to do this.", "The answer is a module.", ""])),
        (0.08, lambda: golden.replace("endmodule", "  initial $finish;\nendmodule")),
    ]
    weights = [w for w, _ in kinds]
    return [rng.choices(kinds, weights)[0][1]() for _ in range(n)]


def workload(prompts: int, generations: int, seed: int) -> list[tuple[Task, str]]:
    rng = random.Random(seed)
    pool = task_pool()
    chosen = [pool[i % len(pool)] for i in rng.sample(range(max(prompts, len(pool))), prompts)]
    return [
        (task, text) for task, mutant in chosen for text in completions_for(task, mutant, rng, generations)
    ]


# ---------------------------------------------------------------------------------- measurements
def _in_process(items_json: str, workers: int, queue: multiprocessing.Queue) -> None:
    from rewards.engine import score_batch

    items = [(Task.from_dict(t), c) for t, c in json.loads(items_json)]
    start = time.perf_counter()
    results = score_batch(items, jobs=workers)
    queue.put((time.perf_counter() - start, [r.status.value for r in results]))


def measure_in_process(items: list[tuple[Task, str]], workers: int) -> tuple[float, list[str]]:
    """Seconds for score_batch in a fresh process (cold golden artefacts, like a fresh server)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    blob = json.dumps([(t.to_dict(), c) for t, c in items])
    process = ctx.Process(target=_in_process, args=(blob, workers, queue))
    process.start()
    seconds, statuses = queue.get()
    process.join()
    return seconds, statuses


def timed_batches(client, items: list[dict], repeats: int) -> list[float]:
    latencies = []
    for _ in range(repeats):
        start = time.perf_counter()
        client.score(items)
        latencies.append(time.perf_counter() - start)
    return latencies


def concurrent_rate(url: str, items: list[dict], clients: int) -> float:
    from rewards.client import RewardClient

    pool = [RewardClient([url]) for _ in range(clients)]
    for client in pool:
        client.score(items[:1])  # open connections
    threads = [threading.Thread(target=c.score, args=(items,)) for c in pool]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rate = clients * len(items) / (time.perf_counter() - start)
    for client in pool:
        client.close()
    return rate


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument(
        "--workers", type=jobs_count, default=0, help="scoring jobs/workers (0 = one per core)"
    )
    parser.add_argument("--repeats", type=int, default=20, help="cached re-sends of the batch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="alternate in-process and fresh-server runs this many times (load noise)",
    )
    args = parser.parse_args()

    from rewards.background import start_background
    from rewards.client import RewardClient
    from rewards.config import RewardConfig
    from rewards.engine import extract_and_fingerprint
    from rewards.score import default_jobs

    workers = args.workers or default_jobs()
    items = workload(args.prompts, args.generations, args.seed)
    config = RewardConfig()
    unique = len({(t.id, extract_and_fingerprint(t, c, config)[1]) for t, c in items})
    print(
        f"workload: {len(items)} items ({args.prompts} prompts x {args.generations}), {unique} distinct "
        f"(task, code) pairs -> duplicate rate {1 - unique / len(items):.0%}; workers={workers}"
    )

    by_id = [{"task_id": t.id, "completion": c} for t, c in items]
    ratios = []
    for round_no in range(1, args.rounds + 1):
        inproc_s, inproc_statuses = measure_in_process(items, workers)
        print(
            f"[round {round_no}] in-process score_batch: {inproc_s:.1f} s, {len(items) / inproc_s:.1f} items/s"
        )
        last = round_no == args.rounds
        with (
            start_background(tasks=[t for t, _ in task_pool()], workers=workers) as server,
            RewardClient([server.url]) as client,
        ):
            start = time.perf_counter()
            served = client.score(by_id)
            server_s = time.perf_counter() - start
            ratios.append(inproc_s / server_s)
            if [r.status.value for r in served] != inproc_statuses:
                print("WARNING: server and in-process statuses differ")
            print(
                f"[round {round_no}] server, uncached: {server_s:.1f} s, {len(items) / server_s:.1f} items/s "
                f"(in-process time / server time = {ratios[-1]:.2f})"
            )
            if last:
                counts: dict[str, int] = {}
                for status in inproc_statuses:
                    counts[status] = counts.get(status, 0) + 1
                print(f"statuses: {json.dumps(dict(sorted(counts.items())))}")
                print(
                    f"uncached throughput ratio (server / in-process), median of {len(ratios)} rounds: "
                    f"{statistics.median(ratios):.2f}"
                )
                report_cached(server.url, client, by_id, args.repeats)


def report_cached(url: str, client, by_id: list[dict], repeats: int) -> None:
    """Cache-hit figures: the GRPO batch through the client, concurrent clients, raw 4096-item posts."""
    import httpx

    latencies = timed_batches(client, by_id, repeats)
    print(
        f"server, cached GRPO batch via client ({len(by_id)} items): {len(by_id) / statistics.mean(latencies):.0f} "
        f"items/s; batch latency p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(latencies, 0.95) * 1000:.0f} ms"
    )
    print(f"server, cached, 4 concurrent clients: {concurrent_rate(url, by_id, 4):.0f} items/s")
    ids = sorted({item["task_id"] for item in by_id})
    distinct = [{"task_id": ids[n % len(ids)], "completion": f"answer {n}: no idea"} for n in range(4096)]
    body = json.dumps({"items": distinct}).encode()
    with httpx.Client(timeout=600) as http:
        start = time.perf_counter()
        http.post(f"{url}/score", content=body).raise_for_status()
        first = time.perf_counter() - start
        raw = []
        for _ in range(5):
            start = time.perf_counter()
            results = http.post(f"{url}/score", content=body).json()["results"]
            raw.append(time.perf_counter() - start)
        assert all(r["cached"] for r in results)
    print(
        f"server, 4096 distinct items per POST: first (scored, FORMAT_ERROR) {4096 / first:.0f} items/s; "
        f"cached {4096 / statistics.mean(raw):.0f} items/s, p50 {percentile(raw, 0.5) * 1000:.0f} ms, "
        f"p95 {percentile(raw, 0.95) * 1000:.0f} ms per batch"
    )


if __name__ == "__main__":
    main()
