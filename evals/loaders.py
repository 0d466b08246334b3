"""Benchmark loaders for the official layouts, as users have them after cloning the benchmark repos.

Every loader returns :class:`rewards.types.Task` records with ids ``<suite>/<problem>`` and the same
shape, so one grading path serves all suites:

- ``reference`` is the golden design with its top module renamed to ``top_module`` (what a perfect
  candidate would be), so interface checks, PPA and golden runs treat it like a candidate;
- ``testbench`` is the benchmark's own test bench, made self-contained: it already holds every module
  it instantiates except the candidate (VerilogEval v2's ``RefModule`` is appended to it, VerilogEval
  v1's ``reference_module`` is part of it, RTLLM test benches only instantiate the candidate);
- ``meta["files"]`` maps data-file names the test bench opens (``$fopen``/``$readmemh`` by relative
  path, RTLLM) to their text; they must be written next to the test bench before it runs;
- ``meta["module_names"]`` (RTLLM, only where they disagree) holds the design's name in the
  description, the test bench and the reference file; the task uses the bench's name;
- ``meta["pass_rule"]`` names how the benchmark's own bench reports a verdict (``"mismatches"``:
  VerilogEval's ``Mismatches: N in M samples``; ``"rtllm"``: RTLLM's ``Passed``/``failures`` lines).

Suites are picked by name from :data:`SUITES`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from rewards.types import Task

log = logging.getLogger(__name__)


class BenchmarkError(ValueError):
    """A benchmark directory does not have the expected layout; the message says what was looked for."""


_V2_DIRS = {
    "verilogeval-v2-spec-to-rtl": "dataset_spec-to-rtl",
    "verilogeval-v2-code-complete-iccad2023": "dataset_code-complete-iccad2023",
}
_V1_SPLITS = {"verilogeval-v1-human": "Human", "verilogeval-v1-machine": "Machine"}
_MODULE_RE = re.compile(r"^\s*module\s+([A-Za-z_][A-Za-z0-9_$]*)", re.MULTILINE)
_RTLLM_SKIP = {"design_description.txt", "testbench.v", "makefile", "Makefile", "LICENSE"}
_MAX_DATA_FILE_BYTES = 4 * 1024 * 1024


def rename_module(source: str, old: str, new: str) -> str:
    """Rename the declaration ``module old`` to ``module new`` (instantiations of ``old`` are left alone)."""
    pattern = re.compile(rf"(^\s*module\s+){re.escape(old)}\b", re.MULTILINE)
    renamed, count = pattern.subn(rf"\g<1>{new}", source)
    if count != 1:
        raise BenchmarkError(f"renaming module {old!r} to {new!r}: found {count} declarations, expected 1")
    return renamed


def module_names(source: str) -> list[str]:
    """Names of the modules declared in ``source``, in order."""
    return _MODULE_RE.findall(source)


def _v2_root(path: Path, suite: str) -> Path:
    sub = _V2_DIRS[suite]
    for candidate in (path / sub, path / "verilog-eval-v2" / sub, path):
        if candidate.is_dir() and any(candidate.glob("Prob*_prompt.txt")):
            return candidate
    raise BenchmarkError(
        f"no VerilogEval v2 problems for {suite} under {path}: expected {sub}/ProbNNN_name_prompt.txt. "
        "Point --data at the verilog-eval checkout (or its dataset_* folder)."
    )


def load_verilogeval_v2(path: str | Path, suite: str) -> list[Task]:
    """VerilogEval v2: ``ProbNNN_name_{prompt.txt,ref.sv,test.sv}`` (+ ``_ifc.txt`` for code completion)."""
    root = _v2_root(Path(path), suite)
    tasks = []
    for prompt_file in sorted(root.glob("Prob*_prompt.txt")):
        name = prompt_file.name[: -len("_prompt.txt")]
        ref_file, test_file = root / f"{name}_ref.sv", root / f"{name}_test.sv"
        if not (ref_file.is_file() and test_file.is_file()):
            raise BenchmarkError(f"{prompt_file}: missing {ref_file.name} or {test_file.name} next to it")
        ref = ref_file.read_text()
        ifc_file = root / f"{name}_ifc.txt"
        tasks.append(
            Task(
                id=f"{suite}/{name}",
                prompt=prompt_file.read_text().strip() + "\n",
                top_module="TopModule",
                reference=rename_module(ref, "RefModule", "TopModule"),
                testbench=test_file.read_text().rstrip() + "\n\n" + ref,
                interface=ifc_file.read_text().strip() + "\n" if ifc_file.is_file() else None,
                meta={
                    "suite": suite,
                    "problem": name,
                    "pass_rule": "mismatches",
                    "golden_module": "RefModule",
                    "files": {},
                },
            )
        )
    return tasks


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise BenchmarkError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return records


def _v1_files(path: Path, split: str) -> tuple[Path, Path]:
    for root in (path, path / "verilog-eval-v1", path.parent):
        data = root / "data" / f"VerilogEval_{split}.jsonl"
        desc = root / "descriptions" / f"VerilogDescription_{split}.jsonl"
        if data.is_file() and desc.is_file():
            return data, desc
    raise BenchmarkError(
        f"no VerilogEval v1 {split} files under {path}: expected data/VerilogEval_{split}.jsonl and "
        f"descriptions/VerilogDescription_{split}.jsonl. Point --data at the verilog-eval v1 checkout."
    )


def load_verilogeval_v1(path: str | Path, suite: str) -> list[Task]:
    """VerilogEval v1: problems (header, canonical body, test bench) paired with descriptions by ``task_id``."""
    data_file, desc_file = _v1_files(Path(path), _V1_SPLITS[suite])
    descriptions = {rec["task_id"]: rec["detail_description"] for rec in _read_jsonl(desc_file)}
    tasks = []
    for rec in _read_jsonl(data_file):
        name = rec["task_id"]
        if name not in descriptions:
            raise BenchmarkError(f"{data_file}: problem {name!r} has no description in {desc_file}")
        header = rec["prompt"].strip() + "\n"
        tasks.append(
            Task(
                id=f"{suite}/{name}",
                prompt=f"{descriptions[name].strip()}\n\n{header}",
                top_module="top_module",
                reference=header + rec["canonical_solution"].rstrip() + "\n",
                testbench=rec["test"],
                interface=header,
                meta={
                    "suite": suite,
                    "problem": name,
                    "pass_rule": "mismatches",
                    "golden_module": "reference_module",
                    "files": {},
                },
            )
        )
    return tasks


def find_rtllm_designs(root: Path) -> list[Path]:
    """Design folders under ``root`` at any depth: those holding a description, a test bench and a golden."""
    found = []
    for folder, _dirs, files in os.walk(root):
        names = set(files)
        if {"design_description.txt", "testbench.v"} <= names and any(
            n.startswith("verified_") and n.endswith(".v") for n in names
        ):
            found.append(Path(folder))
    return sorted(found)


def _rtllm_top(folder: Path, description: str, testbench: str) -> str:
    match = re.search(r"Module name:\s*([A-Za-z_][A-Za-z0-9_]*)", description)
    if match and re.search(rf"\b{match.group(1)}\b\s*(#|[A-Za-z_])", testbench):
        return match.group(1)
    declared = set(module_names(testbench))
    for name in re.findall(
        r"^\s*([A-Za-z_]\w*)\s+(?:#\s*\(.*?\)\s*)?[A-Za-z_]\w*\s*\(", testbench, re.M | re.S
    ):
        if name not in declared and name not in ("module", "task", "function", "always", "initial"):
            return name
    raise BenchmarkError(f"{folder}: cannot tell the design's module name from the description or test bench")


def _name_disagreement(description: str, top: str, golden_top: str) -> dict[str, str] | None:
    """The three names of a design when its description, bench and reference disagree, else None.

    A reference named ``verified_<top>`` is RTLLM's convention and agrees with ``top``.
    """
    match = re.search(r"Module name:\s*([A-Za-z_][A-Za-z0-9_]*)", description)
    described = match.group(1) if match else None
    if (described is None or described == top) and golden_top in (top, f"verified_{top}"):
        return None
    return {"description": described or "", "testbench": top, "reference": golden_top}


def _golden_top(source: str, folder: Path) -> str:
    names = module_names(source)
    uninstantiated = [
        n
        for n in names
        if not any(
            re.search(rf"^\s*{n}\b\s*(#|[A-Za-z_])", body, re.M)
            for other, body in _module_bodies(source).items()
            if other != n
        )
    ]
    if len(uninstantiated) == 1:
        return uninstantiated[0]
    raise BenchmarkError(f"{folder}: golden declares {names}; cannot tell which is the top module")


def _module_bodies(source: str) -> dict[str, str]:
    bodies = {}
    for match in re.finditer(r"^\s*module\s+(\w+)(.*?)^\s*endmodule", source, re.M | re.S):
        bodies[match.group(1)] = match.group(2)
    return bodies


def _data_files(folder: Path, testbench: str) -> dict[str, str]:
    files = {}
    for item in sorted(folder.iterdir()):
        if not item.is_file() or item.name in _RTLLM_SKIP or item.suffix == ".v":
            continue
        if item.name not in testbench:
            log.debug("%s: %s is not named by the test bench; not carried", folder, item.name)
            continue
        if item.stat().st_size > _MAX_DATA_FILE_BYTES:
            raise BenchmarkError(f"{item}: data file is over {_MAX_DATA_FILE_BYTES} bytes")
        files[item.name] = item.read_text()
    return files


def load_rtllm(path: str | Path, suite: str) -> list[Task]:
    """RTLLM v1.1 (flat) or v2 (nested by category): every folder with description + test bench + golden."""
    root = Path(path)
    folders = find_rtllm_designs(root)
    if not folders:
        raise BenchmarkError(
            f"no RTLLM designs under {root}: expected folders holding design_description.txt, testbench.v "
            "and verified_<design>.v. Point --data at the RTLLM checkout."
        )
    tasks, seen = [], {}
    for folder in folders:
        description = (folder / "design_description.txt").read_text()
        testbench = (folder / "testbench.v").read_text()
        golden_file = next(p for p in sorted(folder.glob("verified_*.v")))
        golden = golden_file.read_text()
        top = _rtllm_top(folder, description, testbench)
        golden_top = _golden_top(golden, folder)
        reference = golden if golden_top == top else rename_module(golden, golden_top, top)
        names = _name_disagreement(description, top, golden_top)
        if names:
            log.debug("%s: module names disagree: %s", folder, names)
        name = folder.name
        if name in seen:
            raise BenchmarkError(f"two RTLLM designs are named {name!r}: {seen[name]} and {folder}")
        seen[name] = folder
        tasks.append(
            Task(
                id=f"{suite}/{name}",
                prompt=description.strip() + "\n",
                top_module=top,
                reference=reference,
                testbench=testbench,
                interface=None,
                meta={
                    "suite": suite,
                    "problem": name,
                    "pass_rule": "rtllm",
                    "golden_module": None,
                    "category": folder.parent.relative_to(root).as_posix() if folder.parent != root else "",
                    "files": _data_files(folder, testbench),
                    **({"module_names": names} if names else {}),
                },
            )
        )
    return tasks


SUITES: dict[str, Callable[[str | Path, str], list[Task]]] = {
    "verilogeval-v1-human": load_verilogeval_v1,
    "verilogeval-v1-machine": load_verilogeval_v1,
    "verilogeval-v2-spec-to-rtl": load_verilogeval_v2,
    "verilogeval-v2-code-complete-iccad2023": load_verilogeval_v2,
    "rtllm-v1.1": load_rtllm,
    "rtllm-v2": load_rtllm,
}

DEFAULT_DIRS = {
    "verilogeval-v1-human": "verilog-eval-v1",
    "verilogeval-v1-machine": "verilog-eval-v1",
    "verilogeval-v2-spec-to-rtl": "verilog-eval-v2",
    "verilogeval-v2-code-complete-iccad2023": "verilog-eval-v2",
    "rtllm-v1.1": "rtllm-v1.1",
    "rtllm-v2": "rtllm-v2",
}
"""Folder of each suite under a benchmarks root holding several checkouts (e.g. ``../shared/benchmarks``)."""


def load_suite(
    suite: str, path: str | Path, problems: list[str] | None = None, limit: int | None = None
) -> list[Task]:
    """Load ``suite`` from ``path`` (its checkout, or a root holding it under :data:`DEFAULT_DIRS`).

    ``problems`` keeps only those problem names (or full ids); ``limit`` keeps the first ``limit`` tasks.

    Raises:
        BenchmarkError: unknown suite, wrong layout, or a requested problem that does not exist.
    """
    if suite not in SUITES:
        raise BenchmarkError(f"unknown suite {suite!r}; valid suites are {sorted(SUITES)}")
    path = Path(path)
    if not path.exists():
        raise BenchmarkError(f"benchmark path {path} does not exist; point --data at the benchmark checkout")
    nested = path / DEFAULT_DIRS[suite]
    if not nested.is_dir() and any((path / d).is_dir() for d in set(DEFAULT_DIRS.values())):
        raise BenchmarkError(
            f"{path} holds benchmark checkouts but no {DEFAULT_DIRS[suite]}/ for suite {suite}; "
            f"point --data at the {suite} checkout itself"
        )
    tasks = SUITES[suite](nested if nested.is_dir() else path, suite)
    if problems:
        wanted = {p.split("/", 1)[1] if p.startswith(f"{suite}/") else p for p in problems}
        tasks = [t for t in tasks if t.meta["problem"] in wanted]
        missing = wanted - {t.meta["problem"] for t in tasks}
        if missing:
            raise BenchmarkError(f"problems {sorted(missing)} are not in {suite} at {path}")
    return tasks[:limit] if limit else tasks
