"""Known benchmark errata: problems whose own golden design fails its own test bench.

Measured with the project's toolchain (Icarus Verilog 11, see DESIGN.md "Benchmarks"). These problems
are always graded and always reported; they leave the pass@k denominators only when the user asks
(``--exclude-errata``), and the summary then shows both numbers.
"""

from __future__ import annotations

_V2_GOLDEN_FAILS_UNDER_ICARUS_11 = {
    "Prob082_lfsr32": "golden fails its own test bench under Icarus Verilog 11",
    "Prob099_m2014_q6c": "golden fails its own test bench under Icarus Verilog 11",
    "Prob141_count_clock": "golden fails its own test bench under Icarus Verilog 11",
    "Prob151_review2015_fsm": "golden fails its own test bench under Icarus Verilog 11",
    "Prob156_review2015_fancytimer": "golden fails its own test bench under Icarus Verilog 11",
}

_RTLLM_GOLDEN_FAILS = {
    "asyn_fifo": "golden fails its own test bench under Icarus Verilog 11",
    "div_16bit": "golden fails its own test bench under Icarus Verilog 11",
    "radix2_div": "golden fails its own test bench under Icarus Verilog 11",
}

ERRATA: dict[str, dict[str, str]] = {
    "verilogeval-v2-spec-to-rtl": dict(_V2_GOLDEN_FAILS_UNDER_ICARUS_11),
    "verilogeval-v2-code-complete-iccad2023": dict(_V2_GOLDEN_FAILS_UNDER_ICARUS_11),
    "verilogeval-v1-human": {
        "review2015_fancytimer": "golden fails its own test bench under Icarus Verilog 11",
        "review2015_fsm": "golden fails its own test bench under Icarus Verilog 11",
    },
    "verilogeval-v1-machine": {},
    "rtllm-v1.1": dict(_RTLLM_GOLDEN_FAILS),
    "rtllm-v2": dict(_RTLLM_GOLDEN_FAILS),
}
"""suite -> problem name (the part of the task id after ``<suite>/``) -> why it is an erratum."""


def split_task_id(task_id: str) -> tuple[str, str]:
    """``"<suite>/<problem>"`` -> ``(suite, problem)``; a bare id has suite ``""``."""
    suite, sep, problem = task_id.partition("/")
    return (suite, problem) if sep else ("", task_id)


def erratum(task_id: str) -> str | None:
    """Why ``task_id`` is a known erratum, or ``None`` when it is not one."""
    suite, problem = split_task_id(task_id)
    return ERRATA.get(suite, {}).get(problem)


def is_erratum(task_id: str) -> bool:
    """True when ``task_id`` is listed in :data:`ERRATA`."""
    return erratum(task_id) is not None
