"""Two verdicts per sample: official (the benchmark's bench) and strict (also against the reference).

The weak-bench case of the issue is rebuilt here as a small RTLLM-style task (its bench checks
``!A_greater``, and ``!z`` is ``x``, which an ``if`` treats as false), so it runs without RTLLM v2.
Probes over every problem of every shipped suite are marked ``slow``; a subset runs always.
"""

import json
from pathlib import Path

import pytest

from evals.__main__ import main as evals_main
from evals.goldens import PROBES, check_goldens, probe_modules
from evals.loaders import load_suite
from evals.report import render_markdown
from evals.run import GradedSample, Sample, grade_samples, summarize
from evals.strict import BASIS_OFFICIAL, StrictVerdict, _verdict, official_passed
from rewards.config import RewardConfig
from rewards.types import RewardResult, Status, Task

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
CONFIG = RewardConfig(ppa_enabled=False)
SUITES = [
    "verilogeval-v1-human",
    "verilogeval-v1-machine",
    "verilogeval-v2-spec-to-rtl",
    "verilogeval-v2-code-complete-iccad2023",
    "rtllm-v1.1",
]

COMPARATOR = """module comparator_3bit(input [2:0] A, input [2:0] B,
                       output A_greater, output A_equal, output A_less);
  assign A_greater = A > B;
  assign A_equal = A == B;
  assign A_less = A < B;
endmodule
"""

WEAK_BENCH = """`timescale 1ns/1ps
module testbench;
  reg [2:0] A, B;
  wire g, e, l;
  integer errors = 0;
  comparator_3bit uut(.A(A), .B(B), .A_greater(g), .A_equal(e), .A_less(l));
  initial begin
    A = 3'd5; B = 3'd1; #10; if (!g) errors = errors + 1;
    A = 3'd1; B = 3'd6; #10; if (!l) errors = errors + 1;
    A = 3'd2; B = 3'd2; #10; if (!e) errors = errors + 1;
    if (errors == 0) $display("===========Your Design Passed===========");
    else $display("===========Test completed with %d failures===========", errors);
    $finish;
  end
endmodule
"""


def weak_task() -> Task:
    return Task(
        id="rtllm-v2/comparator_3bit",
        prompt="Compare two 3-bit numbers.",
        top_module="comparator_3bit",
        reference=COMPARATOR,
        testbench=WEAK_BENCH,
        meta={"suite": "rtllm-v2", "problem": "comparator_3bit", "pass_rule": "rtllm", "files": {}},
    )


def fenced(code: str) -> str:
    return f"```verilog\n{code}\n```\n"


UNDRIVEN = (
    "module comparator_3bit(input [2:0] A, input [2:0] B, output A_greater, output A_equal, output A_less);\n"
    "endmodule"
)


def test_weak_bench_passes_official_and_fails_strict():
    task = weak_task()
    golden, undriven, half = grade_samples(
        [
            Sample(task, 0, fenced(COMPARATOR)),
            Sample(task, 1, fenced(UNDRIVEN)),
            # drives one output right and leaves the others undriven
            Sample(task, 2, fenced(UNDRIVEN.replace("endmodule", "  assign A_greater = A > B;\nendmodule"))),
        ],
        CONFIG,
    )
    assert golden.passed_official and golden.passed
    for g in (undriven, half):
        assert g.passed_official and not g.passed, g.to_record()
        record = g.to_record()
        assert record["passed_official"] is True and record["passed"] is False
        assert record["strict"]["basis"] == "reference" and record["strict"]["checked"]
        assert "co-simulation against the reference" in record["strict"]["log"]


def test_official_failures_are_strict_failures_without_a_second_run():
    task = weak_task()
    wrong = COMPARATOR.replace("A > B", "A < B")
    (g,) = grade_samples([Sample(task, 0, fenced(wrong))], CONFIG)
    assert not g.passed_official and not g.passed
    assert g.strict == StrictVerdict(False) and not g.strict.checked


def test_official_verdict_ignores_testbench_cosim_setting():
    # the caller's config may co-simulate benches (the reward default); the official verdict must not
    (g,) = grade_samples([Sample(weak_task(), 0, fenced(UNDRIVEN))], RewardConfig(ppa_enabled=False))
    assert g.result.passed and g.passed_official and not g.passed


def _result(status=Status.OK, **metrics) -> RewardResult:
    return RewardResult(task_id="s/p", status=status, passed=status is Status.OK, metrics=metrics)


def test_formal_counterexample_is_an_official_pass_and_a_strict_fail():
    refuted = _result(Status.SIM_MISMATCH, formal="counterexample")
    assert official_passed(refuted)
    verdict = _verdict(refuted, _result())
    assert not verdict.passed and "formal" in verdict.log
    verdict = _verdict(_result(), _result(Status.SIM_MISMATCH, formal="counterexample"))
    assert not verdict.passed
    assert _verdict(_result(formal="proved"), _result(formal="bounded:20")).passed
    assert _verdict(_result(formal="unknown"), _result(formal="unknown")).passed


def test_unusable_reference_falls_back_to_the_official_verdict_marked():
    verdict = _verdict(_result(), RewardResult.infra_error("s/p", "golden design unusable"))
    assert verdict.passed and verdict.basis == BASIS_OFFICIAL and "no usable reference" in verdict.log


def test_a_formal_tool_failure_keeps_the_cosimulation_verdict():
    verdict = _verdict(_result(), RewardResult.infra_error("s/p", "formal level: yosys crashed"))
    assert verdict.passed and verdict.basis == "reference"


def test_strict_runs_the_formal_level_and_official_does_not():
    task = weak_task()
    (g,) = grade_samples([Sample(task, 0, fenced(COMPARATOR))], RewardConfig(ppa_enabled=False))
    assert "formal" not in g.result.metrics and g.passed_official and g.passed
    assert g.strict.formal == "proved" and g.to_record()["strict"]["formal"] == "proved"


def _graded(task: Task, index: int, official: bool, strict: bool) -> GradedSample:
    result = _result(Status.OK if official else Status.SIM_MISMATCH)
    return GradedSample(Sample(task, index, ""), result, strict=StrictVerdict(strict, checked=official))


def _tasks(n: int) -> list[Task]:
    return [Task(id=f"s/p{i}", prompt="p", top_module="t", reference="r") for i in range(n)]


def test_summary_reports_both_verdicts_and_where_they_differ():
    tasks = _tasks(2)
    graded = [
        _graded(tasks[0], 0, True, True),
        _graded(tasks[0], 1, True, False),
        _graded(tasks[1], 0, True, False),
        _graded(tasks[1], 1, False, False),
    ]
    s = summarize(graded, tasks, ks=(1, 2))["s"]
    assert s["pass_at_k"]["1"] == pytest.approx((0.5 + 0.0) / 2)
    assert s["official"]["pass_at_k"]["1"] == pytest.approx((1.0 + 0.5) / 2)
    assert s["official"]["pass_at_k"]["2"] == pytest.approx(1.0)
    assert list(s["verdicts_differ"]) == ["s/p0", "s/p1"]
    assert [d["sample_index"] for d in s["verdicts_differ"]["s/p0"]] == [1]
    assert s["per_problem"]["s/p1"] == {"n": 2, "c": 0, "c_official": 1}
    assert s["coverage"] == "2 of 2 problems sampled" and s["unsampled"] == []


def test_report_counts_how_the_formal_level_judged_the_strict_passes():
    tasks = _tasks(1)
    formals = ["proved", "bounded:20", "unknown: timeout", None, "proved"]
    graded = []
    for index, formal in enumerate(formals):
        verdict = StrictVerdict(True, checked=True, formal=formal)
        graded.append(GradedSample(Sample(tasks[0], index, ""), _result(Status.OK), strict=verdict))
    graded.append(_graded(tasks[0], 9, False, False))  # a failure is not counted
    s = summarize(graded, tasks, ks=(1,))["s"]
    assert s["formal"] == {"proved": 2, "bounded": 1, "unknown": 1, "not_run": 1}
    report = render_markdown({"suites": {"s": s}})
    assert "formally equivalent" in report and "| 2 / 1 / 1 / 1 |" in report


def test_unsampled_problems_count_as_unsolved_unless_the_run_was_limited():
    tasks = _tasks(4)
    graded = [_graded(tasks[0], 0, True, True), _graded(tasks[0], 1, False, False)]
    s = summarize(graded, tasks, ks=(1,), suite_sizes={"s": 4})["s"]
    assert s["coverage"] == "1 of 4 problems sampled"
    assert s["unsampled"] == ["s/p1", "s/p2", "s/p3"]
    assert s["pass_at_k"]["1"] == pytest.approx(0.5 / 4)
    assert s["official"]["pass_at_k"]["1"] == pytest.approx(0.5 / 4)
    limited = summarize(graded, tasks[:1], ks=(1,), suite_sizes={"s": 4}, limited=True)["s"]
    assert limited["coverage"] == "1 of 4 problems sampled" and limited["unsampled"] == []
    assert limited["pass_at_k"]["1"] == pytest.approx(0.5)


def _run(tmp_path, records, *extra):
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "out"
    argv = ["run", "--suite", "rtllm-v1.1", "--data", str(BENCH), "--samples", str(samples)]
    rc = evals_main([*argv, "--out", str(out), "--no-ppa", "--jobs", "2", *extra])
    assert rc == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines], json.loads((out / "summary.json").read_text()), out


def test_samples_file_covering_few_problems_warns_and_counts_the_rest(tmp_path, caplog, capsys):
    (task,) = load_suite("rtllm-v1.1", BENCH, problems=["edge_detect"])
    zeros = probe_modules(task)["zeros"]
    records = [
        {"task_id": "edge_detect", "completion": fenced(task.reference)},
        {"task_id": "edge_detect", "completion": fenced(zeros)},
    ]
    samples, summary, out = _run(tmp_path, records)
    s = summary["suites"]["rtllm-v1.1"]
    size = len(load_suite("rtllm-v1.1", BENCH))
    assert s["coverage"] == f"1 of {size} problems sampled" and len(s["unsampled"]) == size - 1
    # edge_detect's bench accepts constant outputs: official 2/2, strict 1/2
    assert [(r["passed_official"], r["passed"]) for r in samples] == [(True, True), (True, False)]
    assert s["official"]["pass_at_k"]["1"] == pytest.approx(1.0 / size)
    assert s["pass_at_k"]["1"] == pytest.approx(0.5 / size)
    assert "no sample" in caplog.text and "counted as unsolved" in caplog.text
    assert f"1 of {size} problems sampled" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    assert f"1 of {size} problems sampled" in report and "`accu`" in report
    assert "rtllm-v1.1/edge_detect`: samples 1 pass official, fail strict" in report
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_limited_run_is_over_the_sampled_problems(tmp_path):
    (task,) = load_suite("rtllm-v1.1", BENCH, problems=["edge_detect"])
    records = [{"task_id": "edge_detect", "completion": fenced(task.reference)}]
    _, summary, out = _run(tmp_path, records, "--problems", "edge_detect", "--no-plot")
    s = summary["suites"]["rtllm-v1.1"]
    assert s["pass_at_k"]["1"] == 1.0 and s["official"]["pass_at_k"]["1"] == 1.0 and s["limited"]
    assert summary["selection"] == {"problems": "edge_detect", "limit": None, "limited": True}
    assert "limited on purpose (--problems edge_detect)" in (out / "report.md").read_text()


def test_probes_keep_the_reference_interface():
    (task,) = load_suite("rtllm-v1.1", BENCH, problems=["multi_pipe_4bit"])
    probes = probe_modules(task)
    assert set(probes) == set(PROBES)
    assert "parameter size = 4" in probes["zeros"] and "assign mul_out = '0;" in probes["zeros"]
    assert "always" not in probes["undriven"] and "Passed" in probes["printed_pass"]


def _assert_probe_findings(check: dict) -> None:
    for suite, s in check["suites"].items():
        assert not s["unexpected_golden_failures"], (suite, s["goldens_failing"])
        assert s["goldens_passed"] == s["goldens_passed_official"], (suite, s["goldens_failing"])
        assert not s["strict_accepts_probe"], (suite, s["strict_accepts_probe"])
        assert not s["probe_errors"], (suite, s["probe_errors"])


@pytest.mark.parametrize("suite", SUITES)
def test_probes_fail_strict_on_a_subset(suite):
    tasks = load_suite(suite, BENCH)
    step = max(1, len(tasks) // 4)
    _assert_probe_findings(check_goldens(tasks[::step][:4], CONFIG, jobs=2))


def test_weak_bench_is_found_by_the_golden_check():
    check = check_goldens([weak_task()], CONFIG, jobs=2)
    s = check["suites"]["rtllm-v2"]
    # it checks only that the right output is not 0, so all-ones passes it too
    assert s["weak_benches"] == {"comparator_3bit": ["undriven", "printed_pass", "ones"]}
    assert not s["strict_accepts_probe"] and s["goldens_passed"] == 1
