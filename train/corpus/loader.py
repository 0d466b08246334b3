"""Load task files: the committed default splits, or users' own JSONL / parquet / HF-datasets files.

Every record is validated with :meth:`rewards.types.Task.from_dict` plus a few checks the reward
needs (the top module is defined in the reference; meta clock/reset fields have the right types).
All bad records of a file are reported together, one per line as ``file:line: field: problem``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rewards.tasks import TaskFileError
from rewards.types import Task, TaskError
from train.corpus.base import SPLITS

DATA_DIR = Path(__file__).resolve().parent / "data"
MAX_REPORTED = 20


class CorpusFileError(TaskFileError):
    """One or more records of a task file are bad; ``problems`` lists ``file:line: field: problem``."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(problems[:MAX_REPORTED])
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        super().__init__(
            f"{path}: {len(problems)} bad task record(s); fix them or remove them:\n{shown}{more}"
        )


def load_split(split: str) -> list[Task]:
    """The committed default split: ``"train"``, ``"val"``, ``"test"`` (unseen instances of the training
    families and parameter ranges) or ``"test_ood"`` (unseen widths, moduli and whole families).

    Raises:
        ValueError: unknown split name.
        CorpusFileError: the committed file is missing or damaged.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown corpus split {split!r}; valid splits are {list(SPLITS)}")
    return load_task_file(DATA_DIR / f"{split}.jsonl")


def _field_problem(record: Any) -> tuple[str, str] | None:
    """(field, problem) for the first thing wrong with ``record``, or None."""
    try:
        task = Task.from_dict(record)
    except TaskError as exc:
        text = str(exc)
        named = re.search(r"field '(\w+)'", text)
        if named:
            return named.group(1), text
        if "unknown fields" in text:
            return "(record)", text
        return "(record)", text
    if not re.search(rf"\bmodule\s+{re.escape(task.top_module)}\b", task.reference):
        return "reference", f"does not define module {task.top_module!r} named by top_module"
    meta = task.meta
    for key in ("clock", "reset"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"meta.{key}", f"must be a port name (string) or null, got {meta[key]!r}"
    if meta.get("reset_active") not in (None, 0, 1):
        return "meta.reset_active", f"must be 0 or 1, got {meta['reset_active']!r}"
    return None


def _records(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """(line or row number, record, decode problem) for each record of ``path``."""
    if path.is_dir() or path.suffix == ".arrow":
        from datasets import load_from_disk

        data = load_from_disk(str(path))
        if hasattr(data, "keys") and not hasattr(data, "column_names"):
            raise CorpusFileError(
                path, [f"{path}: holds splits {list(data.keys())}; point at one split's folder"]
            )
        for row, record in enumerate(data, start=1):
            yield row, record, None
        return
    if path.suffix == ".parquet":
        from datasets import Dataset

        for row, record in enumerate(Dataset.from_parquet(str(path)), start=1):
            yield row, record, None
        return
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield line_no, None, f"not valid JSON ({exc.msg} at column {exc.colno})"


def _clean(record: Any) -> Any:
    """Columnar formats fill absent optional fields with None; drop them so validation sees JSON."""
    if isinstance(record, dict):
        return {k: v for k, v in record.items() if v is not None or k in ("testbench", "interface")}
    return record


def load_task_file(path: str | Path) -> list[Task]:
    """Every task of a ``.jsonl``, ``.parquet`` or saved HF dataset (``save_to_disk`` folder).

    Raises:
        CorpusFileError: the file is missing, or records are bad (all of them are listed).
    """
    path = Path(path)
    if not path.exists():
        raise CorpusFileError(
            path, [f"{path}: no such file; give a JSONL/parquet file or a saved HF dataset"]
        )
    problems: list[str] = []
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    try:
        for line, record, decode_problem in _records(path):
            where = f"{path}:{line}"
            if decode_problem:
                problems.append(f"{where}: (record): {decode_problem}")
                continue
            record = _clean(record)
            problem = _field_problem(record)
            if problem:
                problems.append(f"{where}: {problem[0]}: {problem[1]}")
                continue
            task = Task.from_dict(record)
            if task.id in seen:
                problems.append(f"{where}: id: duplicate task id {task.id!r} (first at {seen[task.id]})")
                continue
            seen[task.id] = line
            tasks.append(task)
    except UnicodeDecodeError as exc:
        raise CorpusFileError(
            path, [f"{path}: (file): not UTF-8 text ({exc.reason} at byte {exc.start})"]
        ) from exc
    if problems:
        raise CorpusFileError(path, problems)
    return tasks
