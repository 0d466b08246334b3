"""The scoring engine: the one batch path of the reward stack.

The HTTP server (:mod:`rewards.server`), the client's in-process mode, the offline CLI
(``python -m rewards score``), evals and corpus verification all score through
:class:`ScoringEngine` (:func:`score_batch` is the engine for one call). Per batch:

1. **Plan** each item once (:meth:`ScoringEngine.plan`): resolve its task, extract the completion's Verilog
   (:func:`rewards.score.extract`, the only place a completion is extracted) and hash what the score
   depends on into the cache key (task content, reward config, tool versions, candidate as scored).
2. **Deduplicate**: items with one key are scored once, within a batch and across requests in flight.
3. **Answer from the cache** what it holds (``cached: true``).
4. **Schedule** the rest on a bounded thread pool (the tools are sandboxed subprocesses, so threads
   do not hold each other up). Candidates that can share tool processes go in batches of up to
   ``batch_size``, spread evenly over the workers: :func:`rewards.score.score_many` lints and
   co-simulates each batch in one Verilator and one Icarus run (:mod:`rewards.batch`); every other
   item runs :func:`rewards.score.score` on its own. Either way each item uses its plan's extraction.

A scorer bug costs its item (INFRA_ERROR), never the batch.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from rewards.batch import MAX_BATCH, batchable, looped
from rewards.cache import ResultCache, cache_key, candidate_fingerprint, tools_fingerprint
from rewards.config import RewardConfig
from rewards.extract import Extraction
from rewards.health import HEALTH
from rewards.metrics import Counter, Gauge, Histogram, Registry
from rewards.score import cached_tool_versions, canary_for, default_jobs, extract, score, score_many
from rewards.tools import ToolNotFound, liberty_path
from rewards.types import RewardResult, Status, Task, TaskError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """One item ready to score: its task, the completion, the extraction done once, and its key."""

    task: Task
    completion: str
    extraction: Extraction | None  # None: rejected before extraction (empty, too long)
    key: str


def invalid_input(task_id: str, message: str) -> RewardResult:
    """A record the caller got wrong: reward null like INFRA_ERROR, but the caller's to fix."""
    return RewardResult(
        task_id=task_id, status=Status.INVALID_INPUT, passed=False, reward=None, levels={}, log=message
    )


def _copy(result: RewardResult, task_id: str, cached: bool) -> RewardResult:
    """An item's own copy of a shared result (a caller may change what it gets)."""
    return replace(
        result,
        task_id=task_id,
        cached=cached,
        levels=dict(result.levels),
        metrics=copy.deepcopy(result.metrics),
    )


# ------------------------------------------------------------------------------------- the engine
def extract_and_fingerprint(
    task: Task, completion: str, config: RewardConfig
) -> tuple[Extraction | None, str]:
    """The completion's extraction and the fingerprint of what its score depends on."""
    extraction = extract(task, completion, config)
    return extraction, candidate_fingerprint(completion, config, extraction)


@dataclass
class Batch:
    """One request's items after parsing, keying and cache lookup; ``todo`` is what is left to score."""

    results: list[RewardResult | None]
    task_ids: list[str]
    codes: list[str | None] = field(default_factory=list)  # each item's Verilog as extracted (and scored)
    slots: dict[str, list[int]] = field(default_factory=dict)  # key -> indices of the items with it
    todo: dict[str, Plan] = field(default_factory=dict)

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
        batch_size: int = MAX_BATCH,
    ) -> None:
        self.config = config
        self.batch_size = batch_size
        self.config_hash = config.content_hash()
        self.tasks = {task_id: (task, task.content_hash()) for task_id, task in (tasks or {}).items()}
        self.workers = workers or default_jobs()
        self.cache = cache if cache is not None else ResultCache(None)
        self.queue_items = queue_items
        self.versions = cached_tool_versions()
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
        return task, task.content_hash()  # computed once per Task object

    def prepare(self, items: list[Any]) -> Batch:
        """Parse and key every item and answer what the cache holds."""
        batch = Batch(results=[None] * len(items), task_ids=[""] * len(items), codes=[None] * len(items))
        for index, item in enumerate(items):
            resolved = self.resolve(item)
            if isinstance(resolved, RewardResult):
                batch.results[index] = resolved
                batch.task_ids[index] = resolved.task_id
                continue
            task, task_hash, completion = resolved
            item_plan = self.plan(task, task_hash, completion)
            batch.task_ids[index] = task.id
            batch.codes[index] = item_plan.extraction.code if item_plan.extraction is not None else None
            batch.slots.setdefault(item_plan.key, []).append(index)
            batch.todo.setdefault(item_plan.key, item_plan)
        hits = self.cache.get_many(batch.todo)
        for key, result in hits.items():
            batch.fill(key, result, cached=True)
            del batch.todo[key]
        m = self.metrics
        m.cache_hits.inc(sum(len(batch.slots[k]) for k in hits))
        m.cache_misses.inc(len(batch.todo))
        m.deduplicated.inc(sum(len(batch.slots[k]) - 1 for k in batch.todo))
        return batch

    def plan(self, task: Task, task_hash: str, completion: str) -> Plan:
        """Extract ``completion`` once and key it (see the module docstring)."""
        try:
            extraction, fingerprint = extract_and_fingerprint(task, completion, self.config)
        except Exception:  # noqa: BLE001 - scoring it will report the failure for this item only
            log.exception("extracting an item of task %s failed", task.id)
            extraction, fingerprint = None, f"unkeyable:{len(completion)}:{hash(completion)}"
        key = cache_key(task_hash, fingerprint, self.config_hash, self.tools_key)
        return Plan(task, completion, extraction, key)

    # --------------------------------------------------------------------------------- scheduling
    def admit(self, batch: Batch, force: bool = False) -> dict[str, Future] | None:
        """Futures for every key of ``batch.todo`` (shared with requests already scoring it), or
        ``None`` when the queue cannot take the new ones (unless ``force``)."""
        with self._lock:
            new = [k for k in batch.todo if k not in self._inflight]
            if not force and self.pending and self.pending + len(new) > self.queue_items:
                return None
            for group in self._groups([(key, batch.todo[key]) for key in new]):
                futures_of_group = []
                for key, _ in group:
                    future: Future = Future()
                    self._inflight[key] = (future, [0])
                    self.pending += 1
                    future.add_done_callback(lambda _f, k=key: self._done(k))
                    futures_of_group.append(future)
                self.pool.submit(self._score_group, group, futures_of_group)
            futures = {}
            for key in batch.todo:
                entry = self._inflight[key]
                entry[1][0] += 1
                futures[key] = entry[0]
            return futures

    def _groups(self, todo: list[tuple[str, Plan]]) -> list[list[tuple[str, Plan]]]:
        """Work units for the pool: candidates that can share tool processes (:mod:`rewards.batch`)
        split evenly over the workers, at most ``batch_size`` each; every other item on its own."""
        together = [(key, item) for key, item in todo if self._batchable(item)]
        # candidates with loops batch only with each other (rewards.batch): keep them in few groups
        together.sort(key=lambda pair: looped(pair[1].extraction.code))
        alone = [[(key, item)] for key, item in todo if not self._batchable(item)]
        if not together:
            return alone
        # a whole number of rounds over the workers, so that no worker idles through the last round
        rounds = math.ceil(len(together) / (self.batch_size * self.workers))
        count = min(len(together), rounds * self.workers)
        size = math.ceil(len(together) / count)
        return [together[i : i + size] for i in range(0, len(together), size)] + alone

    def _batchable(self, item: Plan) -> bool:
        code = item.extraction.code if item.extraction is not None else None
        return self.batch_size > 1 and code is not None and batchable(code, item.task.top_module)

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

    def _score_group(self, group: list[tuple[str, Plan]], futures: list[Future]) -> None:
        """Score one work unit and resolve its futures (cancelled ones are skipped)."""
        live = [
            (key, item, f)
            for (key, item), f in zip(group, futures, strict=True)
            if f.set_running_or_notify_cancel()
        ]
        if not live:
            return
        with self._lock:
            self.running += len(live)
        timings: list[dict[str, float]] = [{} for _ in live]
        start = time.perf_counter()
        try:
            try:
                results = score_many(
                    [(i.task, i.completion, i.extraction) for _, i, _ in live], self.config, timings
                )
            except Exception:  # noqa: BLE001 - a scorer bug must cost its own item, not its batch
                log.error(
                    "scoring a batch raised, scoring its items one at a time:\n%s", traceback.format_exc()
                )
                results = [self._score_alone(item, t) for (_, item, _), t in zip(live, timings, strict=True)]
        finally:
            with self._lock:
                self.running -= len(live)
        elapsed = (time.perf_counter() - start) / len(live)
        self._mean_item_s = 0.9 * self._mean_item_s + 0.1 * elapsed
        for (key, _, future), result, stages in zip(live, results, timings, strict=True):
            self.cache.put(key, result)
            self.metrics.item.observe(elapsed, status=result.status.value)
            for stage, seconds in stages.items():
                self.metrics.stage.observe(seconds, stage=stage)
            future.set_result(result)

    def _score_alone(self, item: Plan, timings: dict[str, float]) -> RewardResult:
        try:
            return score(item.task, item.completion, self.config, timings, item.extraction)
        except Exception as exc:  # noqa: BLE001 - a scorer bug must cost one item, not the batch
            log.error("scoring %s raised %s:\n%s", item.task.id, exc, traceback.format_exc())
            return RewardResult.infra_error(item.task.id, f"scorer raised {type(exc).__name__}: {exc}")

    # ---------------------------------------------------------------------------- whole batches
    def score_items(
        self, items: list[Any], progress: Callable[[int], None] | None = None
    ) -> list[RewardResult]:
        """Score a batch in this process (no queue limit, no deadline): the client's in-process mode,
        the offline CLI, evals. ``progress(n)`` is called with the number of items each finished
        unique item answers (cache hits count at once)."""
        return [result for result, _ in self.score_items_with_code(items, progress)]

    def score_items_with_code(
        self, items: list[Any], progress: Callable[[int], None] | None = None
    ) -> list[tuple[RewardResult, str | None]]:
        """:meth:`score_items`, each result with the Verilog extracted from its completion (what was
        scored; ``None`` when nothing was extracted): for callers that go on with the design itself."""
        batch = self.prepare(items)
        if progress is not None:
            progress(sum(1 for r in batch.results if r is not None))
        futures = self.admit(batch, force=True) or {}
        for key, future in futures.items():
            batch.fill(key, future.result())
            if progress is not None:
                progress(len(batch.slots[key]))
        return list(zip(self.account(batch.finish()), batch.codes, strict=True))

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


def score_batch(
    items: Sequence[tuple[Task, str]],
    config: RewardConfig | None = None,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = MAX_BATCH,
) -> list[RewardResult]:
    """Score ``(task, completion)`` pairs with a fresh engine (in-memory cache); results in input order.

    Identical pairs are scored once; ``progress(n)`` is called with the number of newly finished items.
    ``batch_size=1`` scores every item in its own tool processes.
    """
    return [result for result, _ in score_batch_with_code(items, config, jobs, progress, batch_size)]


def score_batch_with_code(
    items: Sequence[tuple[Task, str]],
    config: RewardConfig | None = None,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = MAX_BATCH,
) -> list[tuple[RewardResult, str | None]]:
    """:func:`score_batch`, each result with the Verilog extracted from its completion (``None``
    when none was): a caller that goes on with the design uses exactly what was scored."""
    engine = ScoringEngine(config or RewardConfig(), workers=jobs or None, batch_size=batch_size)
    try:
        return engine.score_items_with_code([{"task": task, "completion": c} for task, c in items], progress)
    finally:
        engine.close()
