"""Records shared by every part of the reward stack (see docs/design.md, "Records")."""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


class Status(enum.StrEnum):
    """Outcome of scoring one completion. ``INFRA_ERROR`` is never a score: its reward is ``None``."""

    OK = "OK"
    FORMAT_ERROR = "FORMAT_ERROR"
    SYNTAX_ERROR = "SYNTAX_ERROR"
    FORBIDDEN = "FORBIDDEN"
    INTERFACE_MISMATCH = "INTERFACE_MISMATCH"
    SIM_MISMATCH = "SIM_MISMATCH"
    SIM_TIMEOUT = "SIM_TIMEOUT"
    RESOURCE_LIMIT = "RESOURCE_LIMIT"
    INVALID_INPUT = "INVALID_INPUT"
    INFRA_ERROR = "INFRA_ERROR"


class TaskError(ValueError):
    """A task record is malformed; the message names the field and how to fix it."""


_TASK_FIELDS = ("id", "prompt", "top_module", "reference", "testbench", "interface", "meta")


@dataclass(frozen=True)
class Task:
    """One problem: a natural-language spec plus a golden design (and optionally its own test bench).

    ``testbench`` is ``None`` when the reward should generate a co-simulation against ``reference``.
    ``meta`` may hold ``clock``, ``reset``, ``reset_active`` (0/1), ``reset_sync`` and other hints.
    """

    id: str
    prompt: str
    top_module: str
    reference: str
    testbench: str | None = None
    interface: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, record: Any) -> Task:
        """Validate and build a Task; raises :class:`TaskError` naming the bad field."""
        if not isinstance(record, dict):
            raise TaskError(f"task record must be a JSON object, got {type(record).__name__}")
        unknown = sorted(set(record) - set(_TASK_FIELDS))
        if unknown:
            raise TaskError(
                f"task record has unknown fields {unknown}; valid fields are {list(_TASK_FIELDS)}"
            )
        for name in ("id", "prompt", "top_module", "reference"):
            value = record.get(name)
            if not isinstance(value, str) or not value.strip():
                raise TaskError(
                    f"task {record.get('id', '?')!r}: field {name!r} must be a non-empty string, got {value!r:.60}"
                )
        for name in ("testbench", "interface"):
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise TaskError(f"task {record['id']!r}: field {name!r} must be a string or null")
        meta = record.get("meta") or {}
        if not isinstance(meta, dict):
            raise TaskError(f"task {record['id']!r}: field 'meta' must be an object")
        return cls(
            id=record["id"],
            prompt=record["prompt"],
            top_module=record["top_module"],
            reference=record["reference"],
            testbench=record.get("testbench"),
            interface=record.get("interface"),
            meta=dict(meta),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def content_hash(self) -> str:
        """Stable hash of everything that affects scoring (used in cache keys). Computed once per
        record: a task is frozen (do not change its ``meta`` in place)."""
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
            cached = hashlib.sha256(blob.encode()).hexdigest()
            object.__setattr__(self, "_content_hash", cached)
        return cached


LEVELS = ("format", "syntax", "function", "ppa")


@dataclass
class RewardResult:
    """What scoring returns per completion (docs/design.md, "Records"). ``reward`` is ``None`` iff status is INFRA_ERROR."""

    task_id: str
    status: Status
    passed: bool = False
    reward: float | None = 0.0
    levels: dict[str, float] = field(default_factory=lambda: dict.fromkeys(LEVELS, 0.0))
    metrics: dict[str, Any] = field(default_factory=dict)
    log: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> RewardResult:
        return cls(
            task_id=record["task_id"],
            status=Status(record["status"]),
            passed=bool(record.get("passed", False)),
            reward=record.get("reward"),
            levels=dict(record.get("levels") or {}),
            metrics=dict(record.get("metrics") or {}),
            log=record.get("log", ""),
            cached=bool(record.get("cached", False)),
        )

    @classmethod
    def infra_error(cls, task_id: str, log: str) -> RewardResult:
        """A failure of the machinery, not of the candidate: no reward at all."""
        return cls(
            task_id=task_id, status=Status.INFRA_ERROR, passed=False, reward=None, levels={}, log=log[-2000:]
        )


@dataclass(frozen=True)
class Port:
    """One port of a module after elaboration. ``width`` = ``msb - lsb`` magnitude + 1."""

    name: str
    direction: str  # "input" | "output" | "inout"
    width: int = 1
    msb: int = 0
    lsb: int = 0
    signed: bool = False
