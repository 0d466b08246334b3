"""Generate a verified, decontaminated, split task corpus from the families.

Order of work (all seeded, so the same arguments give the same bytes):

1. every family lists its designs; each design belongs to one split by its parameters: designs in
   held-out ranges (widths, moduli, ...) and whole held-out families are ``test_ood``; the designs in
   the training ranges are divided into ``train`` and unseen instances (``val``, ``test``) by a stable
   hash of their parameters (:func:`train.corpus.base.assign_splits`);
2. each split's quota is filled round-robin over its families (shuffled by the seed), one task per
   (design, phrasing) - a design is only reused with another phrasing once its family has run out;
3. candidates near a benchmark problem are removed (:mod:`train.corpus.decontam`), and so is any
   candidate whose id or normalised golden already belongs to an earlier split (train first);
4. candidates are verified with the reward core in order until the quota is met: the golden
   must pass, and at least one mutant must be caught (:mod:`train.corpus.verify`).

The output directory gets ``train.jsonl``, ``val.jsonl``, ``test.jsonl``, ``test_ood.jsonl`` and ``manifest.json``
(counts, what was dropped and why, decontamination removals, timings).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewards.types import Task
from train.corpus import comb, seq
from train.corpus.base import SPLITS, TOP, Design, Family, assign_splits, normalised_golden

log = logging.getLogger(__name__)

FAMILIES: tuple[Family, ...] = comb.FAMILIES + seq.FAMILIES
SPLIT_SHARE = {"train": 0.70, "val": 0.10, "test": 0.12, "test_ood": 0.08}
DEFAULT_SEED = 0
DEFAULT_SIZE = 1000
PHRASINGS = 3


@dataclass(frozen=True)
class Candidate:
    """One prospective task: a design with one of its phrasings."""

    design: Design
    split: str
    phrasing: int
    params: dict[str, Any]
    kind: str

    @property
    def task_id(self) -> str:
        return f"{self.design.family}/{self.design.slug}-p{self.phrasing}"

    def task(self) -> Task:
        meta = {
            **self.design.meta,
            "family": self.design.family,
            "kind": self.kind,
            "split": self.split,
            "params": dict(self.params),
        }
        return Task(
            id=self.task_id,
            prompt=self.design.prompts[self.phrasing],
            top_module=TOP,
            reference=self.design.reference,
            meta=meta,
        )


def split_quotas(size: int) -> dict[str, int]:
    """Tasks per split for a corpus of ``size`` tasks (train takes the rounding remainder)."""
    held = {split: round(size * share) for split, share in SPLIT_SHARE.items() if split != "train"}
    return {"train": size - sum(held.values()), **held}


def designs_by_split(
    families: Sequence[Family] = FAMILIES,
) -> dict[str, dict[str, list[tuple[dict, Family]]]]:
    """split -> family name -> [(params, family)] over every family's grid."""
    out: dict[str, dict[str, list[tuple[dict, Family]]]] = {s: {} for s in SPLITS}
    for family in families:
        for params, split in assign_splits(family):
            out[split].setdefault(family.name, []).append((params, family))
    return out


def _family_stream(rng: random.Random, entries: list[tuple[dict, Family]], split: str) -> Iterator[Candidate]:
    """Candidates of one family in one split: every design once (shuffled), then other phrasings."""
    order = list(entries)
    rng.shuffle(order)
    phrasing_of = [rng.randrange(PHRASINGS) for _ in order]
    for round_no in range(PHRASINGS):
        for (params, family), first in zip(order, phrasing_of, strict=True):
            yield Candidate(family.build(params), split, (first + round_no) % PHRASINGS, params, family.kind)


def candidate_stream(split: str, seed: int, families: Sequence[Family] = FAMILIES) -> Iterator[Candidate]:
    """All candidates of ``split``, interleaved round-robin over families (order fixed by ``seed``),
    each task id once."""
    per_family = designs_by_split(families)[split]
    names = sorted(per_family)
    rng = random.Random(f"rtlforge-corpus-{seed}-{split}")
    rng.shuffle(names)
    streams = [_family_stream(random.Random(f"{seed}-{split}-{n}"), per_family[n], split) for n in names]
    seen: set[str] = set()
    while streams:
        alive = []
        for stream in streams:
            # Different parameters can build the same design (an LFSR seed taken modulo the period):
            # each task id is yielded once.
            candidate = next((c for c in stream if c.task_id not in seen), None)
            if candidate is not None:
                seen.add(candidate.task_id)
                alive.append(stream)
                yield candidate
        streams = alive


@dataclass
class Report:
    """What generation did: kept counts, drops with reasons, decontamination removals, candidates skipped
    because an earlier split holds the same id or golden (``overlap``), timings."""

    seed: int
    size: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    dropped: list[dict[str, str]] = field(default_factory=list)
    decontaminated: list[dict[str, Any]] = field(default_factory=list)
    overlap: list[dict[str, str]] = field(default_factory=list)
    mutants: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    shortfall: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest: everything but timings, so equal arguments give equal bytes."""
        return {
            "seed": self.seed,
            "size": self.size,
            "counts": self.counts,
            "shortfall": self.shortfall,
            "dropped": self.dropped,
            "decontaminated": self.decontaminated,
            "overlap": self.overlap,
            "mutants": self.mutants,
        }


Verifier = Callable[[Sequence[Task]], list]


def _fill_split(
    split: str,
    quota: int,
    seed: int,
    report: Report,
    verifier: Verifier | None,
    is_contaminated: Callable[[Task], dict | None],
    batch: int,
    taken: dict[str, str],
) -> list[Task]:
    """Fill ``split`` up to ``quota``; ``taken`` maps ids and normalised goldens of earlier splits to
    their split (a candidate sharing either is skipped) and gets this split's added."""
    kept: list[Task] = []
    verdict_cache: dict[str, Any] = {}
    stream = candidate_stream(split, seed)
    while len(kept) < quota:
        pending = []
        for candidate in stream:
            task = candidate.task()
            hit = is_contaminated(task)
            if hit:
                report.decontaminated.append({"id": task.id, "split": split, **hit})
                continue
            clash = taken.get(task.id) or taken.get(normalised_golden(task.reference))
            if clash and clash != split:
                report.overlap.append({"id": task.id, "split": split, "same_as": clash})
                continue
            pending.append(task)
            if len(pending) >= batch or len(kept) + len(pending) >= quota:
                break
        if not pending:
            break
        kept += _verified(pending, verifier, verdict_cache, report)[: quota - len(kept)]
    for task in kept:
        taken.setdefault(task.id, split)
        taken.setdefault(normalised_golden(task.reference), split)
    if len(kept) < quota:
        report.shortfall[split] = quota - len(kept)
        log.warning(
            "split %s: only %d of %d tasks (the families ran out of designs)", split, len(kept), quota
        )
    return kept


def _verified(
    tasks: list[Task], verifier: Verifier | None, cache: dict[str, Any], report: Report
) -> list[Task]:
    """``tasks`` that pass verification (identical goldens are verified once)."""
    if verifier is None:
        return tasks
    todo = {}
    for task in tasks:
        key = task.reference + json.dumps(task.meta.get("reset")) + json.dumps(task.meta.get("reset_active"))
        if key not in cache and key not in todo:
            todo[key] = task
    for key, verdict in zip(todo, verifier(list(todo.values())), strict=True):
        cache[key] = verdict
    out = []
    for task in tasks:
        key = task.reference + json.dumps(task.meta.get("reset")) + json.dumps(task.meta.get("reset_active"))
        verdict = cache[key]
        if verdict.ok:
            out.append(task)
            report.mutants[task.id] = {
                "killed": verdict.killed,
                "survived": verdict.survived,
                "invalid": verdict.invalid,
            }
        else:
            report.dropped.append({"id": task.id, "reason": verdict.reason})
    return out


def generate(
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    *,
    verifier: Verifier | None = None,
    is_contaminated: Callable[[Task], dict | None] | None = None,
    batch: int = 32,
) -> tuple[dict[str, list[Task]], Report]:
    """Tasks per split and the generation report.

    Args:
        size: total number of tasks (split as :data:`SPLIT_SHARE`).
        seed: fixes which designs and phrasings are drawn, and their order.
        verifier: ``tasks -> verdicts`` (see :func:`train.corpus.verify.verify_tasks`); None skips
            verification (for quick experiments only: unverified tasks may be wrong).
        is_contaminated: ``task -> None | {"benchmark": ..., ...}``; None skips decontamination.
        batch: candidates verified per reward-core batch.
    """
    report = Report(seed=seed, size=size)
    check = is_contaminated or (lambda task: None)
    splits = {}
    taken: dict[str, str] = {}
    for split, quota in split_quotas(size).items():
        start = time.perf_counter()
        splits[split] = _fill_split(split, quota, seed, report, verifier, check, batch, taken)
        report.timings[f"{split}_s"] = round(time.perf_counter() - start, 2)
        report.counts[split] = dict(sorted(Counter(t.meta["family"] for t in splits[split]).items()))
    return splits, report


def write_corpus(splits: dict[str, list[Task]], report: Report, out_dir: str | Path) -> list[Path]:
    """Write ``<split>.jsonl`` files and ``manifest.json`` under ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, tasks in splits.items():
        path = out / f"{split}.jsonl"
        path.write_text(
            "".join(json.dumps(t.to_dict(), sort_keys=True, ensure_ascii=False) + "\n" for t in tasks),
            encoding="utf-8",
        )
        paths.append(path)
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(report.to_dict(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return paths + [manifest]
