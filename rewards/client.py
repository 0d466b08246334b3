"""Client of the reward server, an in-process stand-in with the same results, and a TRL reward function.

    client = RewardClient(["http://rewards-0:8100", "http://rewards-1:8100"], tasks=tasks_by_id)
    results = client.score([{"task_id": "alu/add8", "completion": text}, ...])   # list[RewardResult]
    trainer = GRPOTrainer(..., reward_funcs=[make_trl_reward(client)])

Remote mode sends exact duplicates once, spreads the unique items over the servers (items of one
task stay on one server, where its golden artefacts are warm), keeps connections open between
calls, and retries with exponential backoff only what may succeed on a second try: refused or
dropped connections, timeouts of the HTTP request, 429 (honouring ``Retry-After``), 500/502/503/504.
Each retry goes to the next server in the list. A scored result is never retried, whatever its
status (a SIM_TIMEOUT is the candidate's). Items still unanswered after the last retry come back as
``INFRA_ERROR`` (reward ``None``), so an outage is counted, never read as wrong answers; a request the
server refuses as malformed (other 4xx) raises :class:`RewardClientError`.

With ``urls=None`` the same :class:`rewards.engine.ScoringEngine` runs in this process (an in-memory
cache, no queue limit), so results are identical to a server's apart from ``cached``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any

import httpx

from rewards.config import RewardConfig
from rewards.types import LEVELS, RewardResult, Status, Task

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class RewardClientError(RuntimeError):
    """The server refused a request as malformed: retrying would not help; the message says why."""


class RewardInfraError(RuntimeError):
    """Too many items could not be scored (INFRA_ERROR) to keep training on the rewards."""


class _LoopThread:
    """A private event loop in a daemon thread, so sync callers reuse one connection pool across calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="reward-client", daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


def _encode(value: Any) -> Any:
    if isinstance(value, Task):
        return value.to_dict()
    raise TypeError(f"reward items must be JSON data or Task objects, got {type(value).__name__}")


class RewardClient:
    """Scores batches of ``{"task": Task | dict, "completion": str}`` / ``{"task_id": str, "completion": str}``.

    Args:
        urls: reward servers (``http://host:port``); ``None`` or empty = score in this process.
        tasks: tasks by id (a mapping or an iterable of Task). In remote mode an item whose id a server
            does not know is re-sent with the full record from here; in-process they are the id index.
        config: reward config for in-process mode; in remote mode it is compared with each
            server's (``/healthz``) and a mismatch is logged as a warning.
        timeout_s: HTTP timeout of one request; keep it above the servers' ``--item-timeout-s``
            (500 s by default) so a slow batch is answered, with INFRA_ERROR for its late items.
        retries: retries of one request after the first try (transient failures only).
        backoff_s, max_backoff_s: exponential backoff base and cap (with jitter).
        max_items, max_request_mb: split a batch into requests no larger than this.
        send_tasks: always send full task records (servers then need no task files).
        workers: in-process scoring threads (default: one per core).
    """

    def __init__(
        self,
        urls: Sequence[str] | None = None,
        *,
        tasks: Mapping[str, Task] | Iterable[Task] | None = None,
        config: RewardConfig | None = None,
        timeout_s: float = 600.0,
        retries: int = 8,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_items: int = 1024,
        max_request_mb: float = 16.0,
        send_tasks: bool = False,
        workers: int | None = None,
    ) -> None:
        self.urls = [u.rstrip("/") for u in (urls or [])]
        values = tasks.values() if isinstance(tasks, Mapping) else (tasks or [])
        self.tasks: dict[str, Task] = {t.id: t for t in values}
        self.config = config
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_items = max_items
        self.max_request_bytes = int(max_request_mb * 1024 * 1024)
        self.send_tasks = send_tasks
        self.workers = workers
        self.requests = 0
        self.retried = 0
        self._engine = None
        self._loop: _LoopThread | None = None
        self._http: httpx.AsyncClient | None = None
        self._checked: set[str] = set()
        self._unknown_remote: set[str] = set()  # task ids a server did not know: sent in full from now on
        self._lock = threading.Lock()

    # ---------------------------------------------------------------------------------- public
    def score(self, items: Sequence[Mapping[str, Any]]) -> list[RewardResult]:
        """One RewardResult per item, in order (see the module docstring for failure handling)."""
        if not self.urls:
            return self._engine_for().score_items(list(items))
        return self._loop_for().submit(self._score_remote(list(items))).result()

    async def ascore(self, items: Sequence[Mapping[str, Any]]) -> list[RewardResult]:
        """:meth:`score` for async callers (runs on the client's own loop; safe from any loop)."""
        if not self.urls:
            return await asyncio.to_thread(self.score, items)
        return await asyncio.wrap_future(self._loop_for().submit(self._score_remote(list(items))))

    def close(self) -> None:
        """Close connections and the in-process engine; the client may not be used afterwards."""
        if self._loop is not None:
            if self._http is not None:
                self._loop.submit(self._http.aclose()).result(timeout=10)
            self._loop.close()
            self._loop = self._http = None
        if self._engine is not None:
            self._engine.close()
            self._engine = None

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ in-process
    def _engine_for(self):
        with self._lock:
            if self._engine is None:
                from rewards.engine import ScoringEngine

                self._engine = ScoringEngine(self.config or RewardConfig(), self.tasks, workers=self.workers)
            return self._engine

    # ---------------------------------------------------------------------------------- remote
    def _loop_for(self) -> _LoopThread:
        with self._lock:
            if self._loop is None:
                self._loop = _LoopThread()
            return self._loop

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # httpcore writes headers and body separately; under Nagle the second write can wait for a
            # delayed ACK (40 ms on Linux) on a kept-alive connection. asyncio usually sets this already.
            transport = httpx.AsyncHTTPTransport(
                socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
            )
            self._http = httpx.AsyncClient(
                transport=transport, timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s))
            )
        return self._http

    def _wire(self, item: Any, full: bool) -> Any:
        if not isinstance(item, Mapping):
            return item  # the server answers INVALID_INPUT for it, as in-process mode does
        wire = dict(item)
        task_id = wire.get("task_id")
        if "task" in wire or not isinstance(task_id, str) or task_id not in self.tasks:
            return wire
        if full or self.send_tasks or task_id in self._unknown_remote:
            wire["task"] = self.tasks[task_id]
        return wire

    async def _score_remote(self, items: list[Mapping[str, Any]]) -> list[RewardResult]:
        wires = [self._wire(item, full=False) for item in items]
        results = await self._score_unique(wires)
        retry = [
            i
            for i, (w, r) in enumerate(zip(wires, results, strict=True))
            if r.status is Status.INVALID_INPUT
            and isinstance(w, dict)
            and "task" not in w
            and w.get("task_id") in self.tasks
        ]
        if retry:
            log.info("reward server does not know %d task ids; re-sending them with full records", len(retry))
            self._unknown_remote.update(wires[i]["task_id"] for i in retry)
            again = await self._score_unique([self._wire(items[i], full=True) for i in retry])
            for index, result in zip(retry, again, strict=True):
                results[index] = result
        return results

    async def _score_unique(self, wires: list[dict[str, Any]]) -> list[RewardResult]:
        """Send each distinct item once; copies for the duplicates."""
        blobs = [json.dumps(w, sort_keys=True, default=_encode, ensure_ascii=False) for w in wires]
        first: dict[str, int] = {}
        for index, blob in enumerate(blobs):
            first.setdefault(blob, index)
        unique = sorted(first.values())
        requests = self._plan(unique, wires, blobs)
        if self.config is not None:
            await asyncio.gather(*(self._check_config(self.urls[u]) for u in {u for u, _ in requests}))
        answers = await asyncio.gather(
            *(self._send(u, [blobs[i] for i in idx], [wires[i] for i in idx]) for u, idx in requests)
        )
        by_index = {
            i: r
            for (_, idx), res in zip(requests, answers, strict=True)
            for i, r in zip(idx, res, strict=True)
        }
        out = []
        for index, blob in enumerate(blobs):
            source = first[blob]
            out.append(
                by_index[source] if source == index else RewardResult.from_dict(by_index[source].to_dict())
            )
        return out

    def _plan(self, unique: list[int], wires: list[dict], blobs: list[str]) -> list[tuple[int, list[int]]]:
        """(server index, item indices) per request: tasks kept together, servers balanced, size-capped."""
        groups: dict[str, list[int]] = {}
        for index in unique:
            groups.setdefault(_task_label(wires[index]), []).append(index)
        loads = [0] * max(1, len(self.urls))
        assigned: list[list[int]] = [[] for _ in loads]
        for group in sorted(groups.values(), key=len, reverse=True):
            target = loads.index(min(loads))
            assigned[target].extend(group)
            loads[target] += len(group)
        requests = []
        for server, indices in enumerate(assigned):
            chunk: list[int] = []
            size = 0
            for index in sorted(indices):
                if chunk and (
                    len(chunk) >= self.max_items or size + len(blobs[index]) > self.max_request_bytes
                ):
                    requests.append((server, chunk))
                    chunk, size = [], 0
                chunk.append(index)
                size += len(blobs[index]) + 2
            if chunk:
                requests.append((server, chunk))
        return requests

    async def _send(self, server: int, blobs: list[str], wires: list[dict]) -> list[RewardResult]:
        """POST one request, retrying transient failures on the next server; INFRA_ERROR if all fail."""
        body = ('{"items": [' + ", ".join(blobs) + "]}").encode("utf-8", "surrogatepass")
        last = ""
        for attempt in range(self.retries + 1):
            url = self.urls[(server + attempt) % len(self.urls)]
            self.requests += 1
            cycle = attempt // len(self.urls)  # back off once per pass over the servers
            delay = min(self.max_backoff_s, self.backoff_s * 2**cycle) * (0.5 + random.random() / 2)
            try:
                response = await self._client().post(
                    f"{url}/score", content=body, headers={"content-type": "application/json"}
                )
            except httpx.TransportError as exc:
                last = f"{url}: {type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return _parse_results(url, response, len(wires))
                detail = _detail(response)
                if response.status_code not in RETRY_STATUS:
                    raise RewardClientError(
                        f"reward server {url} refused a batch of {len(wires)} items (HTTP {response.status_code}): "
                        f"{detail}. Fix the request; retrying would not help"
                    )
                last = f"{url}: HTTP {response.status_code}: {detail}"
                delay = max(delay, min(self.max_backoff_s, _retry_after(response)))
            if attempt < self.retries:
                self.retried += 1
                if (attempt + 1) % len(self.urls):
                    log.warning("reward request failed (%s); trying the next server", last)
                    continue
                log.warning(
                    "reward request failed (%s); retry %d/%d in %.1f s",
                    last,
                    attempt + 1,
                    self.retries,
                    delay,
                )
                await asyncio.sleep(delay)
        log.error(
            "reward servers %s failed %d times; %d items become INFRA_ERROR (last: %s)",
            self.urls,
            self.retries + 1,
            len(wires),
            last,
        )
        message = (
            f"reward servers unreachable after {self.retries + 1} attempts (last: {last}); "
            "check that the servers run and are reachable, or raise retries"
        )
        return [RewardResult.infra_error(_task_label(w), message) for w in wires]

    async def _check_config(self, url: str) -> None:
        if url in self._checked or self.config is None:
            return
        self._checked.add(url)
        try:
            response = await self._client().get(f"{url}/healthz", timeout=10.0)
            remote = response.json().get("config_hash")
        except (httpx.HTTPError, ValueError) as exc:
            log.debug("no /healthz from %s: %s", url, exc)
            return
        if remote and remote != self.config.content_hash():
            log.warning(
                "reward server %s scores with another reward config (hash %s, this client's %s): "
                "rewards will follow the server's config; start it with the same --config",
                url,
                remote,
                self.config.content_hash(),
            )


def _task_label(wire: Any) -> str:
    if not isinstance(wire, dict):
        return ""
    task = wire.get("task")
    if isinstance(task, Task):
        return task.id
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        return task["id"]
    return wire["task_id"] if isinstance(wire.get("task_id"), str) else ""


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:300]))
    except (ValueError, AttributeError):
        return response.text[:300]


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(60.0, float(response.headers.get("retry-after", 0)))
    except ValueError:
        return 0.0


def _parse_results(url: str, response: httpx.Response, expected: int) -> list[RewardResult]:
    try:
        results = [RewardResult.from_dict(r) for r in response.json()["results"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RewardClientError(
            f"reward server {url} sent an unreadable answer ({exc}): "
            f"{response.text[:200]!r}. Is it an rtlforge reward server?"
        ) from exc
    if len(results) != expected:
        raise RewardClientError(
            f"reward server {url} answered {len(results)} results for {expected} items; "
            "client and server versions may differ"
        )
    return results


# ------------------------------------------------------------------------------------------ TRL
def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a chat message list (assistant contents joined)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return str(completion.get("content") or "")
    if isinstance(completion, list):
        messages = [m for m in completion if isinstance(m, dict)]
        chosen = [m for m in messages if m.get("role") == "assistant"] or messages
        return "".join(_content_text(m.get("content")) for m in chosen)
    raise TypeError(
        f"a completion must be a string or a list of chat messages, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # multimodal-style parts: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


class TRLReward:
    """The TRL reward function: one ``client.score`` call per batch (see :func:`make_trl_reward`).

    Called by TRL as ``f(prompts=..., completions=..., completion_ids=..., task_id=[...],
    trainer_state=..., log_metric=..., log_extra=...)`` (dataset columns as keyword lists). Returns each
    item's reward, ``None`` for INFRA_ERROR (TRL turns it into NaN and leaves the completion out of the
    group baseline and the loss).

    * Shaping: DAPO's soft overlong punishment (``overlong_buffer_len`` > 0 with
      ``max_completion_length``): 0 up to ``max_completion_length - buffer`` tokens, then linear down
      to ``-overlong_penalty``.
    * ``shuffle_seed``: a control run's rewards — the same values, shuffled across the batch, so they
      carry no information about the completions they are given to.
    * Logging through ``log_metric``: the mean of every level, the fraction of every status, the pass
      rate, the cache-hit fraction, the formal mix, the INFRA fraction; each completion's status through
      ``log_extra``.
    * Counting (the one INFRA counter): ``infra_total`` / ``scored_total`` across calls,
      ``last_counts`` = (infra, items) of the latest call, ``last_rewards`` (NaN for INFRA) and
      ``last_infra_log`` for a trainer's own checks. Once ``scored_total >= min_items``, a cumulative
      INFRA rate above ``fail_on_infra_rate`` raises :class:`RewardInfraError` (``None`` leaves the
      stop to the caller, e.g. a trainer that checks each batch). INVALID_INPUT items (unknown task
      ids) raise ValueError.
    """

    __name__ = "verilog"

    def __init__(
        self,
        client: RewardClient,
        *,
        fail_on_infra_rate: float | None = 0.1,
        min_items: int = 64,
        metric_prefix: str = "verilog",
        max_completion_length: int | None = None,
        overlong_buffer_len: int = 0,
        overlong_penalty: float = 1.0,
        shuffle_seed: int | None = None,
    ) -> None:
        if overlong_buffer_len and not max_completion_length:
            raise ValueError("overlong_buffer_len needs max_completion_length (the generation limit)")
        self.client = client
        self.fail_on_infra_rate = fail_on_infra_rate
        self.min_items = min_items
        self.metric_prefix = metric_prefix
        self.max_len = max_completion_length or 0
        self.buffer = overlong_buffer_len
        self.penalty = overlong_penalty
        self.shuffle = None if shuffle_seed is None else random.Random(shuffle_seed)
        self.infra_total = 0
        self.scored_total = 0
        self.last_counts = (0, 0)
        self.last_rewards: list[float] = []
        self.last_infra_log = ""

    @property
    def infra_rate(self) -> float:
        return self.infra_total / self.scored_total if self.scored_total else 0.0

    def overlong(self, length: int) -> float:
        """DAPO soft overlong punishment of a completion of ``length`` tokens (0 without a buffer)."""
        if not self.buffer:
            return 0.0
        excess = length - (self.max_len - self.buffer)
        return -self.penalty * min(1.0, excess / self.buffer) if excess > 0 else 0.0

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] = (),
        completion_ids: Any = None,
        task_id: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if task_id is None:
            raise ValueError(
                "the reward needs each example's task id: give the training dataset a 'task_id' "
                "column (TRL passes dataset columns to reward functions)"
            )
        items = [
            {"task_id": tid, "completion": completion_text(c)}
            for tid, c in zip(task_id, completions, strict=True)
        ]
        results = self.client.score(items)
        invalid = [r for r in results if r.status is Status.INVALID_INPUT]
        if invalid:
            raise ValueError(
                f"{len(invalid)} of {len(results)} reward items were invalid, e.g. {invalid[0].log}; "
                "pass the training tasks to RewardClient(tasks=...) or to the server's --tasks"
            )
        rewards: list[float | None] = [r.reward for r in results]
        infra = sum(1 for r in rewards if r is None)
        self.last_counts = (infra, len(rewards))
        self.last_infra_log = next((r.log for r in results if r.reward is None), self.last_infra_log)
        self.infra_total += infra
        self.scored_total += len(rewards)
        log_metric = kwargs.get("log_metric")
        self._log(results, log_metric, kwargs.get("log_extra"))
        if self.buffer and completion_ids is not None:
            penalties = [self.overlong(len(ids)) for ids in completion_ids]
            rewards = [None if r is None else r + p for r, p in zip(rewards, penalties, strict=True)]
            if log_metric is not None:
                log_metric("rewards/overlong_penalty", sum(penalties) / max(1, len(penalties)))
        if self.shuffle is not None:
            self.shuffle.shuffle(rewards)
        self.last_rewards = [math.nan if r is None else float(r) for r in rewards]
        if log_metric is not None:
            log_metric("rewards/infra_error_frac", infra / max(1, len(rewards)))
        self._check_infra()
        return rewards

    def _log(
        self, results: list[RewardResult], log_metric: Callable | None, log_extra: Callable | None
    ) -> None:
        if log_extra is not None:
            log_extra(f"{self.metric_prefix}_status", [r.status.value for r in results])
        if log_metric is None or not results:
            return
        scored = [r for r in results if r.reward is not None]
        for level in LEVELS:
            if scored:
                log_metric(
                    f"{self.metric_prefix}/level/{level}",
                    sum(r.levels.get(level, 0.0) for r in scored) / len(scored),
                )
        for status in Status:
            log_metric(
                f"{self.metric_prefix}/status/{status.value}",
                sum(r.status is status for r in results) / len(results),
            )
        log_metric(f"{self.metric_prefix}/pass_rate", sum(r.passed for r in results) / len(results))
        log_metric(f"{self.metric_prefix}/cached_frac", sum(r.cached for r in results) / len(results))
        # formal level outcomes per step, as fractions of the batch ("bounded:K" counts as bounded,
        # "unknown: <reason>" as unknown; designs that did not reach the level count in none)
        verdicts = [str(r.metrics.get("formal", "")).split(":")[0] for r in results]
        for verdict in ("proved", "bounded", "counterexample", "unknown"):
            log_metric(f"{self.metric_prefix}/formal/{verdict}", verdicts.count(verdict) / len(results))

    def _check_infra(self) -> None:
        if self.fail_on_infra_rate is None or self.scored_total < self.min_items:
            return
        if self.infra_rate > self.fail_on_infra_rate:
            raise RewardInfraError(
                f"{self.infra_total} of {self.scored_total} completions could not be scored (INFRA_ERROR "
                f"rate {self.infra_rate:.1%} > fail_on_infra_rate={self.fail_on_infra_rate}); e.g. "
                f"{self.last_infra_log[:300]!r}. Check the reward servers (/healthz) and the toolchain"
            )


def make_trl_reward(client: RewardClient, **options: Any) -> TRLReward:
    """A reward function for ``GRPOTrainer(reward_funcs=[...])``: :class:`TRLReward` over ``client``
    (``options``: ``fail_on_infra_rate``, ``min_items``, ``max_completion_length``,
    ``overlong_buffer_len``, ``overlong_penalty``, ``shuffle_seed``)."""
    return TRLReward(client, **options)
