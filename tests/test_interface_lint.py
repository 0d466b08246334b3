"""Interface level (pyslang port lists vs the golden) and syntax level (Verilator lint)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.interface import InterfaceError, check_interface, parse_ports
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
        ("a", "input", 5), ("b", "output", 1), ("c", "output", 8)]


def test_parse_ports_picks_the_named_module_among_several():
    code = "module helper(input x, output y); assign y = x; endmodule\n" \
           "module TopModule(input [2:0] i, output o); helper h(.x(i[0]), .y(o)); endmodule\n"
    assert [p.name for p in parse_ports(code, "TopModule")] == ["i", "o"]
    assert [p.name for p in parse_ports(code, "helper")] == ["x", "y"]


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
    code = "module TopModule #(parameter N = 4) (input clk, input [2*N-1:0] a, input [7:0] b, " \
           "output reg [2*N:0] sum); endmodule"
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
    code = "module TopModule(input clk, input rst, input [7:0] a, input [7:0] b, output [8:0] sum);" \
           " endmodule"
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
