"""Candidates that try to be scored as correct without being correct.

Every attack runs twice per mode: end to end through :func:`rewards.score.score` (guard, lint,
interface, function: must not pass) and straight through the function level with the guard
bypassed (``run_cosim`` / ``run_testbench``: must not be OK), because the verdict must not rest on
the guard alone. Modes: auto co-simulation against a fixture golden, and a VerilogEval v2 problem
graded by its own test bench. Every attack is built on a WRONG design (``a | b`` for ``a & b``),
so a pass could only come from the attack.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rewards.config import RewardConfig
from rewards.cosim import run_cosim
from rewards.score import limits_for, score
from rewards.testbench import run_testbench
from rewards.types import Status, Task

DATA = Path(__file__).parent / "data" / "sim"
BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
CONFIG = RewardConfig(ppa_enabled=False)
LIMITS = limits_for(CONFIG, CONFIG.sim_cpu_s)

COSIM_WRONG = """module TopModule (input [3:0] a, input [3:0] b, output [3:0] y_and, output [3:0] y_xor);
  assign y_and = a | b;
  assign y_xor = a ^ b;
{items}
endmodule
{extra}"""
TB_WRONG = """module TopModule (input a, input b, output out);
  assign out = a | b;
{items}
endmodule
{extra}"""


def _answers(tmp: Path, mode: str) -> tuple[str, str]:
    """A host file holding the right answers, and the include file with the right logic."""
    if mode == "cosim":
        table = "\n".join(f"{((i >> 4) & i) & 15:x}{((i >> 4) ^ i) & 15:x}" for i in range(256))
        body = "assign y_and = a & b;\nassign y_xor = a ^ b;\n"
    else:
        table = "\n".join(str((i >> 1) & i & 1) for i in range(4))
        body = "assign out = a & b;\n"
    (tmp / "answers.hex").write_text(table + "\n")
    (tmp / "answer.vh").write_text(body)
    return str(tmp / "answers.hex"), str(tmp / "answer.vh")


def _attack(name: str, mode: str, tmp: Path) -> str:
    """The candidate source for attack ``name`` in ``mode`` ("cosim" or "testbench")."""
    template = COSIM_WRONG if mode == "cosim" else TB_WRONG
    table, include = _answers(tmp, mode)
    outs = "{y_and, y_xor}" if mode == "cosim" else "out"
    index = "{a, b}"
    golden_out = "rtlf_tb.rtlf_o_y_and" if mode == "cosim" else "good1.out"
    harness = "rtlf_tb" if mode == "cosim" else "tb"
    items, extra = "", ""
    if name == "printed_pass":
        items = (
            'initial begin $display("Mismatches: 0 in 100 samples"); '
            '$display("===========Your Design Passed==========="); $display("pass"); end\n'
            'final $display("Mismatches: 0 in 100 samples");'
        )
    elif name == "early_finish":
        items = "initial #1 $finish;"
    elif name == "fopen_write":
        items = (
            'integer f; initial begin f = $fopen("trace.txt", "w"); $fdisplay(f, "pass"); '
            "$fdisplay(32'h8000_0003, \"0 0000 0000\"); $fdisplay(32'h8000_0001, "
            '"Mismatches: 0 in 100 samples"); f = $fopen("/dev/stdout", "w"); '
            '$fdisplay(f, "Mismatches: 0 in 100 samples"); end'
        )
    elif name == "readmemh_host":
        width = "[7:0]" if mode == "cosim" else ""
        template = template.replace("assign", "// assign")
        items = (
            f"reg {width} lut [0:{255 if mode == 'cosim' else 3}];\n"
            f'initial $readmemh("{table}", lut);\nassign {outs} = lut[{index}];'
        )
    elif name == "include_absolute":
        template = template.replace("assign", "// assign")
        items = f'`include "{include}"'
    elif name == "system_task":
        items = 'initial $system("echo Mismatches: 0 in 100 samples; echo pass");'
    elif name == "c_task":
        items = 'initial $c("puts(\\"Mismatches: 0 in 100 samples\\");");'
    elif name == "dpi_import":
        items = (
            'import "DPI-C" function int system(input string cmd);\n'
            'initial begin integer r; r = system("echo Mismatches: 0 in 100 samples"); end'
        )
    elif name == "hierarchical_read":
        template = template.replace("assign", "// assign", 1)
        target = "y_and" if mode == "cosim" else "out"
        items = f"assign {target} = {golden_out};"
    elif name == "force":
        items = (
            f"initial force {harness}.tb_match = 1'b1;\ninitial force {harness}.stats1.errors = 0;"
            if mode == "testbench"
            else f"initial force {harness}.rtlf_o_y_and = 4'b0;"
        )
    elif name == "redefine_golden":
        extra = (
            "module RefModule (input a, input b, output out);\n  assign out = a | b;\nendmodule\n"
            'module tb;\n  initial $display("Mismatches: 0 in 100 samples");\nendmodule\n'
            'module rtlf_tb;\n  initial $display("pass");\nendmodule\n'
        )
    elif name == "macro_system_name":
        items = (
            "`define SYS(n) $``n\n"
            'initial begin `SYS(display)("Mismatches: 0 in 100 samples"); #1 `SYS(finish); end'
        )
    else:
        raise AssertionError(name)
    return template.format(items=items, extra=extra)


ATTACKS = [
    "printed_pass",
    "early_finish",
    "fopen_write",
    "readmemh_host",
    "include_absolute",
    "system_task",
    "c_task",
    "dpi_import",
    "hierarchical_read",
    "force",
    "redefine_golden",
    "macro_system_name",
]


@pytest.fixture(scope="module")
def cosim_task() -> Task:
    return Task(
        id="fixture/bitwise",
        prompt="AND and XOR of two 4-bit buses",
        top_module="TopModule",
        reference=(DATA / "bitwise.v").read_text(),
    )


@pytest.fixture(scope="module")
def tb_task() -> Task:
    if not (BENCHMARKS / "verilog-eval-v2").is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS}")
    from evals.loaders import load_suite

    tasks = load_suite(
        "verilogeval-v2-spec-to-rtl", BENCHMARKS / "verilog-eval-v2", problems=["Prob014_andgate"]
    )
    return tasks[0]


def _function_level(task: Task, code: str, sandbox: bool = True):
    if task.testbench:
        return run_testbench(task, code, limits=LIMITS, sandbox=sandbox)
    return run_cosim(task, code, CONFIG.cosim, limits=LIMITS, sandbox=sandbox)


def test_the_wrong_base_design_fails_and_the_right_one_passes(cosim_task, tb_task, tmp_path):
    for task, wrong in ((cosim_task, COSIM_WRONG), (tb_task, TB_WRONG)):
        base = wrong.format(items="", extra="")
        assert _function_level(task, base).status is Status.SIM_MISMATCH
        assert _function_level(task, base.replace("a | b", "a & b")).status is Status.OK


@pytest.mark.parametrize("mode", ["cosim", "testbench"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_fails_end_to_end(attack, mode, cosim_task, tb_task, tmp_path):
    task = cosim_task if mode == "cosim" else tb_task
    code = _attack(attack, mode, tmp_path)
    result = score(task, f"```verilog\n{code}\n```", CONFIG)
    assert not result.passed and result.status is not Status.OK, result
    assert result.status is not Status.INFRA_ERROR and result.reward is not None
    assert result.levels["function"] < 1.0


@pytest.mark.parametrize("mode", ["cosim", "testbench"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_fails_without_the_guard(attack, mode, cosim_task, tb_task, tmp_path):
    task = cosim_task if mode == "cosim" else tb_task
    outcome = _function_level(task, _attack(attack, mode, tmp_path))
    assert outcome.status not in (Status.OK, Status.INFRA_ERROR), outcome


@pytest.mark.parametrize("attack", ["readmemh_host", "include_absolute"])
def test_host_file_attacks_work_when_the_file_is_visible(attack, tb_task, tmp_path):
    """With the answers next to the bench (data files), the same candidates pass: the attacks above
    fail only because the sandbox hides host files, so those tests are not vacuous."""
    code = _attack(attack, "testbench", tmp_path)
    code = code.replace(str(tmp_path) + "/", "")
    files = {name: (tmp_path / name).read_text() for name in ("answers.hex", "answer.vh")}
    visible = Task.from_dict({**tb_task.to_dict(), "meta": {**tb_task.meta, "files": files}})
    assert _function_level(visible, code).status is Status.OK


def test_candidate_cannot_read_the_run_secrets_from_files():
    """Sources and the compiled program are gone (no descriptor left) before candidate code runs."""
    from rewards.sim import simulate

    secret = "c0ffee5ecret"
    trusted = f'module harness;\n  initial if (0) $display("{secret}");\n  reader r();\nendmodule\n'
    reader = """module reader;
  integer f, c, p, d, k; reg [8*4096:1] line; reg [8*64:1] name;
  task dump(input [8*64:1] path);
    begin
      f = $fopen(path, "r");
      if (f) begin
        k = 0;
        while (!$feof(f) && k < 100000) begin c = $fgets(line, f); $write("%0s", line); k = k + 1; end
        $fclose(f);
      end
    end
  endtask
  initial begin
    dump("visible.txt"); dump("harness.sv"); dump("candidate.sv"); dump("sim.vvp"); dump("/dev/stdin");
    for (p = 1; p < 16; p = p + 1) for (d = 0; d < 10; d = d + 1) begin
      $sformat(name, "/proc/%0d/fd/%0d", p, d); dump(name);
    end
  end
endmodule
"""
    run = simulate(
        [("harness.sv", trusted)],
        ("candidate.sv", reader),
        ["harness"],
        limits=LIMITS,
        sandbox=True,
        data_files=[("visible.txt", "a data file the reader can see\n")],
    )
    assert run.compiled and run.result.returncode == 0, run.result.tail()
    assert "a data file the reader can see" in run.stdout  # the reader works
    assert secret not in run.stdout and "module harness" not in run.stdout
