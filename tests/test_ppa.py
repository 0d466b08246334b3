"""PPA level with real Yosys + OpenSTA on the OSU 0.18 liberty."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rewards import ppa
from rewards.sandbox import Limits
from rewards.tools import ToolNotFound, liberty_path
from rewards.types import Task

LIMITS = Limits(cpu_s=30.0, wall_s=120.0)
BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "rtllm-v1.1"

ADDER = """
module TopModule(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);
  assign {cout, sum} = a + b + cin;
endmodule
"""

# Same ports, far more logic: a multiplier feeds the sum.
BIGGER = """
module TopModule(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);
  wire [15:0] p = a * b;
  assign {cout, sum} = p[8:0] + p[15:8] + cin;
endmodule
"""

COUNTER = """
module TopModule(input clk, input rst, output reg [7:0] q);
  always @(posedge clk) begin
    if (rst) q <= 8'd0;
    else q <= q + 8'd1;
  end
endmodule
"""

LATCH = """
module TopModule(input [7:0] a, input [7:0] b, input cin, output reg [7:0] sum, output reg cout);
  always @* if (cin) {cout, sum} = a + b;
endmodule
"""

UNSYNTHESIZABLE = """
module TopModule(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);
  real scale;
  always @* scale = 1.0;
  assign {cout, sum} = a + b + cin;
endmodule
"""


def _task(reference: str, **meta) -> Task:
    return Task(id="t/ppa", prompt="add", top_module="TopModule", reference=reference, meta=meta)


def _score(task: Task, code: str, metric: str = "area_delay", max_gain: float = 2.0):
    return ppa.score_ppa(
        task, code, metric=metric, max_gain=max_gain, synth_limits=LIMITS, sta_limits=LIMITS, sandbox=True
    )


def test_adder_area_delay_power_positive():
    synth = ppa.synthesize(ADDER, "TopModule", liberty=liberty_path(), limits=LIMITS)
    assert synth.ok, synth.error
    assert synth.area > 0 and synth.cells > 0
    assert "module TopModule" in synth.netlist
    sta = ppa.time_and_power(synth.netlist, "TopModule", None, liberty=liberty_path(), limits=LIMITS)
    assert sta.ok, sta.error
    assert 0 < sta.delay_ns < ppa.NOMINAL_PERIOD_NS
    assert sta.power_mw > 0


def test_counter_is_timed_on_its_clock():
    task = _task(COUNTER)
    assert ppa.clock_port_of(task) == "clk"
    synth = ppa.synthesize(COUNTER, "TopModule", liberty=liberty_path(), limits=LIMITS)
    assert synth.ok, synth.error
    assert "DFFPOSX1" in synth.netlist
    sta = ppa.time_and_power(synth.netlist, "TopModule", "clk", liberty=liberty_path(), limits=LIMITS)
    assert sta.ok and sta.clock == "clk"
    assert 0 < sta.delay_ns < ppa.NOMINAL_PERIOD_NS
    assert sta.power_mw > 0


def test_golden_against_itself_is_parity():
    level, metrics, note = _score(_task(ADDER), ADDER)
    assert note == ""
    assert level == pytest.approx(0.5)
    assert metrics["ppa_ratio"] == pytest.approx(1.0)
    assert metrics["area"] == metrics["golden_area"] > 0
    for key in ("delay_ns", "power_mw", "cells", "golden_delay_ns", "golden_power_mw"):
        assert metrics[key] > 0


def test_bigger_design_ranks_below_ripple_adder():
    worse, worse_metrics, _ = _score(_task(ADDER), BIGGER)
    better, better_metrics, _ = _score(_task(BIGGER), ADDER)
    assert worse_metrics["area"] > 2 * worse_metrics["golden_area"]
    assert 0.0 <= worse < 0.5 < better <= 1.0
    assert better_metrics["ppa_ratio"] < 1.0 < worse_metrics["ppa_ratio"]


@pytest.mark.parametrize("metric", ppa.METRICS)
def test_level_bounded_for_every_metric(metric):
    worse, _, _ = _score(_task(ADDER), BIGGER, metric=metric, max_gain=1.01)
    better, _, _ = _score(_task(BIGGER), ADDER, metric=metric, max_gain=1.01)
    assert worse == 0.0
    assert better == 1.0


def test_level_scale():
    assert ppa.level_from_ratio(1.0, 2.0) == 0.5
    assert ppa.level_from_ratio(0.5, 2.0) == 1.0
    assert ppa.level_from_ratio(2.0, 2.0) == 0.0
    assert ppa.level_from_ratio(1 / math.sqrt(2), 2.0) == pytest.approx(0.75)
    assert ppa.level_from_ratio(0.01, 2.0) == 1.0
    assert ppa.level_from_ratio(100.0, 2.0) == 0.0


def test_golden_figures_are_cached():
    task = _task(ADDER.replace("cin;", "cin; // cache probe"))
    misses = ppa.GOLDEN_CACHE.misses
    _score(task, ADDER)
    _score(task, BIGGER)
    assert ppa.GOLDEN_CACHE.misses == misses + 1


def test_unsynthesizable_candidate_gets_zero_with_note():
    level, metrics, note = _score(_task(ADDER), UNSYNTHESIZABLE)
    assert level == 0.0
    assert note.startswith("candidate PPA failed: yosys failed")
    assert "area" not in metrics and metrics["golden_area"] > 0


def test_latch_candidate_gets_zero():
    # The OSU latch cell has area 0: a latch design must not look free.
    level, _, note = _score(_task(ADDER), LATCH)
    assert level == 0.0
    assert "$_DLATCH_P_" in note


@pytest.mark.parametrize("attribute", ["blackbox", "keep_hierarchy"])
def test_black_boxed_submodule_gets_zero(attribute):
    # Icarus simulates the body; Yosys would give a black box (named like a cell, even) no area.
    code = f"""
(* {attribute} *) module INVX1(input [7:0] a, input [7:0] b, input cin, output [8:0] y);
  wire [15:0] p = a * b;
  assign y = p[8:0] + p[15:8] + cin;
endmodule
module TopModule(input [7:0] a, input [7:0] b, input cin, output [7:0] sum, output cout);
  INVX1 u(.a(a), .b(b), .cin(cin), .y({{cout, sum}}));
endmodule
"""
    level, metrics, note = _score(_task(BIGGER), code)
    assert level == 0.0 and "area" not in metrics
    assert note.startswith("candidate PPA failed")


def test_broken_golden_names_the_task():
    level, metrics, note = _score(_task(LATCH), ADDER)
    assert level == 0.0
    assert "golden PPA unavailable" in note and "t/ppa" in note
    assert metrics["area"] > 0


def test_yosys_cannot_read_host_files(tmp_path):
    secret = tmp_path / "secret.hex"
    secret.write_text("aa\nbb\ncc\ndd\n")
    code = f"""
module TopModule(input [1:0] a, output [7:0] y);
  reg [7:0] m [0:3];
  initial $readmemh("{secret}", m);
  assign y = m[a];
endmodule
"""
    synth = ppa.synthesize(code, "TopModule", liberty=liberty_path(), limits=LIMITS)
    assert not synth.ok
    assert "Can not open file" in synth.error


def test_missing_yosys_raises(monkeypatch):
    monkeypatch.setenv("YOSYS", "/nonexistent/yosys")
    with pytest.raises(ToolNotFound, match=r"\$YOSYS"):
        _score(_task(ADDER.replace("cin;", "cin; // no yosys")), ADDER)


def test_missing_liberty_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("RTLFORGE_LIBERTY", str(tmp_path / "none.lib"))
    with pytest.raises(ToolNotFound, match="RTLFORGE_LIBERTY"):
        _score(_task(ADDER), ADDER)


@pytest.mark.parametrize("design", ["adder_8bit", "counter_12", "multi_16bit"])
def test_rtllm_goldens_are_sane(design):
    path = BENCH / design / f"verified_{design}.v"
    task = Task(id=f"rtllm/{design}", prompt="-", top_module=f"verified_{design}", reference=path.read_text())
    level, metrics, note = _score(task, task.reference)
    assert note == "" and level == pytest.approx(0.5)
    assert 100 < metrics["area"] < 100_000
    assert 0.1 < metrics["delay_ns"] < ppa.NOMINAL_PERIOD_NS
    assert 0 < metrics["power_mw"] < 100


def test_wiring_only_design_has_zero_cost_instead_of_an_error():
    wiring = "module top_module(input [3:0] a, output [3:0] y);\n  assign y = {a[0], a[1], a[2], a[3]};\nendmodule\n"
    task = Task(id="ppa/wiring", prompt="reverse the bits", top_module="top_module", reference=wiring)
    level, metrics, note = ppa.score_ppa(
        task,
        wiring,
        metric="area_delay",
        max_gain=2.0,
        synth_limits=Limits(cpu_s=30, wall_s=120),
        sta_limits=Limits(cpu_s=20, wall_s=80),
    )
    assert level == 0.5 and note == ""
    assert metrics["cells"] == 0 and metrics["area"] == 0.0 and metrics["delay_ns"] == 0.0
