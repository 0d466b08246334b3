"""Corpus command line.

    python -m train.corpus generate --out DIR [--seed 0] [--size 1000] [--jobs N] [--no-verify] [--no-decontam]
    python -m train.corpus verify FILE [--jobs N] [--mutants 3]
    python -m train.corpus stats [FILE ...]

``generate`` writes DIR/{train,val,test,test_ood}.jsonl and DIR/manifest.json (same seed and size give the
same bytes) and prints counts, drops, decontamination removals and timings. ``verify`` re-scores
every golden of FILE and its mutants with the reward core and exits 1 if any golden fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path

from rewards.config import jobs_count
from train.corpus.base import SPLITS
from train.corpus.loader import CorpusFileError, load_task_file


def _generate(args: argparse.Namespace) -> int:
    from train.corpus.decontam import Decontaminator
    from train.corpus.generate import generate, write_corpus
    from train.corpus.verify import verify_tasks

    start = time.perf_counter()
    check = None if args.no_decontam else Decontaminator.from_benchmarks(args.benchmarks)
    verifier = (
        None if args.no_verify else (lambda tasks: verify_tasks(tasks, mutants=args.mutants, jobs=args.jobs))
    )
    splits, report = generate(args.size, args.seed, verifier=verifier, is_contaminated=check)
    paths = write_corpus(splits, report, args.out)
    report.timings["total_s"] = round(time.perf_counter() - start, 2)
    for split, counts in report.counts.items():
        print(f"{split}: {sum(counts.values())} tasks  " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    print(f"dropped by verification: {len(report.dropped)}")
    for item in report.dropped[:50]:
        print(f"  {item['id']}: {item['reason'][:200]}")
    print(f"skipped (same id or golden as an earlier split): {len(report.overlap)}")
    print(f"removed by decontamination: {len(report.decontaminated)}")
    for item in report.decontaminated[:50]:
        print(f"  {item['id']}: {item['check']} ~ {item['benchmark']} ({item['detail']})")
    if report.shortfall:
        print(f"shortfall (families ran out of designs): {report.shortfall}")
    print("timings: " + json.dumps(report.timings))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from train.corpus.verify import verify_tasks

    tasks = load_task_file(args.file)
    start = time.perf_counter()
    verdicts = verify_tasks(tasks, mutants=args.mutants, jobs=args.jobs)
    bad = [v for v in verdicts if not v.ok]
    killed = sum(len(v.killed) for v in verdicts)
    survived = sum(len(v.survived) for v in verdicts)
    for verdict in bad:
        print(f"FAIL {verdict.task_id}: {verdict.reason}")
    print(
        f"{len(tasks) - len(bad)}/{len(tasks)} tasks verified; mutants caught {killed}, passed {survived}; "
        f"{time.perf_counter() - start:.1f}s"
    )
    return 1 if bad else 0


def _stats(args: argparse.Namespace) -> int:
    from train.corpus.loader import DATA_DIR

    files = args.files or [DATA_DIR / f"{s}.jsonl" for s in SPLITS]
    for path in files:
        tasks = load_task_file(path)
        counts = Counter(t.meta.get("family", t.id.split("/")[0]) for t in tasks)
        print(f"{path}: {len(tasks)} tasks  " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train.corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate verified train/val/test/test_ood splits")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument("--seed", type=int, default=0, help="draw and order of designs and phrasings")
    gen.add_argument(
        "--size",
        type=int,
        default=1000,
        help="total tasks (70%% train, 10%% val and 12%% test: unseen instances, 8%% test_ood)",
    )
    gen.add_argument(
        "--jobs", type=jobs_count, default=None, help="concurrent scoring jobs (default, or 0: one per core)"
    )
    gen.add_argument("--mutants", type=int, default=3, help="mutants scored per task")
    gen.add_argument("--no-verify", action="store_true", help="skip reward-core verification (unsafe)")
    gen.add_argument("--no-decontam", action="store_true", help="skip benchmark decontamination")
    gen.add_argument(
        "--benchmarks", type=Path, default=None, help="benchmark root (default ../shared/benchmarks)"
    )
    ver = sub.add_parser("verify", help="re-check the goldens (and mutants) of a task file")
    ver.add_argument("file", type=Path)
    ver.add_argument(
        "--jobs", type=jobs_count, default=None, help="concurrent scoring jobs (default, or 0: one per core)"
    )
    ver.add_argument("--mutants", type=int, default=3)
    st = sub.add_parser("stats", help="tasks per family of task files (default: the committed splits)")
    st.add_argument("files", type=Path, nargs="*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return {"generate": _generate, "verify": _verify, "stats": _stats}[args.command](args)
    except CorpusFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
