"""Throughput of the reward core on a fixed mixed corpus, against the raw-tool floor.

    python scripts/bench_rewards.py [--repeat 2] [--jobs 2] [--ppa] [--distinct 96]

The corpus: goldens, mutants (operator flips, constant changes), syntax errors and attacks, on small
combinational and sequential tasks (and a few benchmark test-bench tasks when ../shared/benchmarks is
present). Prints completions/second, the time split per level, and the floor: the very same tool
invocations (every sandbox job recorded during the run) replayed bare with ``subprocess.run`` — no
sandbox, no limits, no Python parsing — so ``overhead = ours / floor`` is visible.
Then, on ``--distinct`` small distinct designs of the embedded corpus (a golden, a mutant and a
syntax error each): the engine one candidate per tool process (``batch_size=1``) and batched
(many candidates per Verilator and per Icarus process, :mod:`rewards.batch`), both with ``--jobs``
workers, against the bare per-design floor (the one-at-a-time run's tool calls replayed bare, spread
over the same number of cores); the batched run's own tool calls replayed bare (the tools' work);
one batched pass with the formal level at its default (proof engines run one candidate each); and
cache hits.
Figures, not assertions: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards import engine, formal, sandbox, score  # noqa: E402
from rewards.config import jobs_count, load_reward_config  # noqa: E402
from rewards.types import Task  # noqa: E402

ADDER = """module top_module(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);
  assign {cout, sum} = a + b + cin;
endmodule
"""
COUNTER = """module top_module(input clk, input reset, input en, output reg [3:0] q);
  always @(posedge clk) begin
    if (reset) q <= 4'd0;
    else if (en) q <= (q == 4'd9) ? 4'd0 : q + 4'd1;
  end
endmodule
"""
DETECT = """module top_module(input clk, input reset, input x, output z);
  reg [1:0] s;
  always @(posedge clk) begin
    if (reset) s <= 2'd0;
    else case (s)
      2'd0: s <= x ? 2'd1 : 2'd0;
      2'd1: s <= x ? 2'd1 : 2'd2;
      2'd2: s <= x ? 2'd3 : 2'd0;
      default: s <= x ? 2'd1 : 2'd2;
    endcase
  end
  assign z = (s == 2'd3);
endmodule
"""
MUX = """module top_module(input [3:0] d0, input [3:0] d1, input [3:0] d2, input [3:0] d3, input [1:0] sel,
                  output reg [3:0] y);
  always @(*) case (sel) 2'd0: y = d0; 2'd1: y = d1; 2'd2: y = d2; default: y = d3; endcase
endmodule
"""

ATTACKS = [
    "module top_module(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);\n"
    '  initial begin $display("Mismatches: 0 in 100 samples"); $finish; end\nendmodule\n',
    "module top_module(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);\n"
    '  integer f; initial f = $fopen("trace.txt", "w");\nendmodule\n',
    "`define S(x) $sys``x\nmodule top_module(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, "
    'output cout);\n  initial `S(tem)("touch /tmp/pwned");\nendmodule\n',
]


def _variants(reference: str, mutations: list[tuple[str, str]]) -> list[str]:
    out = [reference]
    for old, new in mutations:
        if old in reference:
            out.append(reference.replace(old, new, 1))
    out.append(reference.replace("endmodule", "wire oops = ;\nendmodule"))  # syntax error
    return out


def corpus() -> list[tuple[Task, str]]:
    """The fixed mixed corpus: (task, completion) pairs."""
    items: list[tuple[Task, str]] = []
    specs = [
        ("bench/adder8", ADDER, None, [("a + b + cin", "a + b"), ("a + b", "a - b")]),
        (
            "bench/counter",
            COUNTER,
            {"clock": "clk", "reset": "reset", "reset_active": 1},
            [("4'd9", "4'd10"), ("if (reset) q <= 4'd0;\n    else ", "")],
        ),
        (
            "bench/detect",
            DETECT,
            {"clock": "clk", "reset": "reset", "reset_active": 1},
            [("2'd3);", "2'd2);"), ("x ? 2'd3 : 2'd0", "x ? 2'd3 : 2'd1")],
        ),
        ("bench/mux", MUX, None, [("2'd1: y = d1", "2'd1: y = d2")]),
    ]
    for task_id, reference, meta, mutations in specs:
        task = Task(
            id=task_id, prompt="see reference", top_module="top_module", reference=reference, meta=meta or {}
        )
        for code in _variants(reference, mutations):
            items.append((task, f"```verilog\n{code}```"))
    adder = items[0][0]
    items += [(adder, attack) for attack in ATTACKS]
    items += _benchmark_items()
    return items


def _benchmark_items() -> list[tuple[Task, str]]:
    from evals.loaders import load_suite

    root = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "verilog-eval-v2"
    if not root.exists():
        return []
    items = []
    problems = ["Prob004_vector2", "Prob035_count1to10", "Prob050_kmap1"]
    for task in load_suite("verilogeval-v2-spec-to-rtl", root, problems=problems):
        items.append((task, task.reference))
        items.append((task, task.reference.replace("=", "= ~", 1)))
    return items


class Recorder:
    """Wraps rewards.sandbox.run_job to keep every job that ran (for the bare replay)."""

    def __init__(self) -> None:
        self.jobs: list[sandbox.Job] = []
        self.original = sandbox.run_job

    def __enter__(self) -> Recorder:
        def recording(job: sandbox.Job, sandbox: bool = True) -> sandbox.JobResult:  # noqa: A002
            self.jobs.append(job)
            return self.original(job, sandbox=sandbox)

        sandbox.run_job = recording
        for module in list(sys.modules.values()):
            if (
                getattr(module, "__name__", "").startswith("rewards.")
                and getattr(module, "run_job", None) is self.original
            ):
                module.run_job = recording
        return self

    def __exit__(self, *exc: object) -> None:
        for module in list(sys.modules.values()):
            if getattr(module, "__name__", "").startswith("rewards.") and hasattr(module, "run_job"):
                module.run_job = self.original


def replay_bare(jobs: list[sandbox.Job]) -> float:
    """Seconds to run the same argv on the same files with nothing around them."""
    start = time.perf_counter()
    for job in jobs:
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in job.files:
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            argv = [a.replace("/job/", f"{tmp}/") for a in job.argv]
            subprocess.run(argv, cwd=tmp, capture_output=True, stdin=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="passes over the corpus (best is reported)")
    parser.add_argument(
        "--jobs", type=jobs_count, default=2, help="concurrency for the throughput figure (0 = one per core)"
    )
    parser.add_argument("--ppa", action="store_true", help="include Yosys + OpenSTA on passing designs")
    parser.add_argument(
        "--distinct",
        type=int,
        default=96,
        help="embedded-corpus tasks for the batched figures (0: skip them)",
    )
    args = parser.parse_args()
    config = load_reward_config(None, ppa_enabled=args.ppa)
    items = corpus()
    print(
        f"corpus: {len(items)} completions on {len({t.id for t, _ in items})} tasks; ppa={'on' if args.ppa else 'off'}"
    )

    # warm the per-task caches (golden traces, host-fault golden checks) once, so both sides measure
    # per-completion work
    for task, completion in items:
        score.score(task, completion, config)

    serial, timings = [], {}
    for _ in range(args.repeat):
        stage: dict[str, float] = {}
        formal.RESULT_CACHE.clear()  # per-candidate verdicts: measure the work, not the cache
        with Recorder() as recorder:
            start = time.perf_counter()
            statuses = [
                score.score(task, completion, config, timings=stage).status.value
                for task, completion in items
            ]
            serial.append(time.perf_counter() - start)
        timings = stage
    floor = min(replay_bare(recorder.jobs) for _ in range(args.repeat))
    best = min(serial)
    counts = {s: statuses.count(s) for s in sorted(set(statuses))}
    print(f"statuses: {counts}")
    print(f"serial:   {len(items) / best:7.1f} completions/s  ({best * 1000 / len(items):.1f} ms each)")
    print(
        f"floor:    {len(items) / floor:7.1f} completions/s  ({floor * 1000 / len(items):.1f} ms each; "
        f"{len(recorder.jobs)} bare tool calls replayed)"
    )
    print(f"overhead: {best / floor:.2f}x the raw-tool floor (sandbox on)")
    total = sum(timings.values()) or 1.0
    print(
        "time split: "
        + ", ".join(
            f"{k} {v * 1000 / len(items):.1f} ms ({100 * v / total:.0f}%)" for k, v in timings.items()
        )
    )
    share = 100 * timings.get("formal", 0.0) / total
    print(f"formal level: {share:.0f}% of scoring time (it runs on co-simulation passes only)")
    rates = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        engine.score_batch(items, config, jobs=args.jobs)
        rates.append(len(items) / (time.perf_counter() - start))
    print(
        f"batch:    {max(rates):7.1f} completions/s with --jobs {args.jobs} "
        f"(median {statistics.median(rates):.1f}; in-batch duplicates evaluated once)"
    )
    if args.distinct:
        bench_batched(args.distinct, args.jobs or score.default_jobs(), args.repeat, args.ppa)


def distinct_corpus(count: int) -> list[tuple[Task, str]]:
    """Goldens, mutants and syntax errors of ``count`` embedded-corpus tasks (``val`` then ``test``)."""
    from train.corpus import load_split  # not train.common: torch in this process would slow every fork

    tasks = (load_split("val") + load_split("test"))[:count]
    items = []
    for task in tasks:
        golden = task.reference
        flips = [("&", "|"), ("^", "&"), ("==", "!="), ("1'b1", "1'b0")]
        flips += [] if " for " in golden or "for (" in golden else [("+", "-")]  # a loop could hang
        mutant = next(
            (golden.replace(a, b, 1) for a, b in flips if a in golden),
            golden.replace("endmodule", "assign oops_unused = 1'b0;\nendmodule"),
        )
        broken = golden.replace(";", "", 1)
        items += [(task, f"```verilog\n{code}\n```") for code in (golden, mutant, broken)]
    return items


def big_design(config, repeat: int) -> None:
    """One RTLLM-sized design (its golden, with a co-simulation against itself) scored alone, both ways."""
    from evals.loaders import load_suite

    root = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "rtllm-v1.1"
    if not root.exists():
        return
    task = load_suite("rtllm-v1.1", root, problems=["alu"])[0]
    item = [(task, f"```verilog\n{task.reference}\n```")]
    engine.score_batch(item, config, jobs=1)
    for size in (1, engine.MAX_BATCH):
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            engine.score_batch(item, config, jobs=1, batch_size=size)
            best = min(best, time.perf_counter() - start)
        print(
            f"big design alone: {best:.3f} s with batch_size={size} ({task.id}, {len(task.reference)} chars)"
        )


def bench_batched(count: int, jobs: int, repeat: int, ppa: bool) -> None:
    # the function level: formal equivalence (on by default) runs one candidate per process
    config = load_reward_config(None, ppa_enabled=ppa, formal="off")
    items = distinct_corpus(count)
    # Per-task work is paid once per task, not per completion: golden traces, PPA baselines, and the
    # golden checks that tell a candidate's failure from a host fault (cached per task and level).
    # One unmeasured pass warms them all, so both measured passes (and the floor) hold only the
    # candidates' own tool calls.
    engine.score_batch(items, config, jobs=jobs)
    print(
        f"\ndistinct designs: {len(items)} completions on {len({t.id for t, _ in items})} tasks; "
        f"ppa={'on' if ppa else 'off'}; formal=off; --jobs {jobs}"
    )
    walls = {}
    for size in (1, engine.MAX_BATCH):
        best = float("inf")
        for _ in range(repeat):
            formal.RESULT_CACHE.clear()
            with Recorder() as recorder:
                start = time.perf_counter()
                results = engine.score_batch(items, config, jobs=jobs, batch_size=size)
                best = min(best, time.perf_counter() - start)
            if size == 1:
                one_jobs = list(recorder.jobs)
            else:
                batched_jobs = list(recorder.jobs)
        walls[size] = best
        statuses = sorted({r.status.value for r in results})
        label = "one per process" if size == 1 else f"batched (≤{size})"
        print(
            f"{label:16}: {len(items) / best:7.1f} completions/s  ({len(recorder.jobs)} sandbox jobs; {statuses})"
        )
    floor = min(replay_bare(one_jobs) for _ in range(repeat)) / jobs
    print(
        f"bare floor      : {len(items) / floor:7.1f} completions/s  ({len(one_jobs)} bare per-design tool calls "
        f"replayed, divided over {jobs} cores)"
    )
    print(
        f"batched / floor : {walls[engine.MAX_BATCH] / floor:.2f}x the wall time of the bare per-design floor"
    )
    # the batched run's own tool calls, bare: the tool work batching cannot remove (simulating every
    # vector, linting and compiling every line), with no sandbox, Python or scheduling around it
    tools_only = min(replay_bare(batched_jobs) for _ in range(repeat)) / jobs
    print(
        f"batched, bare   : {tools_only / floor:.2f}x the floor: the batched run's {len(batched_jobs)} tool "
        f"calls replayed bare, divided over {jobs} cores (the tools' own work, a lower bound)"
    )
    with_formal = load_reward_config(None, ppa_enabled=ppa)  # formal at its default (confirm)
    if with_formal.formal != "off":
        engine.score_batch(items, with_formal, jobs=jobs)  # formal's golden runs warm
        formal.RESULT_CACHE.clear()
        with Recorder() as recorder:
            start = time.perf_counter()
            engine.score_batch(items, with_formal, jobs=jobs)
            wall = time.perf_counter() - start
        proofs = [j for j in recorder.jobs if any(name.endswith(".il") for name, _ in j.files)]
        print(
            f"batched, formal : {len(items) / wall:7.1f} completions/s with formal={with_formal.formal} (the "
            f"default; one pass): {len(proofs)} of its {len(recorder.jobs)} sandbox jobs are proof engines, "
            "one candidate each"
        )
    big_design(config, repeat)
    cache_engine = engine.ScoringEngine(config, workers=jobs)
    try:
        payload = [{"task": t, "completion": c} for t, c in items]
        cache_engine.score_items(payload)
        start = time.perf_counter()
        cache_engine.score_items(payload)
        print(f"cache hits      : {len(items) / (time.perf_counter() - start):7.0f} completions/s")
    finally:
        cache_engine.close()


if __name__ == "__main__":
    main()
