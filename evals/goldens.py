"""Golden checks of a benchmark: do the references grade right, drive every output, and are the benches strong?

``python -m evals goldens`` runs :func:`check_goldens` over every selected problem:

1. the golden (the reference, as a fenced completion) is graded under both verdicts: outside the
   known errata it must pass both;
2. the reference's co-simulation trace is read for outputs that are x/z after the first reset
   (a reference that leaves an output undefined cannot tell a candidate's x from its 0/1 there);
3. probe modules, generated from the reference's own header (parameters and port declarations kept,
   the body replaced), are graded under both verdicts:

   - ``undriven``: no logic at all (outputs read x or z);
   - ``printed_pass``: no logic, but it prints the strings the official graders look for;
   - ``zeros`` / ``ones``: every output tied to all-0 / all-1.

   A bench whose official verdict passes ``undriven`` or ``printed_pass``, or a constant the
   reference is not, is a *weak bench*: the official harness would reward a design that does
   nothing. The strict verdict must fail every probe, except a constant the reference also is.

The result (per suite) lists goldens that fail, references with undefined outputs, weak benches,
probes that pass the strict verdict where they should not, and module-name disagreements.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from evals.errata import erratum, split_task_id
from evals.run import GradedSample, Sample, grade_samples
from rewards import cosim
from rewards.config import RewardConfig
from rewards.interface import InterfaceError, compile_source, parse_ports
from rewards.score import limits_for
from rewards.types import Task

log = logging.getLogger(__name__)

PROBES = ("undriven", "printed_pass", "zeros", "ones")
"""Probe module kinds, in the order they are graded."""

PASS_STRINGS = (
    "Mismatches: 0 in 1 samples",
    "===========Your Design Passed===========",
    "Passed",
    "pass",
    "Test passed",
)
"""What official graders (VerilogEval's ``Mismatches: N in M``, RTLLM's ``Passed``) read from stdout."""

_KEPT_MEMBERS = {"PortDeclaration", "ParameterDeclarationStatement", "TypedefDeclaration"}


class ProbeError(ValueError):
    """No probe module can be built from a reference (its top module cannot be read)."""


def _module_text(reference: str, top: str) -> tuple[str, list[str]]:
    """The header text of ``top`` and the text of its kept body members."""
    tree, _ = compile_source(reference, top)  # the tree owns the text: keep it alive while reading
    root = tree.root
    modules = [root] if root.kind.name == "ModuleDeclaration" else list(getattr(root, "members", []))
    for node in modules:
        if node.kind.name == "ModuleDeclaration" and node.header.name.valueText == top:
            kept = [str(m).rstrip() for m in node.members if m.kind.name in _KEPT_MEMBERS]
            return str(node.header).rstrip(), kept
    raise ProbeError(f"module {top!r} is not declared at the top level of the reference")


def module_skeleton(reference: str, top: str) -> tuple[str, list[str]]:
    """``(header and declarations of top, its output port names)``: the module without its logic.

    The header (parameter and ANSI port lists) and the body's port, parameter and typedef
    declarations are kept verbatim, so the skeleton has the reference's exact interface; the
    caller appends a body and ``endmodule``.

    Raises:
        ProbeError: the reference's top module cannot be parsed or elaborated.
    """
    try:
        ports = parse_ports(reference, top)
    except InterfaceError as exc:
        raise ProbeError(f"cannot read the ports of {top!r}: {exc}") from exc
    header, kept = _module_text(reference, top)
    head = header + "\n" + "\n".join(kept)
    return head.rstrip() + "\n", [p.name for p in ports if p.direction == "output"]


def probe_modules(task: Task) -> dict[str, str]:
    """Each probe kind of :data:`PROBES` -> its Verilog source, built from ``task.reference``."""
    head, outputs = module_skeleton(task.reference, task.top_module)
    prints = "\n".join(f'    $display("{text}");' for text in PASS_STRINGS)
    printed = f"  initial begin\n{prints}\n  end\n  final begin\n{prints}\n  end\n"
    return {
        "undriven": f"{head}endmodule\n",
        "printed_pass": f"{head}{printed}endmodule\n",
        "zeros": head + "".join(f"  assign {name} = '0;\n" for name in outputs) + "endmodule\n",
        "ones": head + "".join(f"  assign {name} = '1;\n" for name in outputs) + "endmodule\n",
    }


def fenced(code: str) -> str:
    """``code`` as a model would answer: one fenced Verilog block."""
    return f"```verilog\n{code.rstrip()}\n```\n"


def _undefined_outputs(trace: cosim.GoldenTrace) -> tuple[dict[str, float], set[str]]:
    """Per output: the fraction of compared rows after the first reset where it holds x/z bits.

    Also returns which constants (``"zeros"``, ``"ones"``) the reference equals wherever defined.
    """
    names = [p.name for p in trace.plan.outputs]
    skip = trace.plan.unreset_rows()
    rows = [row for i, row in enumerate(trace.rows) if i not in skip]
    undefined: dict[str, int] = defaultdict(int)
    has_one = has_zero = False
    for row in rows:
        bad = set()
        for pos, value in enumerate(row):
            if any(bit not in "01" for bit in value):
                bad.add(names[pos % len(names)])
            has_one = has_one or "1" in value
            has_zero = has_zero or "0" in value
        for name in bad:
            undefined[name] += 1
    constants = {kind for kind, seen in (("zeros", has_one), ("ones", has_zero)) if not seen}
    return {n: round(c / len(rows), 4) for n, c in undefined.items() if rows}, constants


def _reference_trace(task: Task, config: RewardConfig) -> cosim.GoldenTrace:
    return cosim.golden_trace(
        task, config.cosim, limits=limits_for(config, config.sim_cpu_s), sandbox=config.sandbox
    )


def _samples(tasks: Sequence[Task]) -> tuple[list[Sample], dict[str, str]]:
    samples, broken = [], {}
    for task in tasks:
        samples.append(Sample(task, 0, fenced(task.reference)))
        try:
            probes = probe_modules(task)
        except ProbeError as exc:
            broken[task.id] = str(exc)
            continue
        samples += [Sample(task, 1 + i, fenced(probes[kind])) for i, kind in enumerate(PROBES)]
    return samples, broken


def _problem_report(task: Task, graded: Sequence[GradedSample], config: RewardConfig) -> dict[str, Any]:
    golden, probes = graded[0], {PROBES[g.sample.sample_index - 1]: g for g in graded[1:]}
    report: dict[str, Any] = {
        "golden": {
            "passed_official": golden.passed_official,
            "passed": golden.passed,
            "status": golden.result.status.value,
            "basis": golden.strict.basis if golden.strict else None,
            "log": (golden.result.log or (golden.strict.log if golden.strict else ""))[-300:],
        },
        "probes": {
            kind: {"passed_official": g.passed_official, "passed": g.passed} for kind, g in probes.items()
        },
    }
    constants: set[str] = set()
    try:
        undefined, constants = _undefined_outputs(_reference_trace(task, config))
        report["undefined_outputs"] = undefined
    except (cosim.GoldenError, InterfaceError) as exc:
        report["reference_unusable"] = str(exc)[:300]
    report["reference_constant"] = sorted(constants)
    report["weak_bench"] = [kind for kind, g in probes.items() if g.passed_official and kind not in constants]
    report["strict_accepts"] = [kind for kind, g in probes.items() if g.passed and kind not in constants]
    return report


def check_goldens(
    tasks: Sequence[Task],
    config: RewardConfig,
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Grade every golden and its probes; the per-suite findings (see the module docstring).

    ``config`` is a reward config with PPA off (the official grading turns ``testbench_cosim`` off
    itself). Returns ``{"suites": {suite: {...}}}``.
    """
    samples, broken = _samples(tasks)
    graded = grade_samples(samples, config, jobs=jobs, progress=progress)
    by_task: dict[str, list[GradedSample]] = defaultdict(list)
    for g in graded:
        by_task[g.task_id].append(g)
    suites: dict[str, dict[str, Any]] = {}
    for task in tasks:
        suite, problem = split_task_id(task.id)
        entry = suites.setdefault(suite, _empty_suite())
        report = _problem_report(task, by_task[task.id], config)
        if task.id in broken:
            report["probe_error"] = broken[task.id]
        _add_problem(entry, task, problem, report)
    return {"suites": suites}


def _empty_suite() -> dict[str, Any]:
    return {
        "problems": 0,
        "goldens_passed_official": 0,
        "goldens_passed": 0,
        "goldens_failing": {},
        "unexpected_golden_failures": [],
        "undefined_reference_outputs": {},
        "reference_unusable": {},
        "weak_benches": {},
        "strict_accepts_probe": {},
        "probe_errors": {},
        "module_names": {},
    }


def _add_problem(entry: dict[str, Any], task: Task, problem: str, report: dict[str, Any]) -> None:
    golden = report["golden"]
    entry["problems"] += 1
    entry["goldens_passed_official"] += golden["passed_official"]
    entry["goldens_passed"] += golden["passed"]
    if not (golden["passed_official"] and golden["passed"]):
        entry["goldens_failing"][problem] = golden
        if not erratum(task.id):
            entry["unexpected_golden_failures"].append(problem)
    if report.get("undefined_outputs"):
        entry["undefined_reference_outputs"][problem] = report["undefined_outputs"]
    if "reference_unusable" in report:
        entry["reference_unusable"][problem] = report["reference_unusable"]
    if report["weak_bench"]:
        entry["weak_benches"][problem] = report["weak_bench"]
    if report["strict_accepts"]:
        entry["strict_accepts_probe"][problem] = report["strict_accepts"]
    if "probe_error" in report:
        entry["probe_errors"][problem] = report["probe_error"]
    names = task.meta.get("module_names")
    if names:
        entry["module_names"][problem] = names


def summary_lines(check: dict[str, Any]) -> list[str]:
    """One readable block per suite of a :func:`check_goldens` result."""
    lines = []
    for suite, s in check["suites"].items():
        lines.append(
            f"{suite}: goldens pass {s['goldens_passed_official']}/{s['problems']} official, "
            f"{s['goldens_passed']}/{s['problems']} strict; unexpected golden failures: "
            f"{s['unexpected_golden_failures'] or 'none'}"
        )
        weak = ", ".join(f"{p} ({'/'.join(k)})" for p, k in s["weak_benches"].items()) or "none"
        lines.append(f"  weak benches (official harness accepts the probe): {weak}")
        strict = ", ".join(f"{p} ({'/'.join(k)})" for p, k in s["strict_accepts_probe"].items()) or "none"
        lines.append(f"  probes passing the strict verdict: {strict}")
        undefined = "; ".join(
            f"{p} " + ", ".join(f"{name} {100 * share:.1f}%" for name, share in sorted(o.items()))
            for p, o in s["undefined_reference_outputs"].items()
        )
        lines.append(
            f"  references with x/z outputs after reset (share of compared rows): {undefined or 'none'}"
        )
        if s["reference_unusable"]:
            lines.append(f"  references the co-simulation cannot use: {sorted(s['reference_unusable'])}")
        if s["probe_errors"]:
            lines.append(f"  no probes built for: {sorted(s['probe_errors'])}")
        if s["module_names"]:
            lines.append(f"  module-name disagreements: {s['module_names']}")
    return lines
