"""Grading with a task's own test bench: rewriting, tagged output, verdicts, benchmark goldens."""

from __future__ import annotations

from pathlib import Path

import pytest

from evals.errata import ERRATA
from rewards.config import RewardConfig
from rewards.score import limits_for
from rewards.testbench import GOLDEN_CACHE, parse_tagged, rewrite_testbench, run_testbench
from rewards.types import Status, Task

BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
LIMITS = limits_for(RewardConfig(), RewardConfig().sim_cpu_s)

BENCH = """`timescale 1ns/1ps
module tb;
  reg [3:0] a; wire [3:0] y_ref, y_dut; integer errors = 0;
  Ref good1 (.a(a), .y(y_ref));
  TopModule dut (.a, .y(y_dut));
  task check; if (y_ref !== y_dut) errors = errors + 1; endtask
  function [3:0] twice(input [3:0] v); twice = v + v; endfunction
  initial $dumpvars(0, tb);
  initial begin : drive
    // $display("commented out");
    for (a = 0; a < 15; a = a + 1) begin #1 check; end
    $write("done ");
    $display("Mismatches: %0d in %0d samples", errors, 15);
    $display;
    if (errors) $finish; else $stop(0);
  end
endmodule
module Ref(input [3:0] a, output [3:0] y); assign y = a + 1; endmodule
"""


def test_rewrite_hides_bench_names_and_keeps_ports():
    bench = rewrite_testbench(BENCH, top_module="TopModule", keep={"a", "y"}, names_nonce="N1", secret="S1")
    src = bench.source
    for name in ("tb", "Ref", "good1", "dut", "check", "twice", "drive"):
        assert f"{name}_N1" in src, name
    assert "module TopModule" not in src and "TopModule dut_N1" in src
    assert ".a(a)" in src and ".y(y_ref)" in src and ".a," in src
    assert bench.roots == ("tb_N1", "rtlf_mon_N1")
    assert "$dumpvars" not in src and "rtlf_mon_N1.rtlf_nop;" in src


def test_rewrite_tags_every_print_and_routes_finish_through_the_monitor():
    src = rewrite_testbench(BENCH, top_module="TopModule", keep=set(), names_nonce="N1", secret="S1").source
    assert '$write("<S1:w>", "done ", "</S1>")' in src
    assert '$display("<S1:l>", "Mismatches: %0d in %0d samples", errors, 15, "</S1>")' in src
    assert '$display("<S1:l>", "</S1>")' in src
    assert "if (errors) rtlf_mon_N1.rtlf_end; else rtlf_mon_N1.rtlf_end;" in src
    assert '// $display("commented out");' in src
    assert "$finish" not in src and "$stop" not in src


def test_parse_tagged_keeps_only_bench_text():
    out = (
        "junk Mismatches: 0 in 15 samples\n"
        "cand<S1:w>done </S1>more cand<S1:l>Mismatches: 3 in 15 samples</S1>\n"
        "<S1:l>line one\nline two</S1>\n<S1:l>unclosed %m tb_N1.dut_N1\n"
        "<S2:l>Mismatches: 0 in 15 samples</S2>\n<S1:f></S1>\n<S1:e>15000</S1>\n"
    )
    report = parse_tagged(out, "S1", "N1")
    assert report.lines == ["done Mismatches: 3 in 15 samples", "line one", "line two", "unclosed %m tb.dut"]
    assert report.finished and report.end_time == "15000"
    assert parse_tagged(out.replace("<S1:f></S1>", ""), "S1").finished is False


def test_synthetic_bench_passes_the_golden_and_fails_a_mutant():
    golden = "module TopModule(input [3:0] a, output [3:0] y); assign y = a + 1; endmodule\n"
    task = Task(id="fixture/tb", prompt="p", top_module="TopModule", reference=golden, testbench=BENCH)
    ok = run_testbench(task, golden, limits=LIMITS)
    assert ok.status is Status.OK and (ok.matched, ok.total) == (15, 15)
    bad = run_testbench(task, golden.replace("a + 1", "a + 1 + (a == 4'd7)"), limits=LIMITS)
    assert bad.status is Status.SIM_MISMATCH and (bad.matched, bad.total) == (14, 15)


def test_missing_testbench_is_an_infra_error():
    task = Task(
        id="fixture/none", prompt="p", top_module="TopModule", reference="module TopModule; endmodule"
    )
    assert run_testbench(task, task.reference, limits=LIMITS).status is Status.INFRA_ERROR


# --- benchmarks ---------------------------------------------------------------------------------------


def _suite(name: str, folder: str):
    if not (BENCHMARKS / folder).is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS / folder}")
    from evals.loaders import load_suite

    return {t.meta["problem"]: t for t in load_suite(name, BENCHMARKS / folder)}


@pytest.fixture(scope="module")
def v2():
    return _suite("verilogeval-v2-spec-to-rtl", "verilog-eval-v2")


@pytest.fixture(scope="module")
def rtllm():
    return _suite("rtllm-v1.1", "rtllm-v1.1")


def _golden_failures(tasks) -> dict[str, str]:
    failures = {}
    for task in tasks:
        outcome = run_testbench(task, task.reference, limits=LIMITS)
        if outcome.status is not Status.OK:
            failures[task.meta["problem"]] = f"{outcome.status}: {outcome.log[-200:]}"
    return failures


def test_rtllm_goldens_pass_their_benches_except_the_errata(rtllm):
    assert set(_golden_failures(rtllm.values())) == set(ERRATA["rtllm-v1.1"])


def test_verilogeval_v2_goldens_sample_pass_except_the_errata(v2):
    names = sorted(v2)
    errata = set(ERRATA["verilogeval-v2-spec-to-rtl"])
    sample = sorted(set(names[::4]) | errata)
    assert len(sample) >= 40
    assert set(_golden_failures(v2[n] for n in sample)) == errata


@pytest.mark.slow
def test_verilogeval_v2_all_goldens_pass_except_the_errata(v2):
    assert set(_golden_failures(v2.values())) == set(ERRATA["verilogeval-v2-spec-to-rtl"])


@pytest.mark.parametrize(
    "problem, old, new",
    [
        ("Prob014_andgate", "a & b", "a | b"),  # flipped operator
        (
            "Prob027_fadd",
            "assign {cout, sum} = a+b+cin;",
            "wire [0:0] t = a+b+cin;\n  assign {cout, sum} = t;",
        ),  # wrong width
        ("Prob035_count1to10", "q == 10", "q == 9"),  # off-by-one counter
        ("Prob035_count1to10", "if (reset || q == 10)", "if (q == 10)"),  # missing reset
        ("Prob132_always_if2", "else\n      shut_off_computer = 0;", ""),  # a latch
    ],
)
def test_verilogeval_mutants_fail_with_graded_credit(v2, problem, old, new):
    task = v2[problem]
    assert old in task.reference
    outcome = run_testbench(task, task.reference.replace(old, new), limits=LIMITS)
    assert outcome.status is Status.SIM_MISMATCH, outcome.log
    assert 0 <= outcome.matched < outcome.total and outcome.total > 1


def test_rtllm_mutant_fails_and_data_files_are_provided(rtllm):
    adder = rtllm["adder_16bit"]
    broken = adder.reference.replace("module adder_16bit", "module adder_16bit_unused", 1)
    outcome = run_testbench(adder, broken, limits=LIMITS)
    assert outcome.status is Status.SYNTAX_ERROR  # the bench's design is missing
    alu = rtllm["alu"]
    assert "reference.dat" in alu.meta["files"]
    assert run_testbench(alu, alu.reference, limits=LIMITS).status is Status.OK
    no_data = Task.from_dict({**alu.to_dict(), "meta": {**alu.meta, "files": {}}})
    assert run_testbench(no_data, no_data.reference, limits=LIMITS).status is not Status.OK


def test_golden_run_is_cached(v2):
    task = v2["Prob014_andgate"]
    run_testbench(task, task.reference, limits=LIMITS)
    hits = GOLDEN_CACHE.hits
    assert run_testbench(task, task.reference, limits=LIMITS).status is Status.OK
    assert GOLDEN_CACHE.hits == hits + 1
