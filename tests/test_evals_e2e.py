"""``python -m evals run`` end to end: graded golden samples (with errata and PPA), and tiny checkpoints."""

import json
from pathlib import Path

import pytest

from evals.__main__ import main as evals_main
from evals.loaders import load_suite

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
RTLLM_PROBLEMS = ["accu", "adder_8bit", "div_16bit"]  # div_16bit is an erratum
V2_PROBLEMS = ["Prob001_zero", "Prob009_popcount3", "Prob014_andgate"]


def _read(out: Path):
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    return samples, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def golden_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    tasks = load_suite("rtllm-v1.1", BENCH, problems=RTLLM_PROBLEMS) + load_suite(
        "verilogeval-v2-spec-to-rtl", BENCH, problems=V2_PROBLEMS
    )
    records = []
    for task in tasks:
        records.append({"task_id": task.id, "completion": f"```verilog\n{task.reference}\n```"})
        records.append({"task_id": task.meta["problem"], "completion": "module nothing; endmodule"})
    samples = tmp / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp / "out"
    rc = evals_main(
        [
            "run",
            "--suite",
            "rtllm-v1.1,verilogeval-v2-spec-to-rtl",
            "--data",
            str(BENCH),
            "--samples",
            str(samples),
            "--out",
            str(out),
            "--problems",
            ",".join(RTLLM_PROBLEMS + V2_PROBLEMS),
            "--jobs",
            "2",
        ]
    )
    assert rc == 0
    return out


def test_golden_samples_graded_with_pass_at_k_and_errata(golden_run):
    samples, summary = _read(golden_run)
    assert len(samples) == 2 * (len(RTLLM_PROBLEMS) + len(V2_PROBLEMS))
    first = samples[0]
    assert {"task_id", "sample_index", "passed", "status", "reward", "log", "completion"} <= set(first)
    rtllm = summary["suites"]["rtllm-v1.1"]
    # per problem: golden (sample 0) + a wrong answer (sample 1); div_16bit's golden fails (erratum)
    assert rtllm["per_problem"]["rtllm-v1.1/div_16bit"] == {"n": 2, "c": 0, "c_official": 0}
    assert rtllm["pass_at_k_all_problems"]["1"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert rtllm["pass_at_k_excluding_errata"]["1"] == pytest.approx(0.5)
    assert rtllm["pass_at_k"] == rtllm["pass_at_k_all_problems"]  # errata excluded only on request
    assert rtllm["official"]["pass_at_k"] == rtllm["pass_at_k"]  # goldens pass both verdicts
    assert all(s["passed"] == s["passed_official"] for s in samples)
    assert list(rtllm["errata"]) == ["rtllm-v1.1/div_16bit"] and not rtllm["errata_excluded"]
    v2 = summary["suites"]["verilogeval-v2-spec-to-rtl"]
    assert v2["pass_at_k"]["1"] == pytest.approx(0.5) and set(v2["pass_at_k"]) == {"1"}
    assert sum(rtllm["status_counts"].values()) == rtllm["samples"] == 6


def test_golden_samples_tie_the_golden_on_ppa(golden_run):
    _, summary = _read(golden_run)
    ppa = summary["ppa_vs_golden"]
    # accu, adder_8bit, popcount3, andgate; Prob001_zero is wiring only (no cells, so maybe no area)
    assert ppa["counts"]["compared"] >= 4
    assert ppa["counts"]["compared"] + len(ppa["errors"]) == 5
    for metric in ("area", "delay", "product"):
        assert ppa["counts"][f"beats_{metric}"] == 0
    for design in ppa["designs"].values():
        assert design["ratio"]["area"] == pytest.approx(1.0)


def test_report_and_plot_written(golden_run):
    report = (golden_run / "report.md").read_text()
    assert "rtllm-v1.1/div_16bit" in report and "pass@1" in report
    png = (golden_run / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_exclude_errata_changes_the_headline_only(tmp_path, golden_run):
    samples = tmp_path / "s.jsonl"
    samples.write_text(
        "".join(
            json.dumps({"task_id": r["task_id"], "completion": r["completion"]}) + "\n"
            for r in _read(golden_run)[0]
            if r["suite"] == "rtllm-v1.1"
        )
    )
    out = tmp_path / "out"
    assert (
        evals_main(
            [
                "run",
                "--suite",
                "rtllm-v1.1",
                "--data",
                str(BENCH / "rtllm-v1.1"),
                "--samples",
                str(samples),
                "--out",
                str(out),
                "--problems",
                ",".join(RTLLM_PROBLEMS),
                "--exclude-errata",
                "--no-ppa",
                "--no-plot",
            ]
        )
        == 0
    )
    _, summary = _read(out)
    rtllm = summary["suites"]["rtllm-v1.1"]
    assert rtllm["pass_at_k"]["1"] == pytest.approx(0.5) == rtllm["pass_at_k_excluding_errata"]["1"]
    assert rtllm["pass_at_k_all_problems"]["1"] == pytest.approx(1 / 3)


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert (
        evals_main(
            ["run", "--suite", "humaneval", "--data", str(BENCH), "--samples", "x", "--out", str(tmp_path)]
        )
        == 2
    )
    assert "valid suites" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    argv = ["run", "--suite", "rtllm-v1.1", "--data", str(BENCH), "--samples", str(missing)]
    assert evals_main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "cannot read samples file" in capsys.readouterr().err


def test_a_bad_samples_line_is_reported_and_the_rest_graded(tmp_path, capsys):
    (task,) = load_suite("verilogeval-v2-spec-to-rtl", BENCH, problems=["Prob001_zero"])
    samples = tmp_path / "samples.jsonl"
    samples.write_text(
        json.dumps({"task_id": task.id, "completion": f"```verilog\n{task.reference}\n```"})
        + '\n{"task_id": "Prob001_zero"}\nnot json\n'
    )
    out = tmp_path / "out"
    argv = ["run", "--suite", "verilogeval-v2-spec-to-rtl", "--data", str(BENCH), "--samples", str(samples)]
    rc = evals_main([*argv, "--problems", "Prob001_zero", "--out", str(out), "--no-ppa", "--no-plot"])
    assert rc == 0
    graded, summary = _read(out)
    assert [g["passed"] for g in graded] == [True]
    bad = summary["source"]["invalid_sample_lines"]
    assert len(bad) == 2
    assert bad[0].endswith(":2: need string fields 'task_id' and 'completion'")
    assert ":3: not valid JSON" in bad[1]
    assert "2 malformed lines" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    from tests.test_rollout import build_adapter, build_tiny

    root = tmp_path_factory.mktemp("tiny")
    full = build_tiny(root / "full")
    return {"full": full, "lora": build_adapter(full, root / "lora")}


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_tiny_checkpoint_evaluates_end_to_end(tiny_checkpoints, kind, tmp_path):
    out = tmp_path / kind
    rc = evals_main(
        [
            "run",
            "--suite",
            "verilogeval-v2-spec-to-rtl,rtllm-v1.1",
            "--data",
            str(BENCH),
            "--model",
            str(tiny_checkpoints[kind]),
            "--n",
            "2",
            "--temperature",
            "0.8",
            "--max-new-tokens",
            "48",
            "--problems",
            "Prob001_zero,Prob004_vector2,accu",
            "--backend",
            "hf",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--no-ppa",
        ]
    )
    assert rc == 0
    samples, summary = _read(out)
    assert sorted((s["task_id"], s["sample_index"]) for s in samples) == sorted(
        (f"{suite}/{p}", i)
        for suite, ps in [
            ("verilogeval-v2-spec-to-rtl", ["Prob001_zero", "Prob004_vector2"]),
            ("rtllm-v1.1", ["accu"]),
        ]
        for p in ps
        for i in range(2)
    )
    assert all(s["status"] != "INFRA_ERROR" for s in samples)
    # a random tiny model writes no working Verilog: every sample is graded and fails
    assert not any(s["passed"] for s in samples)
    assert summary["suites"]["rtllm-v1.1"]["pass_at_k"] == {"1": 0.0}
    assert summary["source"]["model"] == str(tiny_checkpoints[kind])
