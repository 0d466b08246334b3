"""Read Task records from JSONL or parquet files, with errors that point at the bad record."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

from rewards.types import Task, TaskError

log = logging.getLogger(__name__)


class TaskFileError(ValueError):
    """A task file is missing or holds a bad record; the message names file:line and the field."""


def _iter_records(path: Path) -> Iterator[tuple[int, object]]:
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise TaskFileError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from exc
        for index, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield index, row
        return
    with path.open(encoding="utf-8", errors="strict") as handle:
        for index, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield index, json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskFileError(
                    f"{path}:{index}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from exc


def load_tasks(path: str | Path) -> list[Task]:
    """All tasks of one ``.jsonl`` (one Task object per line) or ``.parquet`` file.

    An empty file gives no tasks and a logged warning.

    Raises:
        TaskFileError: the file is missing, undecodable, or a record is invalid (names file:line).
    """
    path = Path(path)
    if not path.is_file():
        raise TaskFileError(
            f'task file {path} does not exist; pass a JSONL file of Task records (docs/design.md, "Records")'
        )
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    try:
        for line_no, record in _iter_records(path):
            try:
                task = Task.from_dict(record)
            except TaskError as exc:
                raise TaskFileError(f"{path}:{line_no}: {exc}") from exc
            if task.id in seen:
                raise TaskFileError(
                    f"{path}:{line_no}: duplicate task id {task.id!r} (first on line {seen[task.id]})"
                )
            seen[task.id] = line_no
            tasks.append(task)
    except UnicodeDecodeError as exc:
        raise TaskFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if not tasks:
        log.warning("task file %s holds no tasks (it is empty or blank)", path)
    return tasks


def load_task_index(paths: Iterable[str | Path]) -> dict[str, Task]:
    """Tasks of several files keyed by id; a duplicate id across files is an error."""
    index: dict[str, Task] = {}
    for path in paths:
        for task in load_tasks(path):
            if task.id in index:
                raise TaskFileError(f"{path}: task id {task.id!r} is defined in more than one task file")
            index[task.id] = task
    return index


def union_tasks(*groups: Iterable[Task]) -> list[Task]:
    """The tasks of ``groups`` in order, each id once (a run may train and evaluate on overlapping files).

    Raises:
        TaskFileError: one id names two different tasks (the groups came from different task sources).
    """
    out: dict[str, Task] = {}
    for group in groups:
        for task in group:
            first = out.setdefault(task.id, task)
            if first is not task and first.to_dict() != task.to_dict():
                raise TaskFileError(
                    f"task id {task.id!r} names two different tasks (training and evaluation task files "
                    "disagree); give one of them another id"
                )
    return list(out.values())
