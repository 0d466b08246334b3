"""Benchmark loaders read the official layouts in ../shared/benchmarks."""

import shutil
from pathlib import Path

import pytest

from evals.errata import ERRATA, is_erratum
from evals.loaders import SUITES, BenchmarkError, load_suite, module_names

BENCH = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"

EXPECTED_COUNTS = {
    "verilogeval-v1-human": 156,
    "verilogeval-v1-machine": 143,
    "verilogeval-v2-spec-to-rtl": 156,
    "verilogeval-v2-code-complete-iccad2023": 156,
    "rtllm-v1.1": 29,
}


@pytest.mark.parametrize("suite", sorted(EXPECTED_COUNTS))
def test_suite_counts_ids_and_shape(suite):
    tasks = load_suite(suite, BENCH)
    assert len(tasks) == EXPECTED_COUNTS[suite]
    assert len({t.id for t in tasks}) == len(tasks)
    for task in tasks:
        assert task.id == f"{suite}/{task.meta['problem']}"
        assert task.testbench and task.prompt.strip()
        # the golden is shaped like a perfect candidate: its top module carries the candidate's name
        assert task.top_module in module_names(task.reference)
        assert task.top_module not in module_names(task.testbench)


def test_errata_name_real_problems():
    for suite, problems in ERRATA.items():
        if suite not in EXPECTED_COUNTS:
            continue
        names = {t.meta["problem"] for t in load_suite(suite, BENCH)}
        assert set(problems) <= names, f"{suite}: errata {set(problems) - names} are not problems"
    assert is_erratum("rtllm-v1.1/asyn_fifo") and not is_erratum("rtllm-v1.1/accu")


def test_verilogeval_v2_prompt_and_golden():
    (task,) = load_suite("verilogeval-v2-spec-to-rtl", BENCH, problems=["Prob001_zero"])
    assert task.id == "verilogeval-v2-spec-to-rtl/Prob001_zero"
    assert "module named TopModule" in task.prompt
    assert module_names(task.reference) == ["TopModule"]
    assert "module RefModule" in task.testbench and "TopModule top_module1" in task.testbench
    (cc,) = load_suite("verilogeval-v2-code-complete-iccad2023", BENCH, problems=["Prob001_zero"])
    assert cc.interface.startswith("module TopModule") and cc.prompt.rstrip().endswith(");")


def test_verilogeval_v1_pairs_description_header_and_test():
    (task,) = load_suite("verilogeval-v1-human", BENCH, problems=["gatesv"])
    assert task.top_module == "top_module"
    assert task.prompt.rstrip().endswith(task.interface.rstrip())  # description, then the header
    assert task.reference.startswith(task.interface)
    assert "module reference_module" in task.testbench


def test_rtllm_carries_data_files_and_renames_golden():
    tasks = {t.meta["problem"]: t for t in load_suite("rtllm-v1.1", BENCH)}
    booth = tasks["multi_booth_8bit"]
    assert booth.top_module == "multi_booth_8bit"
    assert module_names(booth.reference) == ["multi_booth_8bit"]  # verified file declares another name
    assert set(booth.meta["files"]) == {"test_data.dat"}
    assert set(tasks["asyn_fifo"].meta["files"]) == {"rempty.txt", "tdata.txt", "wfull.txt"}
    assert module_names(tasks["asyn_fifo"].reference) == ["dual_port_RAM", "asyn_fifo"]


def test_rtllm_v2_nested_by_category_found_at_any_depth(tmp_path):
    root = tmp_path / "rtllm-v2"
    for category, design in [
        ("Arithmetic/Adder", "adder_8bit"),
        ("Arithmetic/Multiplier", "multi_booth_8bit"),
        ("Control", "fsm"),
    ]:
        shutil.copytree(BENCH / "rtllm-v1.1" / design, root / category / design)
    tasks = load_suite("rtllm-v2", tmp_path)
    assert [t.id for t in tasks] == ["rtllm-v2/adder_8bit", "rtllm-v2/multi_booth_8bit", "rtllm-v2/fsm"]
    assert tasks[0].meta["category"] == "Arithmetic/Adder"
    assert "test_data.dat" in tasks[1].meta["files"]


def test_selection_and_errors(tmp_path):
    tasks = load_suite("rtllm-v1.1", BENCH / "rtllm-v1.1", problems=["rtllm-v1.1/accu", "fsm"])
    assert [t.meta["problem"] for t in tasks] == ["accu", "fsm"]
    assert len(load_suite("verilogeval-v1-machine", BENCH, limit=3)) == 3
    with pytest.raises(BenchmarkError, match="not in rtllm-v1.1"):
        load_suite("rtllm-v1.1", BENCH, problems=["nope"])
    with pytest.raises(BenchmarkError, match="unknown suite"):
        load_suite("humaneval", BENCH)
    with pytest.raises(BenchmarkError, match="no rtllm-v2/"):
        load_suite("rtllm-v2", BENCH)
    with pytest.raises(BenchmarkError, match="no RTLLM designs"):
        load_suite("rtllm-v1.1", tmp_path)
    assert set(SUITES) >= set(EXPECTED_COUNTS) | {"rtllm-v2"}
