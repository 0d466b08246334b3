"""Offline scoring CLI.

    python -m rewards score --tasks TASKS.jsonl --completions COMPLETIONS.jsonl --out RESULTS.jsonl \
        [--config configs/reward/default.yaml] [--jobs N]
    python -m rewards tools          # which EDA tools are installed, and their versions

One RewardResult per completion line, in input order. A bad line (malformed JSON, unknown task id,
missing field) becomes an ``INVALID_INPUT`` result with ``reward: null`` and a message; the other
lines are scored as usual.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rewards.config import ConfigError, jobs_count, load_reward_config
from rewards.tasks import TaskFileError, load_task_index
from rewards.tools import liberty_path, tool_versions
from rewards.types import RewardResult, Status, Task


def invalid_input(task_id: str, message: str) -> RewardResult:
    """A record the caller got wrong: not a score (reward null), not an infrastructure failure."""
    return RewardResult(
        task_id=task_id, status=Status.INVALID_INPUT, passed=False, reward=None, levels={}, log=message
    )


def parse_completion_line(line: str, line_no: int, tasks: dict[str, Task]) -> tuple[Task, str] | RewardResult:
    """One completions-file line → (task, completion), or an INVALID_INPUT result saying what is wrong."""
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return invalid_input("", f"line {line_no}: not valid JSON ({exc.msg} at column {exc.colno})")
    if not isinstance(record, dict):
        return invalid_input("", f"line {line_no}: expected an object with task_id and completion")
    task_id = record.get("task_id")
    if not isinstance(task_id, str):
        return invalid_input("", f"line {line_no}: missing string field 'task_id'")
    if task_id not in tasks:
        return invalid_input(task_id, f"line {line_no}: unknown task id {task_id!r}; it is not in --tasks")
    completion = record.get("completion")
    if not isinstance(completion, str):
        return invalid_input(task_id, f"line {line_no}: missing string field 'completion'")
    return tasks[task_id], completion


def cmd_score(args: argparse.Namespace) -> int:
    try:
        config = load_reward_config(args.config)
        tasks = load_task_index(args.tasks)
    except (ConfigError, TaskFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        lines = Path(args.completions).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        print(f"error: cannot read completions file {args.completions}: {exc}", file=sys.stderr)
        return 2
    parsed = [parse_completion_line(line, n, tasks) for n, line in enumerate(lines, start=1) if line.strip()]
    if not parsed:
        print(
            f"warning: completions file {args.completions} holds no completions (empty or blank)",
            file=sys.stderr,
        )
    todo = [(i, item) for i, item in enumerate(parsed) if isinstance(item, tuple)]
    from tqdm import tqdm

    from rewards.engine import score_batch

    with tqdm(total=len(todo), desc="scoring", unit="item", file=sys.stderr, disable=args.quiet) as bar:
        scored = score_batch([item for _, item in todo], config, jobs=args.jobs, progress=bar.update)
    results: list = list(parsed)
    for (index, _), result in zip(todo, scored, strict=True):
        results[index] = result
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as handle:
        for result in results:
            handle.write(json.dumps(result.to_dict()) + "\n")
    counts: dict[str, int] = {}
    for result in results:
        counts[result.status.value] = counts.get(result.status.value, 0) + 1
    print(
        f"scored {len(results)} completions → {out}: "
        + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
        file=sys.stderr,
    )
    return 0


def cmd_tools(_: argparse.Namespace) -> int:
    for name, version in tool_versions().items():
        print(f"{name:10s} {version}")
    try:
        print(f"{'liberty':10s} {liberty_path()}")
    except Exception as exc:  # noqa: BLE001 - report, don't crash, in a diagnostic command
        print(f"{'liberty':10s} missing: {exc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewards", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("score", help="score a completions file against a tasks file")
    p.add_argument("--tasks", required=True, nargs="+", help="task JSONL/parquet file(s)")
    p.add_argument("--completions", required=True, help="JSONL of {task_id, completion}")
    p.add_argument("--out", required=True, help="where to write one RewardResult per line")
    p.add_argument("--config", default=None, help="reward config YAML (default: built-in defaults)")
    p.add_argument(
        "--jobs", type=jobs_count, default=None, help="concurrent scoring jobs (default, or 0: one per core)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)
    t = sub.add_parser("tools", help="show installed EDA tools and versions")
    t.set_defaults(func=cmd_tools)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
