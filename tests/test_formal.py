"""The formal level with the real tools: proofs, confirmed counterexamples, unknowns, infrastructure."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from rewards import formal, score
from rewards.config import RewardConfig
from rewards.sandbox import Limits
from rewards.types import Status, Task

LIMITS = Limits(cpu_s=10, wall_s=60)


def _task(reference: str, **meta) -> Task:
    return Task(id="formal/t", prompt="p", top_module="TopModule", reference=reference, meta=meta)


def _check(reference: str, code: str, cpu_s: float = 8.0, soak: int = 0) -> formal.FormalResult:
    return formal.check_equivalence(
        _task(reference), code, cpu_s=cpu_s, depth=20, soak_cycles=soak, reset_cycles=2, limits=LIMITS
    )


# --- proofs ------------------------------------------------------------------------------------

DETECT_BINARY = """module TopModule(input clk, input reset, input x, output z);
  reg [1:0] s;  // Moore detector of 1,0,1 (overlapping)
  always @(posedge clk)
    if (reset) s <= 0;
    else case (s)
      2'd0: s <= x ? 2'd1 : 2'd0;
      2'd1: s <= x ? 2'd1 : 2'd2;
      2'd2: s <= x ? 2'd3 : 2'd0;
      default: s <= x ? 2'd1 : 2'd2;
    endcase
  assign z = s == 2'd3;
endmodule"""

DETECT_ONEHOT = """module TopModule(input clk, input reset, input x, output z);
  reg [3:0] h;
  wire [3:0] n;
  assign n[0] = ~x & (h[0] | h[2]);
  assign n[1] = x & (h[0] | h[1] | h[3]);
  assign n[2] = ~x & (h[1] | h[3]);
  assign n[3] = x & h[2];
  always @(posedge clk) h <= reset ? 4'b0001 : n;
  assign z = h[3];
  reg [7:0] unused;  // extra logic that drives nothing
  always @(posedge clk) unused <= unused + {7'd0, x};
endmodule"""

PIPE_GOLDEN = """module TopModule(input clk, input [3:0] a, input [3:0] b, output reg [4:0] y);
  always @(posedge clk) y <= a + b;
endmodule"""

PIPE_RETIMED = """module TopModule(input clk, input [3:0] a, input [3:0] b, output [4:0] y);
  reg [3:0] ra, rb;
  always @(posedge clk) begin ra <= a; rb <= b; end
  assign y = {1'b0, rb} + {1'b0, ra};
endmodule"""


def test_other_state_encoding_and_unused_logic_are_proved():
    found = _check(DETECT_BINARY, DETECT_ONEHOT)
    assert found.verdict == "proved", found
    assert found.metrics()["formal"] == "proved"


def test_retimed_expression_is_proved():
    assert _check(PIPE_GOLDEN, PIPE_RETIMED).verdict == "proved"


def test_golden_is_proved_against_itself():
    assert _check(DETECT_BINARY, DETECT_BINARY).verdict == "proved"


# --- counterexamples (each replayed in Icarus) -------------------------------------------------

XOR_GOLDEN = """module TopModule(input [31:0] a, input [31:0] b, output [31:0] y, output z);
  assign y = a ^ b;
  assign z = a[3];
endmodule"""


def _refuted(found: formal.FormalResult) -> None:
    assert found.verdict == "counterexample", found
    assert found.replay is not None and found.replay.status is Status.SIM_MISMATCH
    assert "expected" in found.log and "got" in found.log


def test_bug_on_one_wide_value_is_refuted():
    bad = XOR_GOLDEN.replace("a ^ b;", "(a == 32'hdeadbeef) ? 32'd0 : a ^ b;")
    found = _check(XOR_GOLDEN, bad)
    _refuted(found)
    assert "a=0xdeadbeef" in found.log


def test_x_output_for_one_input_is_refuted():
    bad = XOR_GOLDEN.replace("assign z = a[3];", "assign z = (b == 32'h12345) ? 1'bx : a[3];")
    found = _check(XOR_GOLDEN, bad)
    _refuted(found)
    assert "got x" in found.log


COUNTER = """module TopModule(input clk, input reset, input en, output reg [{w}:0] q);
  always @(posedge clk) if (reset) q <= 0; else if (en) q <= q + 1'b1;
endmodule"""


def test_wrap_around_bug_is_refuted():
    golden = COUNTER.format(w=7)
    bad = golden.replace("q <= q + 1'b1;", "q <= (q == 8'hff) ? 8'd1 : q + 1'b1;")
    _refuted(_check(golden, bad, cpu_s=4.0, soak=2000))


def test_late_cycle_bug_is_refuted():
    golden = """module TopModule(input clk, input reset, input x, output y);
  reg [11:0] t;
  always @(posedge clk) t <= reset ? 12'd0 : (t == 12'hfff ? t : t + 1'b1);
  assign y = x;
endmodule"""
    bad = golden.replace("assign y = x;", "assign y = (t == 12'd3000) ? ~x : x;")
    found = _check(golden, bad, cpu_s=4.0, soak=5000)
    _refuted(found)
    assert found.replay.matched >= 3000


def test_long_sequence_fsm_bug_is_refuted():
    golden = """module TopModule(input clk, input reset, input x, output z);
  reg [3:0] run;  // z after nine ones in a row
  always @(posedge clk) run <= reset | ~x ? 4'd0 : (run == 4'd15 ? run : run + 1'b1);
  assign z = run >= 4'd9;
endmodule"""
    bad = golden.replace("run == 4'd15 ? run", "run == 4'd15 ? 4'd0")
    found = _check(golden, bad)
    _refuted(found)
    assert found.depth >= 16


def test_state_a_second_reset_does_not_clear_is_refuted():
    golden = COUNTER.format(w=3)
    bad = """module TopModule(input clk, input reset, input en, output reg [3:0] q);
  reg seen = 1'b0;
  always @(posedge clk)
    if (reset) begin seen <= 1'b1; if (!seen) q <= 0; end
    else if (en) q <= q + 1'b1;
endmodule"""
    _refuted(_check(golden, bad))


# --- unknown and infrastructure ----------------------------------------------------------------


def test_latch_is_unknown_with_a_reason():
    clocked = """module TopModule(input clk, input en, input d, output q);
  reg l;
  always @* if (en) l = d;
  assign q = l & en;
endmodule"""
    golden = "module TopModule(input clk, input en, input d, output q); assign q = en & d; endmodule"
    found = _check(golden, clocked)
    assert found.verdict == "unknown" and "latch" in found.reason


def test_timeout_is_unknown_never_a_failure():
    golden = """module TopModule(input [15:0] a, input [15:0] b, output [31:0] p);
  assign p = a * b;
endmodule"""
    shift_add = """module TopModule(input [15:0] a, input [15:0] b, output reg [31:0] p);
  integer i;
  always @* begin
    p = 0;
    for (i = 0; i < 16; i = i + 1) if (b[15 - i]) p = p + ({16'd0, a} << (15 - i));
  end
endmodule"""
    found = _check(golden, shift_add, cpu_s=1.0)
    assert found.verdict in ("unknown", "proved"), found
    if found.verdict == "unknown":
        assert "time" in found.reason


def test_a_crashing_formal_tool_is_infra(monkeypatch):
    # under /tmp, not tmp_path: the sandbox's unprivileged uid must reach the fake tool's prefix
    prefix = Path(tempfile.mkdtemp(prefix="rtlf-fake-abc-", dir="/tmp"))
    prefix.chmod(0o755)
    fake = prefix / "bin" / "yosys-abc"
    fake.parent.mkdir(mode=0o755)
    fake.write_text("#!/bin/sh\nkill -SEGV $$\n")
    fake.chmod(0o755)
    monkeypatch.setenv("YOSYS_ABC", str(fake))
    golden = COUNTER.format(w=7)
    bad = golden.replace("q <= q + 1'b1;", "q <= (q == 8'hf0) ? 8'd1 : q + 1'b1;")
    try:
        found = _check(golden, bad, cpu_s=2.0)
    finally:
        shutil.rmtree(prefix)
    assert found.verdict == "infra", found
    assert found.metrics()["formal"].startswith("unknown: ")


def test_no_reference_is_unknown():
    task = Task(id="t", prompt="p", top_module="TopModule", reference=" ")
    found = formal.check_equivalence(task, "", cpu_s=1, depth=1, soak_cycles=0, reset_cycles=2, limits=LIMITS)
    assert found.label == "unknown: no reference"


# --- in the reward ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["confirm", "off"])
def test_a_cosim_pass_that_formal_refutes_fails_only_when_confirming(mode):
    task = _task(XOR_GOLDEN)
    bad = XOR_GOLDEN.replace("a ^ b;", "(a == 32'hdeadbeef) ? 32'd0 : a ^ b;")
    config = RewardConfig(ppa_enabled=False, formal=mode)
    result = score.score(task, f"```verilog\n{bad}\n```", config)
    if mode == "confirm":
        assert result.status is Status.SIM_MISMATCH and not result.passed
        assert result.metrics["formal"] == "counterexample"
        assert 0 < result.reward < score.score(task, XOR_GOLDEN, config).reward
    else:
        assert result.status is Status.OK and "formal" not in result.metrics


def test_bug_past_the_bounded_depth_is_found_by_pdr_and_replayed():
    golden = COUNTER.format(w=7)
    bad = golden.replace("q <= q + 1'b1;", "q <= (q == 8'd40) ? 8'd0 : q + 1'b1;")
    found = _check(golden, bad, cpu_s=8.0)
    _refuted(found)
    assert found.engine == "pdr" and found.depth > 20
