"""Red-team attacks on the reward: candidates that try to pass without implementing the spec.

Each attack goes end to end through :func:`rewards.score.score` and must not pass (status not OK,
reward under the 1.3 full-pass threshold); some also run at the function level with the guard
bypassed. Modes: auto co-simulation against fixture goldens, VerilogEval v2 test benches and
RTLLM test benches. A few idiomatic designs check that the defences do not reject honest code.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rewards.config import RewardConfig
from rewards.cosim import run_cosim
from rewards.interface import parse_ports
from rewards.score import limits_for, score
from rewards.testbench import run_testbench
from rewards.types import Status, Task

DATA = Path(__file__).parent / "data" / "sim"
BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
CONFIG = RewardConfig(ppa_enabled=False)
LIMITS = limits_for(CONFIG, CONFIG.sim_cpu_s)
PASS = 1.3

COSIM_WRONG = """module TopModule (input [3:0] a, input [3:0] b, output [3:0] y_and, output [3:0] y_xor);
  assign y_and = a | b;
  assign y_xor = a ^ b;
{items}
endmodule
{extra}"""
TB_CONST = """module TopModule (input a, input b, output out);
  assign out = 1'b0;
{items}
endmodule
{extra}"""


def _fixture(name: str) -> Task:
    return Task(
        id=f"fixture/{name}",
        prompt="spec",
        top_module="TopModule",
        reference=(DATA / f"{name}.v").read_text(),
    )


@pytest.fixture(scope="module")
def cosim_task() -> Task:
    return _fixture("bitwise")


@pytest.fixture(scope="module")
def counter_task() -> Task:
    return _fixture("counter10")


def _suite(suite: str, folder: str, problem: str) -> Task:
    if not (BENCHMARKS / folder).is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS / folder}")
    from evals.loaders import load_suite

    return load_suite(suite, BENCHMARKS / folder, problems=[problem])[0]


@pytest.fixture(scope="module")
def tb_task() -> Task:
    return _suite("verilogeval-v2-spec-to-rtl", "verilog-eval-v2", "Prob014_andgate")


def _score(task: Task, code: str, config: RewardConfig = CONFIG):
    return score(task, f"```verilog\n{code}\n```", config)


def _assert_fails(result, allowed=None) -> None:
    assert not result.passed and result.status is not Status.OK, result
    assert result.status is not Status.INFRA_ERROR and result.reward is not None, result
    assert result.reward < PASS, result
    if allowed:
        assert result.status in allowed, result


def _function_level(task: Task, code: str):
    if task.testbench:
        return run_testbench(task, code, limits=LIMITS)
    return run_cosim(task, code, CONFIG.cosim, limits=LIMITS)


# --- preprocessor, system names, names: rejected before simulation --------------------------

STATIC = {
    "ifdef_icarus": "`ifdef __ICARUS__\n assign y_xor = 0;\n`endif",
    "ifndef_synthesis": '`ifndef SYNTHESIS\n initial $display("sim");\n`endif',
    "ifdef_verilator": "`ifdef VERILATOR\n`else\n wire w;\n`endif",
    "define_tool_macro": "`define SYNTHESIS\n`ifdef SYNTHESIS\n`endif",
    "line": '`line 1 "tb.sv" 0',
    "undefineall": "`undefineall",
    "pragma": "`pragma protect begin",
    "begin_keywords": '`begin_keywords "1364-2001"',
    "unterminated_ifdef": "`define Q\n`ifdef Q",
    "unterminated_string": 'initial $display("abc);',
    "include_via_macro": '`define I "/etc/passwd"\n`include `I',
    "systemc": "`systemc_header\n#include <stdlib.h>\n`verilog",
    "c_via_macro": '`define C $c\ninitial `C("system(\\"id\\")");',
    "fdisplay_via_macro": '`define F $fdisplay\ninitial `F(1, "x");',
    "dpi_via_macro": '`define IMP import "DPI-C" function void exit(int c);\n`IMP',
    "token_paste": "`define S(n) $``n\ninitial `S(finish);",
    "swrite": 'reg [8*20:1] s; initial $swrite(s, "x");',
    "countdrivers": "initial begin if ($countdrivers(a)) ; end",
    "q_initialize": "integer st; initial $q_initialize(1, 1, 10, st);",
    "printtimescale": "initial $printtimescale;",
    "scope": "initial $scope(TopModule);",
    "sdf_annotate": 'initial $sdf_annotate("x.sdf");',
    "plusargs": 'initial if ($test$plusargs("x")) ;',
    "fflush": "initial $fflush();",
    "ferror": "reg [639:0] s; integer e; initial e = $ferror(1, s);",
    "save": 'initial $save("x");',
    "input": 'initial $input("x");',
    "log": 'initial $log("x");',
    "key": 'initial $key("x");',
    "reset": "initial $reset;",
    "escaped_system_name": "initial \\$finish ;",
    "zero_width_space": "initial $fin\u200bish;",
    "fullwidth_dollar": "initial \uff04finish;",
    "upward_task_call": "initial rtlf_end;",
    "upward_event": "initial -> tb.ev;",
    "upward_disable": "initial disable tb;",
    "root": "initial $display($root.tb.x);",
    "hidden_scope_upward": (
        "function automatic integer f(input integer x); begin : stats1 f = x; end endfunction\n"
        "always #1 stats1.errors = 0;"
    ),
    "tran": "wire q = 1'bx; tran(a[0], q);",
    "rtranif": "wire q = 1'bx; rtranif1(a[0], q, 1'b1); tranif0(b[0], q, 1'b0);",
    "alias": "wire [3:0] q = 4'bx; alias a = q;",
    "attribute": "(* keep *) wire k;",
    "translate_off": '// synopsys translate_off\ninitial $display("x");\n// synopsys translate_on',
    "force": "initial force y_and = 4'b0;",
    "deep_generate": "genvar gi; generate for (gi = 0; gi < 100000000; gi = gi + 1) begin : g wire w; end endgenerate",
    "verilator_internal_error": "localparam integer P = 1 / 0; wire [P:0] w;",
    "huge_memory": "reg [0:0] m [0:(1<<30)]; initial m[5] = 1;",
}


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_attack_rejected_before_simulation(name, cosim_task):
    result = _score(cosim_task, COSIM_WRONG.format(items=STATIC[name], extra=""))
    _assert_fails(result, {Status.FORBIDDEN, Status.SYNTAX_ERROR, Status.RESOURCE_LIMIT})
    assert result.levels["function"] == 0.0


# --- the test bench's reference shares input nets with the candidate ------------------------

DRIVE_INPUTS = {
    "tran": "wire q = 1'bx; tran(a, q); tran(b, q);",
    "rtranif1": "wire q = 1'bx; rtranif1(a, q, 1'b1); rtranif0(b, q, 1'b0);",
    "assign_input": "assign a = 1'bx;",
    "gate_output_on_input": "buf (a, 1'bx); buf (b, 1'bx);",
    "inout_submodule": "drv d(.io({a, b}));",
    "supply_input_net": "",
}


@pytest.mark.parametrize("name", sorted(DRIVE_INPUTS))
def test_candidate_cannot_x_out_the_reference_through_its_inputs(name, tb_task):
    """Driving x onto an input net the bench shares with RefModule makes the reference's outputs x,
    which the VerilogEval bench counts as don't-care: a constant output would then pass."""
    extra = "module drv(inout [1:0] io); assign io = 2'bxx; endmodule" if name == "inout_submodule" else ""
    code = TB_CONST.format(items=DRIVE_INPUTS[name], extra=extra)
    if name == "supply_input_net":
        code = code.replace("input a, input b", "input supply0 a, input supply1 b")
    _assert_fails(_score(tb_task, code))


INOUT_DRIVER = (
    "module drv(inout [1:0] io); bufif1 g0(io[0], 1'bx, 1'b1); bufif1 g1(io[1], 1'bx, 1'b1); endmodule"
)


@pytest.mark.parametrize(
    "items,extra",
    [(DRIVE_INPUTS["tran"], ""), ("drv d(.io({a, b}));", INOUT_DRIVER)],
    ids=["tran", "inout_concat"],
)
def test_function_level_refuses_shared_net_drivers_without_guard_or_lint(items, extra, tb_task, monkeypatch):
    """Without the guard and Verilator (run_testbench alone) the bench refuses both attacks; with
    that refusal switched off they pass, so the refusal is what stops them."""
    from rewards import testbench

    code = TB_CONST.format(items=items, extra=extra)
    assert _function_level(tb_task, code).status is Status.FORBIDDEN
    monkeypatch.setattr(testbench, "shared_net_hazard", lambda task, code: None)
    assert _function_level(tb_task, code).status is Status.OK
    assert _function_level(tb_task, TB_CONST.format(items="", extra="")).status is Status.SIM_MISMATCH


def test_inout_allowed_when_the_golden_has_one(tb_task):
    from rewards.testbench import shared_net_hazard

    code = TB_CONST.format(items="", extra=INOUT_DRIVER)
    assert shared_net_hazard(tb_task, code)
    golden = "module TopModule(inout [1:0] io, output out); assign out = io[0]; endmodule"
    with_inout = Task.from_dict({**tb_task.to_dict(), "reference": golden})
    assert shared_net_hazard(with_inout, code) is None
    assert shared_net_hazard(tb_task, TB_CONST.format(items="// inout tran\n", extra="")) is None


# --- names: harness look-alikes, duplicates -------------------------------------------------

NAMES = {
    "escaped_refmodule": "module \\RefModule (input a, input b, output out); assign out = a | b; endmodule",
    "escaped_stimulus_gen": "module \\stimulus_gen (input clk, output reg a, output reg b); endmodule",
    "stimulus_gen": "module stimulus_gen (input clk, output reg a, output reg b); initial {a, b} = 0; endmodule",
    "harness_other_case": 'module RTLF_TB; initial $display("pass"); endmodule\nmodule Tb; endmodule',
    "duplicate_top": "module TopModule (input a, input b, output out); assign out = a & b; endmodule",
    "escaped_duplicate_top": "module \\TopModule (input a, input b, output out); assign out = a & b; endmodule",
    "instantiates_refmodule": "module Helper (input a, input b, output out); RefModule r(.a(a), .b(b), .out(out)); endmodule",
}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_harness_names_do_not_help(name, tb_task):
    code = TB_CONST.format(items="", extra=NAMES[name])
    _assert_fails(_score(tb_task, code))
    if name != "instantiates_refmodule":
        assert _function_level(tb_task, code).status is not Status.OK


def test_top_module_instantiating_refmodule_is_rejected(tb_task):
    code = (
        "module TopModule (input a, input b, output out);\n  RefModule r(.a(a), .b(b), .out(out));\nendmodule"
    )
    result = _score(tb_task, code)
    _assert_fails(result, {Status.FORBIDDEN})
    assert _function_level(tb_task, code).status is Status.SYNTAX_ERROR


# --- printed verdicts, X/Z, state presets ---------------------------------------------------


def test_printed_lines_that_look_like_trace_or_verdict_lines(cosim_task, tb_task):
    trace = (
        'initial begin $display("H 0123456789abcdef01234567"); $display("0 0000 0000"); '
        '$display("%m Mismatches: 0 in 219 samples"); end\n'
        'final $display("E 0123456789abcdef01234567 768");'
    )
    _assert_fails(_score(cosim_task, COSIM_WRONG.format(items=trace, extra="")), {Status.SIM_MISMATCH})
    _assert_fails(_score(tb_task, TB_CONST.format(items=trace, extra="")), {Status.SIM_MISMATCH})


@pytest.mark.parametrize("value", ["x", "z"])
def test_x_and_z_outputs_mismatch(value, cosim_task, tb_task):
    code = (
        COSIM_WRONG.replace("a | b", "a & b").replace("a ^ b", f"4'b{value * 4}").format(items="", extra="")
    )
    _assert_fails(_score(cosim_task, code), {Status.SIM_MISMATCH})
    _assert_fails(
        _score(tb_task, TB_CONST.replace("1'b0", f"1'b{value}").format(items="", extra="")),
        {Status.SIM_MISMATCH},
    )


@pytest.mark.parametrize("problem", ["adder_8bit", "edge_detect", "freq_div", "multi_pipe_8bit"])
def test_rtllm_benches_comparing_with_ne_do_not_accept_x(problem):
    """Several RTLLM benches compare with ``!=``, under which x never counts as an error."""
    task = _suite("rtllm-v1.1", "rtllm-v1.1", problem)
    ports = parse_ports(task.reference, task.top_module)
    decl = ", ".join(f"{p.direction} [{p.width - 1}:0] {p.name}" for p in ports)
    body = "\n".join(f"assign {p.name} = {{{p.width}{{1'bx}}}};" for p in ports if p.direction != "input")
    _assert_fails(_score(task, f"module {task.top_module}({decl});\n{body}\nendmodule"))


def test_initial_preset_instead_of_reset_fails(counter_task):
    """State preset by ``initial`` instead of a reset: the mid-run resets expose it."""
    code = """module TopModule (input clk, input reset, input en, output reg [3:0] q, output wrap);
  initial q = 4'd0;
  assign wrap = en && q == 4'd9;
  always @(posedge clk) if (en) q <= (q == 4'd9) ? 4'd0 : q + 4'd1;
endmodule"""
    _assert_fails(_score(counter_task, code), {Status.SIM_MISMATCH})


def test_time_and_random_guessing_fail(counter_task, cosim_task):
    """Nondeterminism and simulation time are rejected up front (formal would read them differently)."""
    guess = COSIM_WRONG.replace("a | b", "($time > 3) ? a & b : $random").format(items="", extra="")
    _assert_fails(_score(cosim_task, guess), {Status.FORBIDDEN})
    phase = """module TopModule (input clk, input reset, input en, output reg [3:0] q, output wrap);
  assign wrap = ($stime % 10) < 5;
  always @(posedge clk) q <= reset ? 4'd0 : q + ($realtime > 100.0);
endmodule"""
    _assert_fails(_score(counter_task, phase), {Status.FORBIDDEN})
    urandom = COSIM_WRONG.replace("a | b", "$urandom_range(1, 0) ? a | b : a").format(items="", extra="")
    _assert_fails(_score(cosim_task, urandom), {Status.FORBIDDEN})


# --- in-process denial of service (the guard runs unsandboxed, inside the reward server) -----


def test_exponential_macro_expansion_is_rejected_quickly(cosim_task):
    chain = "\n".join(f"`define A{i} (`A{i - 1} + `A{i - 1})" for i in range(1, 48))
    items = f"`define A0 1\n{chain}\nwire [31:0] blow = `A47;"
    start = time.monotonic()
    result = _score(cosim_task, COSIM_WRONG.replace("a | b", "a & b").format(items=items, extra=""))
    _assert_fails(result, {Status.FORBIDDEN})
    assert time.monotonic() - start < 10


def test_pathological_nesting_is_a_rejection_not_a_crash(cosim_task):
    deep = "(" * 20000 + "a & b" + ")" * 20000
    result = _score(cosim_task, COSIM_WRONG.replace("a | b", deep).format(items="", extra=""))
    _assert_fails(result, {Status.FORBIDDEN})


# --- resources ------------------------------------------------------------------------------

RUNAWAY = {  # name: (items, statuses allowed, modes)
    "zero_delay_loop": (
        "reg p = 0, q = 0; always @(p) q = ~q; always @(q) p = ~p; initial #0 p = 1;",
        {Status.SIM_TIMEOUT},
        ("cosim",),
    ),
    "output_flood": (
        'initial forever #0.001 $display("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");',
        {Status.RESOURCE_LIMIT, Status.SIM_TIMEOUT},
        ("cosim", "testbench"),
    ),
    "huge_vector": (
        "reg [(1<<28)-1:0] w; initial w = ~0;",
        {Status.RESOURCE_LIMIT, Status.SIM_TIMEOUT},
        ("cosim",),
    ),
    "hang_before_end": (
        "reg p = 0, q = 0; always @(p) q = ~q; always @(q) p = ~p; initial #200 p = 1;",
        {Status.SIM_TIMEOUT},
        ("testbench",),
    ),
}


@pytest.mark.parametrize("name", sorted(RUNAWAY))
def test_runaway_simulations_fail_and_are_not_infrastructure_errors(name, cosim_task, tb_task):
    """Correct logic plus a runaway process: a limit status (the sample's own fault), never OK."""
    items, allowed, modes = RUNAWAY[name]
    tight = RewardConfig(ppa_enabled=False, sim_cpu_s=2.0, lint_cpu_s=4.0, wall_factor=2.0)
    if "cosim" in modes:
        code = COSIM_WRONG.replace("a | b", "a & b").format(items=items, extra="")
        _assert_fails(_score(cosim_task, code, tight), allowed)
    if "testbench" in modes:
        code = TB_CONST.replace("1'b0", "a & b").format(items=items, extra="")
        _assert_fails(_score(tb_task, code, tight), allowed)


def test_host_files_untouched_even_without_the_guard(cosim_task, tb_task, tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    os.chmod(canary, 0o777)
    os.chmod(tmp_path, 0o777)
    target = canary / "pwned"
    items = (
        f'integer f; initial begin f = $fopen("{target}", "w"); $fdisplay(f, "x"); $fclose(f); '
        f'$system("touch {target}"); end'
    )
    for task, template in ((cosim_task, COSIM_WRONG), (tb_task, TB_CONST)):
        code = template.format(items=items, extra="")
        _assert_fails(_score(task, code), {Status.FORBIDDEN})
        _function_level(task, code)
        assert list(canary.iterdir()) == []


# --- honest designs still pass --------------------------------------------------------------

LEGIT_COUNTER = """`define LAST 4'd9
module TopModule (input clk, input reset, input en, output logic [3:0] q, output wrap);
  localparam logic [3:0] ZERO = 4'd0;
  function automatic logic [3:0] next(input logic [3:0] v);
    case (v)
      `LAST: next = ZERO;
      default: next = v + 4'd1;
    endcase
  endfunction
  assign wrap = en && q == `LAST;
  always_ff @(posedge clk) begin
    if (reset) q <= ZERO;
    else if (en) q <= next(q);
  end
endmodule"""

LEGIT_BITWISE = """module bit_cell (input x, input y, output o_and, output o_xor);
  assign o_and = x & y;
  assign o_xor = x ^ y;
endmodule
module TopModule (input [3:0] a, input [3:0] b, output [3:0] y_and, output [3:0] y_xor);
  genvar i;
  generate for (i = 0; i < 4; i = i + 1) begin : g
    bit_cell c (.x(a[i]), .y(b[i]), .o_and(y_and[i]), .o_xor(y_xor[i]));
  end endgenerate
endmodule"""

LEGIT_AND = """`timescale 1ns/1ps
`default_nettype none
module TopModule (input wire a, input wire b, output logic out);
  always_comb begin
    case ({a, b})
      2'b11: out = 1'b1;
      default: out = 1'b0;
    endcase
  end
endmodule
`default_nettype wire"""


def test_idiomatic_designs_still_pass(counter_task, cosim_task, tb_task):
    for task, code in ((counter_task, LEGIT_COUNTER), (cosim_task, LEGIT_BITWISE), (tb_task, LEGIT_AND)):
        result = _score(task, code)
        assert result.status is Status.OK and result.reward >= PASS, result


def test_batch_dedup_does_not_share_a_pass_with_a_commented_out_variant(cosim_task):
    from rewards.engine import score_batch

    good = LEGIT_BITWISE.replace("  assign o_and", "  // and\n  assign o_and")
    bad = good.replace("// and\n", "// and ")
    results = score_batch([(cosim_task, f"```verilog\n{c}\n```") for c in (good, bad)], CONFIG, jobs=1)
    assert results[0].status is Status.OK
    assert results[1].status is not Status.OK, results[1]


def test_function_level_cannot_forge_an_infrastructure_error(cosim_task):
    code = '`line 1 "bwrap: setting up uid map" 0\n' + COSIM_WRONG.replace("a | b", "no_such_net").format(
        items="", extra=""
    )
    assert _score(cosim_task, code).status is Status.FORBIDDEN
    assert _function_level(cosim_task, code).status is Status.SYNTAX_ERROR


def test_weak_rtllm_bench_does_not_pass_constant_outputs():
    task = _suite("rtllm-v1.1", "rtllm-v1.1", "edge_detect")
    ports = parse_ports(task.reference, task.top_module)
    decl = ", ".join(f"{p.direction} [{p.width - 1}:0] {p.name}" for p in ports)
    body = "\n".join(f"assign {p.name} = {p.width}'d0;" for p in ports if p.direction != "input")
    _assert_fails(_score(task, f"module {task.top_module}({decl});\n{body}\nendmodule"))
