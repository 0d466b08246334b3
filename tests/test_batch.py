"""Batched tool runs (:mod:`rewards.batch`) give exactly the verdicts of one-at-a-time scoring.

The whole attack and red-team suites, runaway simulations, idiomatic designs and goldens, mutants
and syntax errors of the embedded corpus are scored twice through :func:`rewards.engine.score_batch`:
one candidate per tool process (``batch_size=1``) and batched. Every verdict must agree.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from rewards import batch
from rewards.config import RewardConfig
from rewards.engine import score_batch
from rewards.types import Status, Task
from train.common import resolve_tasks

HERE = Path(__file__).parent
# lint at 2 s CPU: the suites' elaboration bomb (a 2**28-bit register) takes about 4 s of Verilator CPU on
# a slow 2-core machine, so a 4 s limit put it on the edge and the two paths could see different verdicts
# (stopped in lint, or linted and stopped in simulation) for the same candidate
CONFIG = RewardConfig(ppa_enabled=False, sim_cpu_s=2.0, lint_cpu_s=2.0, wall_factor=2.0)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"rtlf_suite_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fixture(name: str) -> Task:
    return Task(
        id=f"fixture/{name}",
        prompt="spec",
        top_module="TopModule",
        reference=(HERE / "data" / "sim" / f"{name}.v").read_text(),
    )


def _corpus(tmp: Path) -> list[tuple[Task, str]]:
    attacks, redteam = _load("test_attacks"), _load("test_redteam")
    bitwise, counter = _fixture("bitwise"), _fixture("counter10")
    items = [(bitwise, attacks._attack(name, "cosim", tmp)) for name in attacks.ATTACKS]
    right = attacks.COSIM_WRONG.replace("a | b", "a & b")
    for items_text, _, modes in redteam.RUNAWAY.values():
        if "cosim" in modes:
            items.append((bitwise, right.format(items=items_text, extra="")))
    items += [
        (bitwise, right.format(items="", extra="")),
        (bitwise, attacks.COSIM_WRONG.format(items="", extra="")),
    ]
    items += [(counter, redteam.LEGIT_COUNTER), (bitwise, redteam.LEGIT_BITWISE)]
    # loops batch only with each other: loops that end (right and wrong) and loops that never do
    loops = [
        "integer i; reg [3:0] t; always @* begin t = 0; for (i = 0; i < 4; i = i + 1) t[i] = a[i]; end",
        "integer i; reg [3:0] t; always @* begin t = 0; for (i = 0; i < 4; i = i + 1) t[i] = ~a[i]; end",
        "integer i; reg [3:0] t; always @* begin t = 0; for (i = 0; i < 4; i = i) t = t + a; end",
        "integer i; reg [3:0] t; always @* begin i = 0; t = a; while (i < 4) t = t + 1; end",
        "reg [3:0] t; always @* begin t = a; repeat (3) t = t + 1; end",
    ]
    items += [(bitwise, right.format(items=loop, extra="")) for loop in loops]
    items += [(bitwise, COUNTING.format(items=loop)) for loop in loops[:2]]
    # a macro defined by one candidate and used by the next: alone, the second is a syntax error
    items += [
        (bitwise, "`define AND_OF(x, y) ((x) & (y))\n" + right.format(items="", extra="")),
        (bitwise, right.replace("a & b", "`AND_OF(a, b)").format(items="", extra="")),
        (
            bitwise,
            right.format(items="", extra="module helper(input x, output y); assign y = x; endmodule\n"),
        ),
    ]
    if (attacks.BENCHMARKS / "verilog-eval-v2").is_dir():  # test-bench tasks: linted in batches too
        from evals.loaders import load_suite

        benches = load_suite(
            "verilogeval-v2-spec-to-rtl",
            attacks.BENCHMARKS / "verilog-eval-v2",
            problems=["Prob014_andgate", "Prob035_count1to10"],
        )
        for tb_task in benches:
            golden = tb_task.reference
            items += [
                (tb_task, golden),
                (tb_task, golden.replace("&", "|", 1)),
                (tb_task, golden.replace(";", "", 1)),
            ]
        andgate = next(t for t in benches if "andgate" in t.id)
        items += [(andgate, attacks._attack(name, "testbench", tmp)) for name in attacks.ATTACKS]
    for task in resolve_tasks(None, "val")[:20]:
        golden = task.reference
        items.append((task, golden))
        for old, new in (("&", "|"), ("+", "-"), ("1'b1", "1'b0"), ("<=", "=")):
            if old in golden:
                items.append((task, golden.replace(old, new, 1)))
        items.append((task, golden.replace(";", "", 1)))
        items.append((task, golden.replace("endmodule", "wire [3:0] w = 4'hz;\nassign w = 1;\nendmodule")))
    return items


# the loop's result is the design's output: a loop that computes the wrong value mismatches
COUNTING = """module TopModule (input [3:0] a, input [3:0] b, output [3:0] y_and, output [3:0] y_xor);
{items}
  assign y_and = t & b;
  assign y_xor = a ^ b;
endmodule
"""


def _verdict(result) -> tuple:
    metrics = result.metrics
    return (
        result.status,
        result.reward,
        result.levels,
        metrics.get("matched"),
        metrics.get("vectors"),
        metrics.get("lint_warnings"),
    )


def test_batched_verdicts_equal_one_at_a_time_on_the_attack_suites(tmp_path, monkeypatch):
    items = _corpus(tmp_path)
    alone = score_batch(items, CONFIG, jobs=2, batch_size=1)
    sizes: list[int] = []
    original = batch.run_job

    def recording(job, sandbox=True):
        sizes.append(sum(1 for name, _ in job.files if name.startswith("c")))
        return original(job, sandbox=sandbox)

    monkeypatch.setattr(batch, "run_job", recording)
    together = score_batch(items, CONFIG, jobs=2)
    assert max(sizes) >= 10, f"no real batch ran: {sizes}"
    differ = [
        (task.id, code[:200], _verdict(a), _verdict(b))
        for (task, code), a, b in zip(items, alone, together, strict=True)
        if _verdict(a) != _verdict(b)
    ]
    assert not differ, differ
    statuses = {r.status for r in alone}
    assert {
        Status.OK,
        Status.SIM_MISMATCH,
        Status.SYNTAX_ERROR,
        Status.FORBIDDEN,
        Status.SIM_TIMEOUT,
    } <= statuses


def test_a_hang_in_a_batch_costs_a_rerun_not_a_verdict():
    attacks, redteam = _load("test_attacks"), _load("test_redteam")
    bitwise = _fixture("bitwise")
    right = attacks.COSIM_WRONG.replace("a | b", "a & b")
    hang = right.format(items=redteam.RUNAWAY["zero_delay_loop"][0], extra="")
    good = [
        right.replace("a ^ b", f"b ^ a ^ {n}'d0" if n else "b ^ a").format(items="", extra="")
        for n in range(8)
    ]
    assert batch.batchable(hang, "TopModule") and all(batch.batchable(g, "TopModule") for g in good)
    results = score_batch([(bitwise, code) for code in good[:4] + [hang] + good[4:]], CONFIG, jobs=1)
    assert [r.status for r in results] == [Status.OK] * 4 + [Status.SIM_TIMEOUT] + [Status.OK] * 4


@pytest.mark.parametrize(
    ("code", "together"),
    [
        ("module top(input a, output y);\n  // this module is a buffer\n  assign y = a;\nendmodule", True),
        ("module top(input [3:0] a, output [1:0] y);\n  assign y = $clog2(a);\nendmodule", True),
        ("`default_nettype none\nmodule top(input a, output y); assign y = a; endmodule", False),
        (
            "module top(input a, output y); sub u(.a(a), .y(y)); endmodule\nmodule sub(input a, output y); endmodule",
            False,
        ),
        ("module top(input a, output y); assign y = a ^ $random; endmodule", False),
        (
            "module top(input a, output y);\n  /* verilator lint_off WIDTH */\n  assign y = a;\nendmodule",
            False,
        ),
        ("module top(input a, output \\y$ ); assign \\y$ = a; endmodule", False),
        (  # with loops: batched, but only with other candidates that have loops
            "module top(input [3:0] a, output reg y);\n  integer i;\n  always @* for (i = 0; i < 4; i = i + 1) y = a[i];\nendmodule",
            True,
        ),
        ("module top(input a, output top_y); assign top_y = a; endmodule", True),
        ("module top(input a, output y); top u(.a(a), .y(y)); endmodule", False),
    ],
)
def test_only_candidates_that_cannot_reach_a_neighbour_are_batched(code, together):
    assert batch.batchable(code, "top") is together


@pytest.mark.parametrize("count, sizes", [(1, [1]), (70, [35, 35]), (130, [33, 33, 33, 31]), (9, [5, 4])])
def test_batches_are_spread_over_whole_rounds_of_the_workers(count, sizes):
    from rewards.engine import Plan, ScoringEngine
    from rewards.extract import Extraction

    code = "module top(input a, output y); assign y = ~a; endmodule"
    task = Task(id="t", prompt="", top_module="top", reference=code)
    plans = [(f"k{i}", Plan(task, code, Extraction(code=code), f"k{i}")) for i in range(count)]
    engine = ScoringEngine(RewardConfig(), workers=2, batch_size=64)
    try:
        assert [len(group) for group in engine._groups(plans)] == sizes
    finally:
        engine.close()


def test_the_scored_code_comes_back_with_each_result():
    from rewards.engine import score_batch_with_code

    bitwise = _fixture("bitwise")
    prose = "Here is the design:\n```verilog\n" + bitwise.reference + "```\nIt is combinational."
    out = score_batch_with_code([(bitwise, prose), (bitwise, "no code at all"), (bitwise, prose)], CONFIG)
    (first, code), (second, none), (third, again) = out
    assert first.status is Status.OK and third.status is Status.OK
    assert code == again and code.strip() == bitwise.reference.strip()
    assert second.status is Status.FORMAT_ERROR and none is None
