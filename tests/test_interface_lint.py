"""Interface level (pyslang port lists vs the golden) and syntax level (Verilator lint)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rewards.interface import InterfaceError, check_interface, parse_ports
from rewards.lint import SOURCE_NAME, parse_messages, run_lint
from rewards.sandbox import Limits
from rewards.tools import ToolNotFound
from rewards.types import Port, Task

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"

GOLDEN = """
module TopModule #(parameter W = 8) (
    input clk,
    input [W-1:0] a,
    input [W-1:0] b,
    output reg [W:0] sum
);
    always @(posedge clk) sum <= a + b;
endmodule
"""


def _task(reference: str = GOLDEN) -> Task:
    return Task(id="t/adder", prompt="add", top_module="TopModule", reference=reference)


def test_parse_ports_ansi_with_parameters_and_sv_types():
    code = """
    module TopModule #(parameter W = 8) (
        input clk,
        input wire signed [W-1:0] a,
        output reg [2*W-1:0] y,
        output logic [3:0][1:0] packed2d,
        inout [0:3] bus
    );
        localparam L = W / 2;
    endmodule
    """
    assert parse_ports(code, "TopModule") == [
        Port("clk", "input", 1, 0, 0, False),
        Port("a", "input", 8, 7, 0, True),
        Port("y", "output", 16, 15, 0, False),
        Port("packed2d", "output", 8, 7, 0, False),
        Port("bus", "inout", 4, 0, 3, False),
    ]


def test_parse_ports_non_ansi_with_localparam_width():
    code = """
    module TopModule(a, b, c);
        parameter N = 4;
        localparam M = N + 1;
        input [M-1:0] a;
        output b;
        reg b;
        output [N*2-1:0] c;
        wire [N*2-1:0] c;
    endmodule
    """
    ports = parse_ports(code, "TopModule")
    assert [(p.name, p.direction, p.width) for p in ports] == [
        ("a", "input", 5),
        ("b", "output", 1),
        ("c", "output", 8),
    ]


def test_parse_ports_picks_the_named_module_among_several():
    code = (
        "module helper(input x, output y); assign y = x; endmodule\n"
        "module TopModule(input [2:0] i, output o); helper h(.x(i[0]), .y(o)); endmodule\n"
    )
    assert [p.name for p in parse_ports(code, "TopModule")] == ["i", "o"]
    assert [p.name for p in parse_ports(code, "helper")] == ["x", "y"]


def test_parse_ports_struct_enum_and_int_types():
    code = (
        "typedef struct packed { logic [3:0] hi; logic lo; } pair_t;\n"
        "module TopModule(input pair_t p, input int i, output byte b, input [3:-4] fx); endmodule"
    )
    assert parse_ports(code, "TopModule") == [
        Port("p", "input", 5, 4, 0, False),
        Port("i", "input", 32, 31, 0, True),
        Port("b", "output", 8, 7, 0, True),
        Port("fx", "input", 8, 3, -4, False),
    ]


def test_parse_ports_rejects_unpacked_and_real_ports():
    with pytest.raises(InterfaceError, match="'m' has type .*not a packed bit vector"):
        parse_ports("module TopModule(input [7:0] m [0:3]); endmodule", "TopModule")
    with pytest.raises(InterfaceError, match="'r' has type real"):
        parse_ports("module TopModule(output real r); endmodule", "TopModule")


def test_parse_ports_parameter_without_default():
    with pytest.raises(InterfaceError, match="give every parameter a default"):
        parse_ports("module TopModule #(parameter int W) (input [W-1:0] a); endmodule", "TopModule")


def test_parse_ports_missing_module_raises():
    with pytest.raises(InterfaceError, match="'TopModule' not found.*helper"):
        parse_ports("module helper(input x); endmodule", "TopModule")


def test_parse_ports_syntax_error_raises():
    with pytest.raises(InterfaceError, match="cannot parse"):
        parse_ports("module TopModule(input a; endmodule", "TopModule")


def test_check_interface_same_ports_any_order_and_style():
    code = """
    module TopModule(sum, b, a, clk);
        parameter W = 8;
        input clk;
        input [W-1:0] a, b;
        output [W:0] sum;
        reg [W:0] sum;
        always @(posedge clk) sum <= a + b;
    endmodule
    """
    assert check_interface(_task(), code) is None


def test_check_interface_parameter_width_must_resolve_to_the_same_value():
    code = (
        "module TopModule #(parameter N = 4) (input clk, input [2*N-1:0] a, input [7:0] b, "
        "output reg [2*N:0] sum); endmodule"
    )
    assert check_interface(_task(), code) is None


def test_check_interface_missing_port():
    code = "module TopModule(input clk, input [7:0] a, output [8:0] sum); endmodule"
    message = check_interface(_task(), code)
    assert message is not None and "missing port `input [7:0] b`" in message


def test_check_interface_wrong_width():
    code = "module TopModule(input clk, input [7:0] a, input [7:0] b, output [7:0] sum); endmodule"
    message = check_interface(_task(), code)
    assert message is not None and "'sum' is 8 bits wide, expected 9" in message


def test_check_interface_wrong_direction():
    code = "module TopModule(input clk, input [7:0] a, output [7:0] b, output [8:0] sum); endmodule"
    message = check_interface(_task(), code)
    assert message is not None and "'b' is output, expected input" in message


def test_check_interface_extra_port():
    code = "module TopModule(input clk, input rst, input [7:0] a, input [7:0] b, output [8:0] sum); endmodule"
    message = check_interface(_task(), code)
    assert message is not None and "unexpected extra port `input rst`" in message


def test_check_interface_unreadable_candidate_is_a_mismatch_not_an_exception():
    message = check_interface(_task(), "module Other(input a); endmodule")
    assert message is not None and "not found" in message


def test_benchmark_goldens_have_readable_ports():
    refs = sorted((BENCH / "verilog-eval-v2").glob("*/*_ref.sv"))
    assert len(refs) > 100, f"VerilogEval v2 goldens not found under {BENCH}"
    for ref in refs:
        assert parse_ports(ref.read_text(), "RefModule"), ref


# ---- syntax level: Verilator lint ---------------------------------------------------------------

LINT_LIMITS = Limits(cpu_s=20, wall_s=60)


def test_lint_clean_design_is_ok():
    result = run_lint(
        "module TopModule(input a, output y);\n  assign y = ~a;\nendmodule\n", "TopModule", limits=LINT_LIMITS
    )
    assert result.ok and result.messages == [] and result.warning_count == 0 and not result.timed_out


def test_lint_syntax_error_is_parsed_into_fields():
    code = "module TopModule(input a, output y)\n  assign y = a;\nendmodule\n"
    result = run_lint(code, "TopModule", limits=LINT_LIMITS)
    assert not result.ok and not result.timed_out
    first = result.messages[0]
    assert (first.file, first.line, first.col, first.severity) == (SOURCE_NAME, 2, 3, "error")
    assert "syntax error" in first.text
    assert "candidate.sv:2:3: syntax error" in result.log


def test_lint_width_mismatch_is_a_warning_not_a_failure():
    code = "module TopModule(input [3:0] a, output [2:0] y);\n  assign y = a;\nendmodule\n"
    result = run_lint(code, "TopModule", limits=LINT_LIMITS)
    assert result.ok and result.warning_count == 1
    (warning,) = result.messages
    assert (warning.severity, warning.code, warning.file, warning.line) == (
        "warning",
        "WIDTH",
        SOURCE_NAME,
        2,
    )
    assert "expects 3 bits" in warning.text


def test_lint_missing_top_module_fails():
    result = run_lint("module Other(input a);\nendmodule\n", "TopModule", limits=LINT_LIMITS)
    assert not result.ok and "'TopModule' was not found" in result.log


def test_lint_accepts_delays_in_initial_blocks():
    code = "module TopModule(input a, output reg y);\n  initial begin #5 y = 0; @(a); end\nendmodule\n"
    assert run_lint(code, "TopModule", limits=LINT_LIMITS).ok


def test_lint_cpu_limit_reports_timed_out():
    code = (
        "module TopModule(output y); genvar i, j;\n"
        "generate for (i = 0; i < 1000; i = i + 1) begin : g for (j = 0; j < 1000; j = j + 1) begin : h\n"
        "  wire [63:0] w; assign w = i * j; end end endgenerate\n"
        "assign y = g[0].h[0].w[0];\nendmodule\n"
    )
    result = run_lint(code, "TopModule", limits=Limits(cpu_s=1, wall_s=10))
    assert not result.ok and result.timed_out and "limit" in result.log


def test_lint_missing_verilator_raises_tool_not_found(monkeypatch):
    monkeypatch.setenv("VERILATOR", "/nonexistent/verilator")
    with pytest.raises(ToolNotFound, match="VERILATOR"):
        run_lint("module TopModule; endmodule\n", "TopModule", limits=LINT_LIMITS)


def test_parse_messages_skips_excerpts_and_summary():
    text = (
        "%Warning-WIDTH: candidate.sv:2:12: Operator ASSIGNW expects 3 bits\n"
        "                         : ... In instance TopModule\n"
        "    2 |   assign y = a;\n      |            ^\n"
        "%Error-UNSUPPORTED: candidate.sv:7:21: Unsupported tristate construct: ASSIGNDLY\n"
        "%Error: Specified --top-module 'X' was not found in design.\n"
        "%Error: Exiting due to 2 error(s)\n"
    )
    messages = parse_messages(text)
    assert [(m.severity, m.code, m.line, m.col) for m in messages] == [
        ("warning", "WIDTH", 2, 12),
        ("unsupported", "UNSUPPORTED", 7, 21),
        ("error", "", 0, 0),
    ]


def _rtllm_top(path: Path, source: str) -> str:
    design = path.stem.removeprefix("verified_")
    names = re.findall(r"^\s*module\s+(\w+)", source, re.M)
    return next((n for n in (design, path.stem) if n in names), names[-1])


def test_lint_benchmark_goldens():
    refs = sorted((BENCH / "verilog-eval-v2" / "dataset_spec-to-rtl").glob("*_ref.sv"))[::8]
    rtllm = sorted((BENCH / "rtllm-v1.1").glob("**/verified_*.v"))
    assert refs and rtllm
    failures = {}
    for path in refs:
        result = run_lint(path.read_text(), "RefModule", limits=LINT_LIMITS)
        if not result.ok:
            failures[path.name] = result.log
    for path in rtllm:
        source = path.read_text(errors="replace")
        result = run_lint(source, _rtllm_top(path, source), limits=LINT_LIMITS)
        if not result.ok:
            failures[path.name] = result.log
    # RTLLM's pe re-declares an ANSI output port as a reg: illegal in IEEE 1800 but accepted by
    # Icarus and Yosys, so lint reports it as a warning (ANSIREDECL) rather than failing it.
    assert failures == {}, failures


def test_ansi_port_redeclaration_is_a_warning_but_other_duplicates_fail():
    redeclared = "module m(input a, output [3:0] q);\n  reg [3:0] q;\n  always @* q = {4{a}};\nendmodule\n"
    result = run_lint(redeclared, "m", limits=LINT_LIMITS)
    assert result.ok and any(m.code == "ANSIREDECL" for m in result.messages)
    twice = "module m(input a, output b);\n  integer i;\n  integer i;\n  assign b = a;\nendmodule\n"
    result = run_lint(twice, "m", limits=LINT_LIMITS)
    assert not result.ok and "Duplicate declaration" in result.log
