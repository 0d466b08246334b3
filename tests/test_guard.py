"""Guard: static rejection of candidates that try to decide their own verdict (one attack per test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.guard import check_candidate, reserved_names
from rewards.sandbox import Job, Limits, run_job
from rewards.tools import IVERILOG
from rewards.types import Task

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"

TESTBENCH = """
module stimulus_gen(output reg a); initial a = 0; endmodule
module tb;
  reg a; wire y_ref, y_dut;
  RefModule ref_i(.a(a), .y(y_ref));
  TopModule top_module1(.a(a), .y(y_dut));
endmodule
module RefModule(input a, output y); assign y = ~a; endmodule
"""
TASK = Task(
    id="t/inv",
    prompt="invert",
    top_module="TopModule",
    reference="module TopModule(input a, output y); inv_cell c(a, y); endmodule\n"
    "module inv_cell(input a, output y); assign y = ~a; endmodule",
    testbench=TESTBENCH,
)
RESERVED = reserved_names(TASK)

CLEAN = """
`timescale 1ns/1ps
`define W 8
module helper(input [`W-1:0] a, output [`W-1:0] y);
  assign y = ~a;
endmodule
module TopModule #(parameter N = 4) (
  input clk, input rst, input [`W-1:0] a,
  output reg [`W-1:0] q, output [`W-1:0] n, output [1:0] st_out
);
  typedef enum logic [1:0] {IDLE, RUN} state_t;
  typedef struct packed { logic [3:0] hi; logic [3:0] lo; } pair_t;
  state_t st;
  pair_t p;
  helper u_h(.a(a), .y(n));
  wire [`W-1:0] tap = u_h.y;          // downward reference into its own instance
  function automatic [7:0] inc(input [7:0] v); inc = v + 1; endfunction
  task automatic note; $display("tick"); endtask
  genvar i;
  generate for (i = 0; i < 2; i = i + 1) begin : g
    wire w = a[i];
  end endgenerate
  wire gw = g[0].w;
  assign p = a;
  assign st_out = st;
  always @(posedge clk) begin : seq
    if (rst) begin q <= 0; st <= IDLE; end
    else begin q <= inc(a) + $signed(p.hi) + $clog2(N); st <= RUN; note; end
  end
  initial $display("Mismatches: 0 in 1 samples -- all tests passed");
endmodule
"""


def _violations(code: str) -> list[str]:
    return check_candidate(code, RESERVED)


def _rejects(code: str, fragment: str) -> None:
    found = _violations(code)
    assert any(fragment in v for v in found), f"expected a violation mentioning {fragment!r}, got {found}"


def test_reserved_names_cover_testbench_and_prefix():
    assert RESERVED == frozenset({"stimulus_gen", "tb", "RefModule", "rtlf_*"})
    with_helpers = reserved_names(TASK, include_reference_helpers=True)
    assert with_helpers == RESERVED | {"inv_cell"}
    no_bench = Task(id="t/x", prompt="p", top_module="TopModule", reference=TASK.reference)
    assert reserved_names(no_bench) == frozenset({"rtlf_*"})


def test_golden_helper_names_are_free_by_default():
    code = (
        "module inv_cell(input a, output y); assign y = ~a; endmodule\n"
        "module TopModule(input a, output y); inv_cell c(a, y); endmodule"
    )
    assert _violations(code) == []
    found = check_candidate(code, reserved_names(TASK, include_reference_helpers=True))
    assert any("inv_cell uses a name reserved" in v for v in found)


def test_clean_design_with_printed_pass_string_passes():
    assert _violations(CLEAN) == []


def test_finish():
    _rejects("module TopModule(input a, output y); assign y = a; initial $finish; endmodule", "$finish")


def test_stop_and_fatal():
    _rejects("module TopModule(input a); initial begin $stop; $fatal(1); end endmodule", "$stop")
    _rejects("module TopModule(input a); initial $fatal(1); endmodule", "$fatal")


def test_fopen_write():
    _rejects(
        "module TopModule(input a); integer f;\n"
        'initial begin f = $fopen("out.txt", "w"); $fdisplay(f, "Mismatches: 0"); end endmodule',
        "$fopen",
    )


def test_readmemh_of_host_file():
    _rejects(
        'module TopModule(input a); reg [7:0] m [0:3];\ninitial $readmemh("/etc/passwd", m); endmodule',
        "$readmemh",
    )


def test_include_of_host_file():
    _rejects('`include "/etc/passwd"\nmodule TopModule(input a); endmodule', "`include")


def test_system_call():
    _rejects('module TopModule(input a); initial $system("touch /tmp/pwned"); endmodule', "$system")


def test_verilator_c_escape():
    _rejects('module TopModule(input a); initial $c("exit(0);"); endmodule', "$c ")


def test_dpi_import():
    _rejects(
        'module TopModule(input a);\nimport "DPI-C" function int system(input string cmd);\n'
        'initial system("ls"); endmodule',
        "DPI import",
    )


def test_dump_tasks():
    _rejects('module TopModule(input a); initial begin $dumpfile("x.vcd"); $dumpvars; end endmodule', "$dump")


def test_plusargs():
    _rejects(
        'module TopModule(input a, output y);\nassign y = $test$plusargs("rtlf") ? a : ~a; endmodule',
        "$test$plusargs",
    )


def test_unknown_system_name_is_rejected_by_allow_list():
    _rejects("module TopModule(input a); initial $my_backdoor(1); endmodule", "$my_backdoor")


def test_hierarchical_reference_to_testbench_reference():
    _rejects("module TopModule(input a, output y); assign y = tb.ref_i.y; endmodule", "tb.ref_i.y")


def test_hierarchical_reference_into_refmodule():
    _rejects("module TopModule(input a, output y); assign y = RefModule.y; endmodule", "RefModule.y")


def test_upward_reference_through_a_fake_wrapper():
    code = (
        "module wrap; TopModule dut(); helper gold(); endmodule\n"
        "module helper(output y); assign y = 1; endmodule\n"
        "module TopModule(input a, output y); assign y = gold.y; endmodule"
    )
    _rejects(code, "gold.y")


def test_dotted_name_on_a_local_signal():
    _rejects("module TopModule(input a, output y); wire tb; assign y = tb.ref_i; endmodule", "tb.ref_i")


def test_root_and_unit_scopes():
    _rejects("module TopModule(input a, output y); assign y = $root.tb.ref_i.y; endmodule", "$root")
    _rejects("module TopModule(input a, output y); assign y = $unit::k; endmodule", "$unit")


def test_instantiating_the_golden():
    _rejects("module TopModule(input a, output y); RefModule r(.a(a), .y(y)); endmodule", "RefModule")


def test_calling_an_undeclared_task_that_the_harness_might_define():
    _rejects("module TopModule(input a); initial rtlf_pass; endmodule", "rtlf_pass")


def test_force():
    _rejects(
        "module TopModule(input a, output y); assign y = a; initial force tb.y_dut = 1; endmodule", "force"
    )


def test_procedural_assign_and_deassign():
    _rejects(
        "module TopModule(input a); reg r; initial begin assign r = 1; deassign r; end endmodule",
        "procedural assign",
    )


def test_defparam():
    _rejects(
        "module sub; parameter P = 0; endmodule\n"
        "module TopModule(input a); sub s(); defparam s.P = 1; endmodule",
        "defparam",
    )


def test_bind():
    _rejects("module spy; endmodule\nmodule TopModule(input a); endmodule\nbind TopModule spy s();", "bind")


def test_redefining_refmodule():
    _rejects(
        "module RefModule(input a, output y); assign y = 0; endmodule\n"
        "module TopModule(input a, output y); assign y = 0; endmodule",
        "RefModule uses a name reserved",
    )


def test_redefining_the_harness_module_even_escaped():
    _rejects(
        "module \\tb (input a); endmodule\nmodule TopModule(input a); endmodule", "tb uses a name reserved"
    )
    _rejects("module rtlf_harness; endmodule\nmodule TopModule(input a); endmodule", "rtlf_harness")


def test_redefining_a_testbench_module():
    _rejects("module stimulus_gen; endmodule\nmodule TopModule(input a); endmodule", "reserved")


def test_macro_token_pasting_builds_system_task():
    _rejects(
        '`define S(x) $sys``x\nmodule TopModule(input a); initial `S(tem)("ls"); endmodule', "token pasting"
    )
    _rejects("`define F $fin``ish\nmodule TopModule(input a); initial `F; endmodule", "token pasting")


def test_macro_glued_to_system_name():
    # Icarus' preprocessor emits text, so "$write`M" would be re-lexed as $writememh.
    _rejects(
        "`define M memh\nmodule TopModule(input a); reg [1:0] m [0:1];\n"
        'initial $write`M("f.hex", m); endmodule',
        "glued",
    )


def test_macro_holding_a_forbidden_task():
    _rejects("`define END $finish\nmodule TopModule(input a); initial `END; endmodule", "$finish")


def test_tool_specific_conditional_compilation():
    _rejects(
        "module TopModule(input a, output y);\n`ifdef VERILATOR\n assign y = a;\n`else\n"
        " assign y = ~a;\n`endif\nendmodule",
        "`ifdef VERILATOR",
    )


def test_own_macro_conditionals_are_fine():
    code = (
        "`define FAST\nmodule TopModule(input a, output y);\n`ifdef FAST\n assign y = a;\n`else\n"
        " assign y = ~a;\n`endif\nendmodule"
    )
    assert _violations(code) == []


def test_translate_off_pragma():
    _rejects(
        "module TopModule(input a, output y);\n// synopsys translate_off\nassign y = a;\n"
        "// synopsys translate_on\nendmodule",
        "translate_off",
    )


def test_attributes():
    _rejects("(* blackbox *)\nmodule TopModule(input a, output y); assign y = a; endmodule", "attribute")


def test_program_class_and_package():
    _rejects("program p; endprogram\nmodule TopModule(input a); endmodule", "program")
    _rejects("class C; endclass\nmodule TopModule(input a); endmodule", "class")
    _rejects("package pk; endpackage\nmodule TopModule(input a); endmodule", "package")


def test_forbidden_names_in_comments_strings_and_escaped_identifiers_are_harmless():
    code = (
        'module TopModule(input a, output y); // $finish $system\n/* `include "x" */\n'
        'wire \\$finish = a; initial $display("$fopen tb.ref_i"); assign y = \\$finish ; endmodule'
    )
    assert _violations(code) == []


def test_unparseable_code_is_still_scanned_at_token_level():
    assert _violations("module TopModule(input a, output y); assign y = a + ; endmodule") == []
    _rejects("module TopModule(input a, output y); assign y = a + ; initial $finish; endmodule", "$finish")
    _rejects("module TopModule(input a, output y); assign y = tb.ref_i.y + ; endmodule", "dotted")


@pytest.mark.parametrize("pattern", ["verilog-eval-v2/*/*_ref.sv", "rtllm-v1.1/**/verified_*.v"])
def test_benchmark_goldens_pass_the_guard(pattern):
    files = sorted(BENCH.glob(pattern))
    assert files, f"no goldens matched {pattern} under {BENCH}"
    failures = {}
    for path in files:
        found = check_candidate(path.read_text(errors="replace"), frozenset({"tb", "rtlf_*"}))
        if found:
            failures[path.name] = found
    assert failures == {}


def test_glued_macro_really_changes_what_icarus_compiles():
    """The reason for the glue rule, checked on the real tool: Icarus' preprocessor output turns
    ``$write`M`` into ``$writememh`` and ``$`F`` into ``$finish`` (pyslang sees other tokens)."""
    code = (
        "`define M memh\n`define F finish\nmodule TopModule(input a); reg [7:0] m [0:1];\n"
        'initial begin $write`M("out.hex", m); $`F; end\nendmodule\n'
    )
    job = Job(
        argv=(IVERILOG.binary(), "-g2012", "-E", "-o", "pre.v", "c.v"),
        files=(("c.v", code),),
        limits=Limits(cpu_s=10, wall_s=30),
        outputs=("pre.v",),
        ro_binds=IVERILOG.ro_binds(),
    )
    result = run_job(job)
    assert result.returncode == 0, result.tail()
    expanded = result.outputs["pre.v"].decode()
    assert "$writememh(" in expanded and "$finish;" in expanded
    found = _violations(code)
    assert sum("glued" in v for v in found) == 2, found


def test_defining_a_macro_named_like_a_directive():
    _rejects("`define include x\nmodule TopModule(input a); endmodule", "`define include")


def test_string_continued_over_a_newline_is_scanned_as_code():
    # Tools disagree on backslash-newline inside strings; the guard reads the rest as code.
    _rejects('module TopModule(input a);\ninitial $display("x\\\n $finish");\nendmodule', "$finish")


def test_unparseable_code_with_spaced_dotted_name():
    _rejects("module TopModule(input a, output y); assign y = tb . ref_i /* x */ . y + ; endmodule", "dotted")
    assert (
        _violations("module TopModule(input a, output y); sub s(.a(a), .y(y)); assign y = 1.5 + ; endmodule")
        == []
    )
