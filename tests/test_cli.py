"""The offline scoring CLI: order, per-line errors, and bad input that must not stop other lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

ADDER = """module top_module(input [3:0] a, input [3:0] b, output [4:0] sum);
  assign sum = a + b;
endmodule
"""
MUTANT = ADDER.replace("a + b", "a - b")


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def _run(tmp_path: Path, completions: list, *extra: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    task = {
        "id": "demo/adder4",
        "prompt": "Add two 4-bit numbers with carry out.",
        "top_module": "top_module",
        "reference": ADDER,
    }
    tasks = _write_jsonl(tmp_path / "tasks.jsonl", [task])
    comps = _write_jsonl(tmp_path / "completions.jsonl", completions)
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewards",
            "score",
            "--tasks",
            str(tasks),
            "--completions",
            str(comps),
            "--out",
            str(out),
            "--quiet",
            "--config",
            str(REPO / "configs/reward/default.yaml"),
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return proc, results


def test_results_in_input_order_with_per_line_errors(tmp_path: Path) -> None:
    completions = [
        {"task_id": "demo/adder4", "completion": f"```verilog\n{ADDER}```"},
        "{not json",
        {"task_id": "nope/unknown", "completion": ADDER},
        {"task_id": "demo/adder4"},
        {"task_id": "demo/adder4", "completion": f"Here you go:\n```verilog\n{MUTANT}```"},
        {"task_id": "demo/adder4", "completion": ""},
        {"task_id": "demo/adder4", "completion": "x" * 10_000_000},
    ]
    proc, results = _run(tmp_path, completions, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    statuses = [r["status"] for r in results]
    assert statuses == [
        "OK",
        "INVALID_INPUT",
        "INVALID_INPUT",
        "INVALID_INPUT",
        "SIM_MISMATCH",
        "FORMAT_ERROR",
        "RESOURCE_LIMIT",
    ]
    assert results[0]["passed"] and results[0]["reward"] > 1.29
    assert "not valid JSON" in results[1]["log"]
    assert "unknown task id" in results[2]["log"]
    assert "completion" in results[3]["log"]
    assert all(results[i]["reward"] is None for i in (1, 2, 3))
    assert 0 < results[4]["reward"] < 1.0
    assert results[6]["reward"] == 0.0


def test_broken_config_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("w_format: 0.1\nnot_a_field: 3\n")
    proc, _ = _run(tmp_path, [{"task_id": "demo/adder4", "completion": ADDER}], "--config", str(bad))
    assert proc.returncode == 2
    assert "unknown reward config keys ['not_a_field']" in proc.stderr


def test_broken_task_file_names_the_line(tmp_path: Path) -> None:
    tasks = _write_jsonl(tmp_path / "tasks.jsonl", [{"id": "a", "prompt": "p", "top_module": "m"}])
    comps = _write_jsonl(tmp_path / "c.jsonl", [{"task_id": "a", "completion": "x"}])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rewards",
            "score",
            "--tasks",
            str(tasks),
            "--completions",
            str(comps),
            "--out",
            str(tmp_path / "o.jsonl"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "tasks.jsonl:1" in proc.stderr and "'reference'" in proc.stderr
