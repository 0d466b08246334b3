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
* The rest go to a pool of ``--workers`` threads (the tools are sandboxed subprocesses, so threads do
  not hold each other up), in units of up to ``--batch-size`` candidates that share one Verilator and
  one Icarus process (:mod:`rewards.batch`; same verdicts as one at a time). A request that would push more
  than ``--queue-items`` items into the queue is answered 429 with ``Retry-After``; an idle server
  admits any batch up to ``--max-items``.
* An item not finished ``--item-timeout-s`` after its request was admitted comes back as
  ``INFRA_ERROR`` (reward null): the server ran out of time, the candidate did not fail. Its scoring
  goes on and is cached, so a retry finds it.
* When the client disconnects, its items that have not started are dropped.
* Each computed result is committed to the SQLite cache (``--cache``; default
  ``$RTLFORGE_REWARD_CACHE`` or ``~/.cache/rtlforge/reward-cache.sqlite``; ``none`` = in memory) before
  the reply, so a restarted server keeps it. INFRA_ERROR and INVALID_INPUT are never stored.

:func:`rewards.background.start_background` runs the same server as a child process (tests,
single-node training).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from rewards.cache import DEFAULT_MAX_ENTRIES, ResultCache
from rewards.config import jobs_count, option
from rewards.engine import Batch, ScoringEngine
from rewards.types import LEVELS, RewardResult, Status

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
    batch_size: int = option(
        32, "most candidates linted and co-simulated in one tool process (rewards/batch.py); 1 = one each"
    )
    max_items: int = option(4096, "most items in one request (413 above)")
    max_body_mb: float = option(32.0, "largest request body in MiB (413 above)")
    item_timeout_s: float = option(
        500.0,
        "an item not scored this long after admission is INFRA_ERROR; keep it below the clients' "
        "HTTP timeout (600 s by default) so they get an answer rather than a timeout",
    )

    def __post_init__(self) -> None:
        if (
            self.workers < 0
            or self.queue_items < 1
            or self.max_items < 1
            or self.max_body_mb <= 0
            or self.batch_size < 1
        ):
            raise ValueError(
                f"bad server limits {self}: workers >= 0, queue_items >= 1, max_items >= 1, "
                "max_body_mb > 0, batch_size >= 1"
            )
        if self.item_timeout_s <= 0:
            raise ValueError(f"item_timeout_s={self.item_timeout_s} must be > 0, e.g. 500")


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
                    batch.todo[key].task.id,
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
        config,
        tasks,
        workers=limits.workers or None,
        cache=cache,
        queue_items=limits.queue_items,
        batch_size=limits.batch_size,
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
if __name__ == "__main__":
    sys.exit(main())
