"""Known benchmark errata: problems whose own golden design fails its own test bench.

Measured with the project's toolchain (Icarus Verilog 11, see docs/design.md, "Benchmarks"). These problems
are always graded and always reported; they leave the pass@k denominators only when the user asks
(``--exclude-errata``), and the summary then shows both numbers.
"""

from __future__ import annotations

_TIMEOUT = (
    "the test bench prints TIMEOUT: under Icarus Verilog 11 its stimulus outlives the bench's "
    "1,000,000 ps budget, which the official grader counts as a failure"
)
_CASTS = 'Icarus Verilog 11 cannot compile the golden ("sorry: This cast operation is not yet supported")'

_V2_COMMON = {
    "Prob082_lfsr32": _TIMEOUT,
    "Prob141_count_clock": _TIMEOUT,
    "Prob151_review2015_fsm": _CASTS,
    "Prob156_review2015_fancytimer": _CASTS,
}

_RTLLM = {
    "asyn_fifo": 'Icarus Verilog 11 cannot compile the test bench ("sorry: break statements not supported")',
    "div_16bit": "the test bench declares 'expected_result' twice and does not compile",
    "radix2_div": "the golden fails its own test bench (3 wrong quotients)",
}

ERRATA: dict[str, dict[str, str]] = {
    "verilogeval-v2-spec-to-rtl": {
        **_V2_COMMON,
        "Prob099_m2014_q6c": "the test bench connects ports Y2/Y4 that the golden does not have (does not compile)",
    },
    "verilogeval-v2-code-complete-iccad2023": dict(_V2_COMMON),
    "verilogeval-v1-human": {"review2015_fancytimer": _CASTS, "review2015_fsm": _CASTS},
    "verilogeval-v1-machine": {},
    "rtllm-v1.1": dict(_RTLLM),
    "rtllm-v2": dict(_RTLLM),
}
"""suite -> problem name (the part of the task id after ``<suite>/``) -> why it is an erratum.

Measured by grading every golden as a sample (``python -m evals goldens`` then ``run --samples``):
these are exactly the goldens that fail. RTLLM v2 keeps the v1.1 names of the designs it shares.
"""


_RTLLM_NAMES = {
    "adder_pipe_64bit": "the reference file defines `verified_adder_64bit`; the description and the bench "
    "say `adder_pipe_64bit` (graded under `adder_pipe_64bit`; the shipped reference as is fails the bench)",
    "multi_pipe_4bit": "the reference file defines `verified_multi_pipe`; the description and the bench "
    "say `multi_pipe_4bit` (graded under `multi_pipe_4bit`; the shipped reference as is fails the bench)",
}

NAME_ERRATA: dict[str, dict[str, str]] = {
    "rtllm-v1.1": dict(_RTLLM_NAMES),
    "rtllm-v2": {
        **_RTLLM_NAMES,
        "freq_divbyeven": "the description says `freq_diveven`; the bench and the reference say "
        "`freq_divbyeven` (graded under `freq_divbyeven`, so a design named as the description asks "
        "fails both verdicts)",
    },
}
"""suite -> problem -> how the design's module names disagree (description, bench, reference).

The loader grades every such design under the name its bench instantiates and renames the reference to
it; problems it finds disagreeing that are not listed here still appear in reports, from
``meta["module_names"]``.
"""

_ZEROS = "the official bench accepts a module whose outputs are all tied to 0"


WEAK_BENCHES: dict[str, dict[str, str]] = {
    "verilogeval-v2-spec-to-rtl": {"Prob053_m2014_q4d": _ZEROS},
    "verilogeval-v2-code-complete-iccad2023": {"Prob053_m2014_q4d": _ZEROS},
    "verilogeval-v1-human": {"m2014_q4d": _ZEROS},
    "verilogeval-v1-machine": {
        "m2014_q4d": _ZEROS,
        "2012_q2fsm": _ZEROS,
        "fsm_ps2": "the official bench accepts a module with undriven outputs, one that only prints pass "
        "strings, and constant 0 or constant 1 outputs",
    },
    "rtllm-v1.1": {"edge_detect": _ZEROS},
    "rtllm-v2": {
        "edge_detect": _ZEROS,
        "comparator_3bit": "the official bench accepts a module with undriven outputs (it checks `!A_greater`; "
        "`!z` is x, which an `if` treats as false)",
        "comparator_4bit": "the official bench accepts a module with undriven outputs (it checks `!A_greater`; "
        "`!z` is x, which an `if` treats as false)",
    },
}
"""suite -> problem -> which do-nothing modules its official bench accepts.

Measured with ``python -m evals goldens --suite all`` (probe modules built from each reference's
ports: undriven outputs, printed pass strings, all-0 and all-1 outputs; a constant counts only where
the reference is not that constant). The strict verdict fails every probe on every problem of the
shipped suites. RTLLM v2 is not shipped here: its comparators were measured on a copy of it, and its
edge_detect is v1.1's design and bench.
"""


def split_task_id(task_id: str) -> tuple[str, str]:
    """``"<suite>/<problem>"`` -> ``(suite, problem)``; a bare id has suite ``""``."""
    suite, sep, problem = task_id.partition("/")
    return (suite, problem) if sep else ("", task_id)


def erratum(task_id: str) -> str | None:
    """Why ``task_id`` is a known erratum, or ``None`` when it is not one."""
    suite, problem = split_task_id(task_id)
    return ERRATA.get(suite, {}).get(problem)


def name_erratum(task_id: str) -> str | None:
    """How ``task_id``'s module names disagree, or ``None`` (see :data:`NAME_ERRATA`)."""
    suite, problem = split_task_id(task_id)
    return NAME_ERRATA.get(suite, {}).get(problem)


def weak_bench(task_id: str) -> str | None:
    """What do-nothing modules ``task_id``'s official bench accepts, or ``None`` (see :data:`WEAK_BENCHES`)."""
    suite, problem = split_task_id(task_id)
    return WEAK_BENCHES.get(suite, {}).get(problem)


def is_erratum(task_id: str) -> bool:
    """True when ``task_id`` is listed in :data:`ERRATA`."""
    return erratum(task_id) is not None
