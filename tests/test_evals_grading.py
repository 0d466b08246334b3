"""Benchmark grading through the reward core: goldens pass at the official rate, spoofs fail.

Goldens run on a deterministic subset (every k-th problem, 15 per suite) to keep the file fast; the
full-suite figures are produced by ``python -m evals run --samples`` with golden samples (see README).
"""

from pathlib import Path

import pytest

from evals.errata import is_erratum
from evals.loaders import load_suite
from evals.run import Sample, grade_samples
from rewards.config import RewardConfig
from rewards.types import Status

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
CONFIG = RewardConfig(ppa_enabled=False)
SUITES = [
    "verilogeval-v1-human",
    "verilogeval-v1-machine",
    "verilogeval-v2-spec-to-rtl",
    "verilogeval-v2-code-complete-iccad2023",
    "rtllm-v1.1",
]
PER_SUITE = 15


def subset(tasks, size=PER_SUITE):
    step = max(1, len(tasks) // size)
    return tasks[::step][:size]


def fenced(code: str) -> str:
    return f"Here is the design.\n```verilog\n{code}\n```\n"


@pytest.mark.parametrize("suite", SUITES)
def test_goldens_pass_their_own_test_benches(suite):
    tasks = [t for t in subset(load_suite(suite, BENCH)) if not is_erratum(t.id)]
    graded = grade_samples([Sample(t, 0, fenced(t.reference)) for t in tasks], CONFIG)
    failing = {g.task_id: (g.result.status.value, g.result.log[-300:]) for g in graded if not g.result.passed}
    assert not failing, failing
    assert len(graded) >= PER_SUITE - 2


def test_rtllm_pe_golden_with_redeclared_ansi_port_passes():
    # pe redeclares ANSI output c as 'reg [31:0] c': illegal in IEEE 1800 but accepted by Icarus, the
    # official RTLLM simulator; lint reports it as a warning.
    (task,) = load_suite("rtllm-v1.1", BENCH, problems=["pe"])
    (graded,) = grade_samples([Sample(task, 0, fenced(task.reference))], CONFIG)
    assert graded.result.passed, (graded.result.status, graded.result.log[-300:])


def test_rtllm_errata_fail_and_are_flagged():
    tasks = load_suite("rtllm-v1.1", BENCH, problems=["div_16bit", "radix2_div"])
    graded = grade_samples([Sample(t, 0, fenced(t.reference)) for t in tasks], CONFIG)
    assert all(is_erratum(g.task_id) and not g.result.passed for g in graded)
    assert all(g.to_record()["erratum"] for g in graded)


def _one(suite, problem):
    (task,) = load_suite(suite, BENCH, problems=[problem])
    return task


def _grade(task, code):
    (graded,) = grade_samples([Sample(task, 0, fenced(code))], CONFIG)
    return graded.result


V2 = ("verilogeval-v2-spec-to-rtl", "Prob001_zero")
V1 = ("verilogeval-v1-human", "gatesv")
RTLLM = ("rtllm-v1.1", "adder_8bit")


def test_empty_module_fails():
    result = _grade(_one(*V2), "module TopModule(output zero);\nendmodule")
    assert not result.passed and result.status is not Status.OK
    result = _grade(
        _one(*RTLLM),
        "module adder_8bit(input [7:0] a, input [7:0] b, input cin, "
        "output [7:0] sum, output cout);\nendmodule",
    )
    assert not result.passed


def test_printed_mismatches_zero_fails():
    spoof = (
        "module TopModule(output zero);\n  assign zero = 1'b1;\n"
        '  initial $display("Mismatches: 0 in 1 samples");\n  final $display("Mismatches: 0 in 1 samples");\n'
        "endmodule"
    )
    result = _grade(_one(*V2), spoof)
    assert not result.passed, result


def test_initial_finish_fails():
    result = _grade(
        _one(*V2), "module TopModule(output zero);\n  assign zero = 1'b1;\n  initial $finish;\nendmodule"
    )
    assert not result.passed and result.status is Status.FORBIDDEN
    header = _one(*V1).interface
    result = _grade(_one(*V1), header + "  initial $finish;\nendmodule")
    assert not result.passed


def test_printed_pass_fails():
    spoof = (
        "module adder_8bit(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);\n"
        "  assign {cout, sum} = 9'd0;\n"
        '  initial $display("===========Your Design Passed===========");\n'
        '  initial $display("pass");\nendmodule'
    )
    result = _grade(_one(*RTLLM), spoof)
    assert not result.passed, result


def test_wrong_logic_fails_and_right_logic_passes_on_v1():
    task = _one(*V1)
    body = task.reference[len(task.interface) :]
    assert _grade(task, task.interface + body).passed
    wrong = task.interface + body.replace("in[2:0] & in[3:1]", "in[2:0] | in[3:1]")
    assert wrong != task.interface + body
    assert not _grade(task, wrong).passed


def test_code_completion_body_only_is_completed_with_the_header():
    task = _one("verilogeval-v1-human", "gatesv")
    body_only = task.reference[len(task.interface) :]
    (graded,) = grade_samples([Sample(task, 0, body_only)], CONFIG)
    assert graded.interface_prefixed and graded.result.passed
