"""Tool discovery: real versions, env-var overrides, and a missing tool scored as INFRA_ERROR (never 0)."""

from __future__ import annotations

import os

import pytest

from rewards.config import RewardConfig
from rewards.score import score
from rewards.tools import IVERILOG, STA, TOOLS, VERILATOR, YOSYS, ToolNotFound, liberty_path, tool_versions
from rewards.types import Status, Task

ADDER = """module TopModule(input [3:0] a, input [3:0] b, output [4:0] s);
  assign s = a + b;
endmodule
"""
TASK = Task(id="tools/adder", prompt="Add two 4-bit numbers.", top_module="TopModule", reference=ADDER)
COMPLETION = f"```verilog\n{ADDER}```\n"
CONFIG = RewardConfig(seeds=[1], comb_vectors=32)


def test_tool_versions_are_real():
    versions = tool_versions()
    assert set(versions) == set(TOOLS)
    assert versions["verilator"].startswith("Verilator 5.")
    assert "Icarus Verilog" in versions["iverilog"]
    assert "Icarus Verilog" in versions["vvp"]
    assert versions["yosys"].startswith("Yosys 0.")
    assert versions["sta"][0].isdigit()
    assert "missing" not in versions.values()


def test_missing_tool_reported_as_missing(monkeypatch):
    monkeypatch.setenv("OPENSTA", "/nonexistent/sta")
    assert tool_versions()["sta"] == "missing"
    assert not STA.available()


@pytest.mark.parametrize("tool", [VERILATOR, IVERILOG, YOSYS])
def test_missing_binary_names_the_fix(tool, monkeypatch):
    monkeypatch.setenv(tool.env_var, "/nonexistent/bin/tool")
    with pytest.raises(ToolNotFound) as info:
        tool.binary()
    message = str(info.value)
    assert f"${tool.env_var}" in message and "install" in message


def test_env_override_points_at_another_binary(tmp_path, monkeypatch):
    link = tmp_path / "my-verilator"
    os.symlink(VERILATOR.binary(), link)
    monkeypatch.setenv("VERILATOR", str(link))
    assert VERILATOR.binary() == os.path.realpath(link)


def test_a_tool_installed_after_a_failed_lookup_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("IVERILOG", "rtlf-late-iverilog")
    with pytest.raises(ToolNotFound):
        IVERILOG.binary()
    late = tmp_path / "rtlf-late-iverilog"
    late.write_text("#!/bin/sh\n")
    late.chmod(0o755)
    assert IVERILOG.binary() == str(late)  # the miss was not remembered
    late.unlink()
    with pytest.raises(ToolNotFound):  # nor is a binary that has gone since
        IVERILOG.binary()
    late.write_text("#!/bin/sh\n")
    late.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolNotFound):  # the lookup follows $PATH
        IVERILOG.binary()


def test_correct_completion_scores_ok_with_versions():
    result = score(TASK, COMPLETION, CONFIG)
    assert result.status is Status.OK, result.log
    assert result.reward is not None and result.reward >= 1.3
    assert result.metrics["tools"] == tool_versions()
    assert result.metrics["area"] > 0 and result.levels["ppa"] == pytest.approx(0.5)


@pytest.mark.parametrize("env_var", ["VERILATOR", "IVERILOG", "YOSYS", "OPENSTA"])
def test_missing_tool_is_infra_error(env_var, monkeypatch):
    monkeypatch.setenv(env_var, f"/nonexistent/{env_var.lower()}")
    result = score(TASK, COMPLETION, CONFIG)
    assert result.status is Status.INFRA_ERROR
    assert result.reward is None
    assert not result.passed
    assert f"${env_var}" in result.log and "install" in result.log


def test_missing_liberty_is_infra_error(tmp_path, monkeypatch):
    monkeypatch.setenv("RTLFORGE_LIBERTY", str(tmp_path / "missing.lib"))
    with pytest.raises(ToolNotFound):
        liberty_path()
    result = score(TASK, COMPLETION, CONFIG)
    assert result.status is Status.INFRA_ERROR and result.reward is None
    assert "RTLFORGE_LIBERTY" in result.log
