"""Reward server: score batches of completions over HTTP, with a persistent cache and bounded concurrency.

    python -m rewards.server --host 127.0.0.1 --port 8000 --workers 8 \
        --config configs/reward/default.yaml --tasks train.jsonl val.jsonl [--cache PATH | --cache none]

Endpoints: ``POST /score`` (``{"items": [...]}`` → ``{"results": [...]}`` in item order), ``GET /healthz``,
``GET /metrics`` (Prometheus text), ``/docs`` (OpenAPI page).

How a batch is served:

* Each item is ``{"task": <Task>, "completion": str}`` or ``{"task_id": str, "completion": str}``
  (ids from the ``--tasks`` files). An item the caller got wrong (unknown id, bad task record,
  missing or non-string completion) becomes an ``INVALID_INPUT`` result with ``reward: null`` — the
  same as the offline CLI does for a bad line — and the rest of the batch is scored. A body that is
  not a batch at all (not UTF-8, not JSON, no ``items`` list, too large, too many items) is a 4xx
  with ``{"detail": reason}``.
* Items are keyed by :mod:`rewards.cache`; cached ones are answered at once (``cached: true``),
  identical ones (within the batch, or in flight for another request) are scored once.
* The rest go to a pool of ``--workers`` threads, each running :func:`rewards.score.score` (the tools
  are sandboxed subprocesses, so threads do not hold each other up). A request that would push more
  than ``--queue-items`` items into the queue is answered 429 with ``Retry-After``; an idle server
  admits any batch up to ``--max-items``.
* An item not finished ``--item-timeout-s`` after its request was admitted comes back as
  ``INFRA_ERROR`` (reward null): the server ran out of time, the candidate did not fail. Its scoring
  goes on and is cached, so a retry finds it.
* When the client disconnects, its items that have not started are dropped.
* Each computed result is committed to the SQLite cache (``--cache``; default
  ``$RTLFORGE_REWARD_CACHE`` or ``~/.cache/rtlforge/reward-cache.sqlite``; ``none`` = in memory) before
  the reply, so a restarted server keeps it. INFRA_ERROR and INVALID_INPUT are never stored.

:func:`start_background` runs the same server as a child process (tests, single-node training).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from rewards.cache import (
    DEFAULT_MAX_ENTRIES,
    ResultCache,
    cache_key,
    candidate_fingerprint,
    tools_fingerprint,
)
from rewards.config import RewardConfig, jobs_count, option
from rewards.health import HEALTH
from rewards.metrics import Counter, Gauge, Histogram, Registry
from rewards.score import canary_for, default_jobs, score
from rewards.tools import ToolNotFound, liberty_path, tool_versions
from rewards.types import LEVELS, RewardResult, Status, Task, TaskError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(
    os.environ.get("RTLFORGE_REWARD_CACHE", "~/.cache/rtlforge/reward-cache.sqlite")
).expanduser()
STAGES = ("format", "guard", "syntax", "function", "ppa")


@dataclass(frozen=True)
class ServerConfig:
    """Limits of the HTTP service (the scoring itself is configured by :class:`RewardConfig`)."""

    workers: int = option(0, "scoring threads; 0 = one per available core")
    queue_items: int = option(16384, "most items admitted but not finished; a request past it gets 429")
    max_items: int = option(4096, "most items in one request (413 above)")
    max_body_mb: float = option(32.0, "largest request body in MiB (413 above)")
    item_timeout_s: float = option(
        500.0,
        "an item not scored this long after admission is INFRA_ERROR; keep it below the clients' "
        "HTTP timeout (600 s by default) so they get an answer rather than a timeout",
    )

    def __post_init__(self) -> None:
        if self.workers < 0 or self.queue_items < 1 or self.max_items < 1 or self.max_body_mb <= 0:
            raise ValueError(
                f"bad server limits {self}: workers >= 0, queue_items >= 1, max_items >= 1, max_body_mb > 0"
            )
        if self.item_timeout_s <= 0:
            raise ValueError(f"item_timeout_s={self.item_timeout_s} must be > 0, e.g. 500")


def invalid_input(task_id: str, message: str) -> RewardResult:
    """A record the caller got wrong: reward null like INFRA_ERROR, but the caller's to fix."""
    return RewardResult(
        task_id=task_id, status=Status.INVALID_INPUT, passed=False, reward=None, levels={}, log=message
    )


def _copy(result: RewardResult, task_id: str, cached: bool) -> RewardResult:
    out = RewardResult.from_dict(result.to_dict())
    out.task_id = task_id
    out.cached = cached
    return out


# ------------------------------------------------------------------------------------- the engine
@dataclass
class Batch:
    """One request's items after parsing, keying and cache lookup; ``todo`` is what is left to score."""

    results: list[RewardResult | None]
    task_ids: list[str]
    slots: dict[str, list[int]] = field(default_factory=dict)  # key -> indices of the items with it
    todo: dict[str, tuple[Task, str]] = field(default_factory=dict)

    def fill(self, key: str, result: RewardResult, cached: bool = False) -> None:
        """Give ``result`` to every item of this batch with ``key``."""
        for index in self.slots.get(key, ()):
            if self.results[index] is None:
                self.results[index] = _copy(result, self.task_ids[index], cached)

    def finish(self) -> list[RewardResult]:
        missing = [i for i, r in enumerate(self.results) if r is None]
        if missing:
            raise RuntimeError(f"batch assembly left items {missing[:10]} without a result")
        return list(self.results)  # type: ignore[arg-type]


class ServerMetrics:
    """The series /metrics exposes."""

    def __init__(self, engine: ScoringEngine) -> None:
        r = self.registry = Registry()
        self.requests = r.add(
            Counter("rtlforge_requests_total", "POST /score requests by HTTP code", ["code"])
        )
        self.items = r.add(Counter("rtlforge_items_total", "items answered, by status", ["status"]))
        self.cache_hits = r.add(Counter("rtlforge_cache_hits_total", "items answered from the result cache"))
        self.cache_misses = r.add(
            Counter("rtlforge_cache_misses_total", "unique items not found in the cache")
        )
        self.deduplicated = r.add(
            Counter(
                "rtlforge_deduplicated_items_total", "items that shared another item's scoring (same key)"
            )
        )
        self.cancelled = r.add(
            Counter("rtlforge_cancelled_items_total", "queued items dropped on disconnect")
        )
        self.deadline = r.add(Counter("rtlforge_deadline_exceeded_total", "items past --item-timeout-s"))
        self.formal = r.add(
            Counter(
                "rtlforge_formal_total",
                "formal-level verdicts of items (proved, bounded, counterexample, unknown)",
                ["verdict"],
            )
        )
        self.stage = r.add(Histogram("rtlforge_stage_seconds", "seconds per scoring level", ["stage"]))
        self.item = r.add(Histogram("rtlforge_item_seconds", "seconds to score one unique item", ["status"]))
        self.request = r.add(Histogram("rtlforge_request_seconds", "seconds per POST /score"))
        r.add(Gauge("rtlforge_queue_depth", "items admitted, not yet started", lambda: engine.queued))
        r.add(Gauge("rtlforge_running_items", "items being scored now", lambda: engine.running))
        r.add(Gauge("rtlforge_workers", "scoring threads", lambda: engine.workers))
        r.add(Gauge("rtlforge_cache_hit_ratio", "cache hits / lookups since start", self._hit_ratio))
        r.add(Gauge("rtlforge_cache_entries", "results stored in the cache", lambda: len(engine.cache)))
        for series in (HEALTH.healthy_gauge, HEALTH.faults, HEALTH.canary_runs, HEALTH.golden_failures):
            r.add(series)

    def _hit_ratio(self) -> float:
        hits, misses = self.cache_hits.value(), self.cache_misses.value()
        return hits / (hits + misses) if hits + misses else 0.0


class ScoringEngine:
    """Parses items, keys them, answers from the cache and schedules the rest on a bounded thread pool.

    Used by the HTTP server and, unchanged, by the client's in-process mode, so both give the same
    results.
    """

    def __init__(
        self,
        config: RewardConfig,
        tasks: Mapping[str, Task] | None = None,
        *,
        workers: int | None = None,
        cache: ResultCache | None = None,
        queue_items: int = 16384,
    ) -> None:
        self.config = config
        self.config_hash = config.content_hash()
        self.tasks = {task_id: (task, task.content_hash()) for task_id, task in (tasks or {}).items()}
        self.workers = workers or default_jobs()
        self.cache = cache if cache is not None else ResultCache(None)
        self.queue_items = queue_items
        self.versions = tool_versions()
        self.liberty = _liberty_or_none()
        self.tools_key = tools_fingerprint(self.versions, self.liberty)
        self.pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="score")
        self._lock = threading.Lock()
        self._inflight: dict[str, tuple[Future, list[int]]] = {}  # key -> (future, [waiter count])
        self.pending = 0
        self.running = 0
        self._mean_item_s = 1.0
        self.metrics = ServerMetrics(self)

    @property
    def queued(self) -> int:
        return max(0, self.pending - self.running)

    # -------------------------------------------------------------------------- parsing and keying
    def resolve(self, item: Any) -> tuple[Task, str, str] | RewardResult:
        """(task, task hash, completion) for one wire item, or the INVALID_INPUT result saying why not."""
        if not isinstance(item, dict):
            return invalid_input(
                "", f"expected an object with 'task' or 'task_id' and 'completion', got {type(item).__name__}"
            )
        task_id = item.get("task_id")
        label = task_id if isinstance(task_id, str) else ""
        if item.get("task") is not None:
            resolved = self._inline_task(item["task"], task_id)
        elif isinstance(task_id, str):
            resolved = self.tasks.get(task_id) or invalid_input(
                task_id,
                f"unknown task id {task_id!r}; this server knows {len(self.tasks)} tasks "
                "(its --tasks files). Send the full record as 'task' or start the server with it",
            )
        else:
            resolved = invalid_input(label, "missing 'task' (a Task record) or 'task_id' (a string)")
        if isinstance(resolved, RewardResult):
            return resolved
        task, task_hash = resolved
        completion = item.get("completion")
        if not isinstance(completion, str):
            what = "missing" if completion is None else f"a {type(completion).__name__}, not a string"
            return invalid_input(task.id, f"'completion' is {what}")
        return task, task_hash, completion

    def _inline_task(self, record: Any, task_id: Any) -> tuple[Task, str] | RewardResult:
        try:
            task = record if isinstance(record, Task) else Task.from_dict(record)
        except TaskError as exc:
            return invalid_input(task_id if isinstance(task_id, str) else "", f"bad task record: {exc}")
        if isinstance(task_id, str) and task_id != task.id:
            return invalid_input(task_id, f"task_id {task_id!r} differs from task.id {task.id!r}")
        return task, task.content_hash()

    def prepare(self, items: list[Any]) -> Batch:
        """Parse and key every item and answer what the cache holds."""
        batch = Batch(results=[None] * len(items), task_ids=[""] * len(items))
        for index, item in enumerate(items):
            resolved = self.resolve(item)
            if isinstance(resolved, RewardResult):
                batch.results[index] = resolved
                batch.task_ids[index] = resolved.task_id
                continue
            task, task_hash, completion = resolved
            try:
                fingerprint = candidate_fingerprint(task, completion, self.config)
            except Exception:  # noqa: BLE001 - scoring it will report the failure for this item only
                log.exception("keying an item of task %s failed", task.id)
                fingerprint = f"unkeyable:{len(completion)}:{hash(completion)}"
            key = cache_key(task_hash, fingerprint, self.config_hash, self.tools_key)
            batch.task_ids[index] = task.id
            batch.slots.setdefault(key, []).append(index)
            batch.todo.setdefault(key, (task, completion))
        hits = self.cache.get_many(batch.todo)
        for key, result in hits.items():
            batch.fill(key, result, cached=True)
            del batch.todo[key]
        m = self.metrics
        m.cache_hits.inc(sum(len(batch.slots[k]) for k in hits))
        m.cache_misses.inc(len(batch.todo))
        m.deduplicated.inc(sum(len(batch.slots[k]) - 1 for k in batch.todo))
        return batch

    # --------------------------------------------------------------------------------- scheduling
    def admit(self, batch: Batch, force: bool = False) -> dict[str, Future] | None:
        """Futures for every key of ``batch.todo`` (shared with requests already scoring it), or
        ``None`` when the queue cannot take the new ones (unless ``force``)."""
        with self._lock:
            new = [k for k in batch.todo if k not in self._inflight]
            if not force and self.pending and self.pending + len(new) > self.queue_items:
                return None
            futures = {}
            for key in batch.todo:
                if key not in self._inflight:
                    future = self.pool.submit(self._score_one, key, *batch.todo[key])
                    self._inflight[key] = (future, [0])
                    self.pending += 1
                    future.add_done_callback(lambda _f, k=key: self._done(k))
                entry = self._inflight[key]
                entry[1][0] += 1
                futures[key] = entry[0]
            return futures

    def release(self, futures: Mapping[str, Future], cancel: bool = True) -> int:
        """This request no longer waits on ``futures``; with ``cancel``, unstarted ones nobody else
        waits on are dropped. Returns how many were dropped."""
        dropped = []
        with self._lock:
            for key, future in futures.items():
                entry = self._inflight.get(key)
                if entry is None or entry[0] is not future:
                    continue
                entry[1][0] -= 1
                if cancel and entry[1][0] <= 0 and not future.done():
                    dropped.append(future)
        cancelled = sum(1 for future in dropped if future.cancel())
        self.metrics.cancelled.inc(cancelled)
        return cancelled

    def _done(self, key: str) -> None:
        with self._lock:
            self._inflight.pop(key, None)
            self.pending -= 1

    def retry_after_s(self) -> int:
        """Seconds a rejected client should wait: the queue's drain time, 1–60."""
        return int(min(60, max(1, math.ceil(self.pending * self._mean_item_s / self.workers))))

    def _score_one(self, key: str, task: Task, completion: str) -> RewardResult:
        with self._lock:
            self.running += 1
        timings: dict[str, float] = {}
        start = time.perf_counter()
        try:
            result = score(task, completion, self.config, timings)
        except Exception as exc:  # noqa: BLE001 - a scorer bug must cost one item, not the batch
            log.error("scoring %s raised %s:\n%s", task.id, exc, traceback.format_exc())
            result = RewardResult.infra_error(task.id, f"scorer raised {type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self.running -= 1
        elapsed = time.perf_counter() - start
        self._mean_item_s = 0.9 * self._mean_item_s + 0.1 * elapsed
        self.cache.put(key, result)
        self.metrics.item.observe(elapsed, status=result.status.value)
        for stage, seconds in timings.items():
            self.metrics.stage.observe(seconds, stage=stage)
        return result

    # ---------------------------------------------------------------------------- whole batches
    def score_items(self, items: list[Any]) -> list[RewardResult]:
        """Score a batch in this process (no queue limit, no deadline): the client's in-process mode."""
        batch = self.prepare(items)
        futures = self.admit(batch, force=True) or {}
        for key, future in futures.items():
            batch.fill(key, future.result())
        return self.account(batch.finish())

    def account(self, results: list[RewardResult]) -> list[RewardResult]:
        for result in results:
            self.metrics.items.inc(status=result.status.value)
            if verdict := result.metrics.get("formal"):
                self.metrics.formal.inc(verdict=str(verdict).split(":")[0])
        return results

    def health(self) -> dict[str, Any]:
        """The /healthz body; runs the environment canary when it is due (see :mod:`rewards.health`)."""
        missing = sorted(name for name, version in self.versions.items() if version == "missing")
        liberty_needed = self.config.ppa_enabled and self.config.w_ppa > 0
        ok = not missing and (self.liberty is not None or not liberty_needed)
        fit = HEALTH.check(canary_for(self.config))
        return {
            "status": "ok" if ok and fit else "degraded" if fit else "unhealthy",
            "environment": HEALTH.state(),
            "tools": self.versions,
            "missing_tools": missing,
            "liberty": self.liberty,
            "tasks": len(self.tasks),
            "workers": self.workers,
            "queue_depth": self.queued,
            "running": self.running,
            "config_hash": self.config_hash,
            "cache": self.cache.path,
            "cache_entries": len(self.cache),
        }

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _liberty_or_none() -> str | None:
    try:
        return liberty_path()
    except ToolNotFound:
        return None


# ------------------------------------------------------------------------------------ HTTP layer
class BadRequest(Exception):
    """A request body that is not a batch; carries the HTTP code and the reason."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without buffering them."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(
            413,
            f"request body is {int(declared)} bytes, over the limit of {limit} "
            "(--max-body-mb); split the batch",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(
                413, f"request body exceeds the limit of {limit} bytes (--max-body-mb); split the batch"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def parse_batch(body: bytes, max_items: int) -> list[Any]:
    """The ``items`` list of a /score body; raises :class:`BadRequest` saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(400, f"request body is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            400, f"request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("items"), list):
        raise BadRequest(
            422, 'request body must be an object {"items": [{"task_id" or "task", "completion"}, ...]}'
        )
    unknown = sorted(set(payload) - {"items"})
    if unknown:
        raise BadRequest(422, f"request body has unknown fields {unknown}; the only field is 'items'")
    items = payload["items"]
    if len(items) > max_items:
        raise BadRequest(
            413, f"batch has {len(items)} items, over the limit of {max_items} (--max-items); split it"
        )
    return items


async def _await_batch(
    request: Request, engine: ScoringEngine, batch: Batch, futures: dict[str, Future], timeout_s: float
) -> bool:
    """Fill ``batch`` from ``futures``; False if the client went away (its queued items are dropped).
    Items late for the deadline become INFRA_ERROR but are still scored and cached for a retry."""
    deadline = time.monotonic() + timeout_s
    waiting = {asyncio.wrap_future(f): key for key, f in futures.items()}
    abandoned = True  # until the loop ends by completion or deadline (disconnect, shutdown)
    try:
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            done, _ = await asyncio.wait(list(waiting), timeout=min(0.5, remaining))
            for item in done:
                batch.fill(waiting.pop(item), item.result())
            if waiting and await request.is_disconnected():
                return False
        abandoned = False
        for key in waiting.values():
            engine.metrics.deadline.inc()
            batch.fill(
                key,
                RewardResult.infra_error(
                    batch.todo[key][0].id,
                    f"deadline exceeded: not scored within item_timeout_s="
                    f"{timeout_s:g} s of admission (queue depth {engine.queued}); the server is "
                    "overloaded or a tool hangs. Add workers or reward servers, or raise --item-timeout-s",
                ),
            )
        return True
    finally:
        engine.release(futures, cancel=abandoned)


def create_app(engine: ScoringEngine, server_config: ServerConfig) -> FastAPI:
    """The FastAPI application serving ``engine``."""
    app = FastAPI(
        title="rtlforge reward server",
        version="1",
        description="Scores Verilog completions with real EDA tools (see rewards/server.py).",
    )
    limit = int(server_config.max_body_mb * 1024 * 1024)

    @app.post("/score", openapi_extra=_openapi_score())
    async def score_endpoint(request: Request) -> Response:
        started = time.perf_counter()
        try:
            items = parse_batch(await read_body(request, limit), server_config.max_items)
        except BadRequest as exc:
            engine.metrics.requests.inc(code=str(exc.code))
            return JSONResponse({"detail": exc.detail}, status_code=exc.code)
        batch = await asyncio.to_thread(engine.prepare, items)
        futures = engine.admit(batch)
        if futures is None:
            engine.metrics.requests.inc(code="429")
            retry = engine.retry_after_s()
            return JSONResponse(
                {
                    "detail": f"queue full ({engine.pending} items pending, limit "
                    f"{engine.queue_items}); retry after {retry} s"
                },
                status_code=429,
                headers={"Retry-After": str(retry)},
            )
        if futures and not await _await_batch(request, engine, batch, futures, server_config.item_timeout_s):
            engine.metrics.requests.inc(code="499")
            return JSONResponse({"detail": "client disconnected"}, status_code=499)
        results = engine.account(batch.finish())
        body = json.dumps({"results": [r.to_dict() for r in results]}, ensure_ascii=False)
        engine.metrics.requests.inc(code="200")
        engine.metrics.request.observe(time.perf_counter() - started)
        return Response(body, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        health = await asyncio.to_thread(engine.health)
        return JSONResponse(health, status_code=200 if health["status"] == "ok" else 503)

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        text = await asyncio.to_thread(engine.metrics.registry.render)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app


def _openapi_score() -> dict:
    task = {
        "type": "object",
        "required": ["id", "prompt", "top_module", "reference"],
        "properties": {
            k: {"type": "string"}
            for k in ("id", "prompt", "top_module", "reference", "testbench", "interface")
        },
    }
    item = {
        "type": "object",
        "required": ["completion"],
        "properties": {"task": task, "task_id": {"type": "string"}, "completion": {"type": "string"}},
    }
    result = {
        "type": "object",
        "properties": {
            "task_id": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "passed": {"type": "boolean"},
            "reward": {"type": "number", "nullable": True},
            "levels": {"type": "object", "properties": {lv: {"type": "number"} for lv in LEVELS}},
            "metrics": {"type": "object"},
            "log": {"type": "string"},
            "cached": {"type": "boolean"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["items"],
                        "properties": {"items": {"type": "array", "items": item}},
                    }
                }
            },
        },
        "responses": {
            "200": {
                "description": "one RewardResult per item, in order",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"results": {"type": "array", "items": result}},
                        }
                    }
                },
            },
            "413": {"description": "body or batch too large"},
            "429": {"description": "queue full; see Retry-After"},
            "400": {"description": "not UTF-8 / not JSON"},
            "422": {"description": "not a batch"},
        },
    }


# ------------------------------------------------------------------------------ running a server
def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port=0`` picks a free one), so the printed URL is the real one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; with proto 0 it does
    # not, and every response on a kept-alive connection waits 40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen on {host}:{port}: {exc}. Pick another --port (0 = any free one)"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _watch_parent(parent_pid: int) -> None:
    """Stop this server when the process that started it is gone (a crashed trainer leaves no orphan)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent_pid:
                log.warning("parent process %d is gone; shutting down", parent_pid)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rewards.server",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port)")
    parser.add_argument("--config", default=None, help="reward config YAML (default: built-in defaults)")
    parser.add_argument(
        "--tasks", nargs="*", default=[], help="task files (JSONL/parquet) whose ids items may use"
    )
    parser.add_argument(
        "--cache",
        default=str(DEFAULT_CACHE),
        help="SQLite result cache ('none' = in memory only); env RTLFORGE_REWARD_CACHE",
    )
    parser.add_argument(
        "--cache-max-entries",
        type=int,
        default=DEFAULT_MAX_ENTRIES,
        help="results kept in the cache; the oldest are evicted past it (0 = unbounded)",
    )
    for name, f in ServerConfig.__dataclass_fields__.items():
        kind = jobs_count if name == "workers" else type(f.default)
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=kind, default=f.default, help=f.metadata["help"]
        )
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-level", default="INFO", help="logging level")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m rewards.server``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from rewards.config import ConfigError, load_reward_config
    from rewards.tasks import TaskFileError, load_task_index

    try:
        config = load_reward_config(args.config)
        tasks = load_task_index(args.tasks)
        limits = ServerConfig(**{name: getattr(args, name) for name in ServerConfig.__dataclass_fields__})
        cache = ResultCache(
            None if args.cache.lower() == "none" else args.cache, max_entries=args.cache_max_entries
        )
        sock = bind_socket(args.host, args.port)
    except (ConfigError, TaskFileError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    engine = ScoringEngine(
        config, tasks, workers=limits.workers or None, cache=cache, queue_items=limits.queue_items
    )
    if args.parent_pid:
        _watch_parent(args.parent_pid)
    health = engine.health()
    if health["status"] != "ok":
        log.warning(
            "toolchain incomplete or environment unfit (missing %s, liberty %s, environment: %s): "
            "affected items will be INFRA_ERROR",
            health["missing_tools"],
            health["liberty"],
            health["environment"]["reason"] or "ok",
        )
    print(
        f"rtlforge reward server listening on {url_of(sock)} (workers={engine.workers}, tasks={len(tasks)}, "
        f"cache={cache.path}, config={config.content_hash()})",
        flush=True,
    )
    _serve(create_app(engine, limits), sock, args.log_level)
    engine.close()
    return 0


def _serve(app: FastAPI, sock: socket.socket, log_level: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=log_level.lower(),
        access_log=False,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    uvicorn.Server(config).run(sockets=[sock])


# -------------------------------------------------------------------------- background servers
class ServerHandle:
    """A reward server running as a child process: ``.url``, ``.stop()``, ``.kill()`` (SIGKILL)."""

    def __init__(
        self, process: subprocess.Popen, url: str, workdir: tempfile.TemporaryDirectory, log_path: Path
    ) -> None:
        self.process = process
        self.url = url
        self.pid = process.pid
        self.log_path = log_path
        self._workdir = workdir

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._workdir.cleanup()

    def kill(self) -> None:
        """SIGKILL without any shutdown (what a crash looks like to clients)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_background(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: RewardConfig | str | Path | None = None,
    tasks: Iterable[Task] | Mapping[str, Task] | None = None,
    task_files: Iterable[str | Path] = (),
    workers: int | None = None,
    cache: str | Path | None = None,
    startup_timeout_s: float = 120.0,
    **limits: Any,
) -> ServerHandle:
    """Start ``python -m rewards.server`` as a child process and wait until it answers.

    Args:
        host, port: where to listen (``port=0``: a free port; the handle's ``url`` has the real one).
        config: a RewardConfig, a YAML path, or None for defaults.
        tasks: Task objects items may name by id (written to a private JSONL for the child);
            ``task_files`` adds task files by path.
        workers: scoring threads (None: one per core).
        cache: SQLite path; None keeps the cache in the child's memory.
        limits: other :class:`ServerConfig` fields (``queue_items``, ``max_items``, ``item_timeout_s`` ...).
    Returns:
        a :class:`ServerHandle`; the child also stops when this process exits.
    Raises:
        RuntimeError: the server exited or did not answer within ``startup_timeout_s`` (with its log).
    """
    workdir = tempfile.TemporaryDirectory(prefix="rtlforge-server-")
    root = Path(workdir.name)
    argv = [
        sys.executable,
        "-m",
        "rewards.server",
        "--host",
        host,
        "--port",
        str(port),
        "--cache",
        str(Path(cache).resolve()) if cache is not None else "none",
        "--parent-pid",
        str(os.getpid()),
    ]
    argv += ["--config", str(_config_file(config, root))] if config is not None else []
    files = [str(Path(p).resolve()) for p in task_files]
    if tasks is not None:
        files.append(str(_tasks_file(tasks, root)))
    argv += ["--tasks", *files] if files else []
    argv += ["--workers", str(workers or 0)]
    for name, value in limits.items():
        if name not in ServerConfig.__dataclass_fields__:
            raise TypeError(
                f"start_background got unknown limit {name!r}; valid: "
                f"{sorted(ServerConfig.__dataclass_fields__)}"
            )
        argv += [f"--{name.replace('_', '-')}", str(value)]
    log_path = root / "server.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_child_env()
        )
    url = _wait_listening(process, log_path, startup_timeout_s)
    log.info("reward server pid %d listening on %s", process.pid, url)
    return ServerHandle(process, url, workdir, log_path)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _config_file(config: RewardConfig | str | Path, root: Path) -> Path:
    if not isinstance(config, RewardConfig):
        return Path(config).resolve()
    path = root / "reward.json"  # JSON is YAML, and keeps floats exact
    path.write_text(json.dumps(config.to_dict()))
    return path


def _tasks_file(tasks: Iterable[Task] | Mapping[str, Task], root: Path) -> Path:
    path = root / "tasks.jsonl"
    values = tasks.values() if isinstance(tasks, Mapping) else tasks
    with path.open("w", encoding="utf-8") as handle:
        for task in values:
            handle.write(json.dumps(task.to_dict(), ensure_ascii=False) + "\n")
    return path


def _wait_listening(process: subprocess.Popen, log_path: Path, timeout_s: float) -> str:
    """The URL the child printed, once it also answers /healthz."""
    import httpx

    deadline = time.monotonic() + timeout_s
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"reward server exited with code {process.returncode} during startup:\n"
                f"{log_path.read_text(errors='replace')[-4000:]}"
            )
        if url is None:
            for line in log_path.read_text(errors="replace").splitlines():
                if " listening on " in line:
                    url = line.split(" listening on ")[1].split()[0]
        if url is not None:
            try:
                httpx.get(url + "/healthz", timeout=5.0)
                return url
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(
        f"reward server did not answer within {timeout_s} s:\n{log_path.read_text(errors='replace')[-4000:]}"
    )


if __name__ == "__main__":
    sys.exit(main())
