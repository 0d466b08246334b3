"""Evaluate a checkpoint (or completions made elsewhere) on VerilogEval / RTLLM.

    python -m evals run --suite verilogeval-v2-spec-to-rtl --data ../shared/benchmarks \\
        --model runs/grpo/final [--base BASE] --n 10 --temperature 0.8 --out runs/eval/v2
    python -m evals run --suite rtllm-v1.1 --data ../shared/benchmarks/rtllm-v1.1 \\
        --samples completions.jsonl --out runs/eval/rtllm
    python -m evals goldens --suite all --data ../shared/benchmarks --out goldens.jsonl   # benchmark check

``--suite`` takes one suite, a comma-separated list, or ``all``. Writes ``DIR/samples.jsonl`` (one graded
sample per line), ``DIR/summary.json`` (pass@k per suite, status counts, errata handling, PPA vs
golden), ``DIR/report.md`` and ``DIR/report.png``. Known errata (``evals/errata.py``) are always graded
and reported; ``--exclude-errata`` removes them from the headline denominators (both numbers are kept).

Every sample gets two verdicts (:mod:`evals.strict`): ``passed_official``, the benchmark's own bench,
and ``passed``, strict: also co-simulated against the reference (no x/z output where the reference's is
defined) and not refuted by the formal level. Both pass@k tables are reported, with the samples where
they differ. The headline says how many of the suite's problems were sampled: problems a ``--samples``
file leaves out count as unsolved (with a warning that lists them) unless the run was limited on purpose
with ``--problems``/``--limit``.

``goldens`` writes the golden completions, then grades each golden under both verdicts, checks that
each reference drives every output after reset, and grades probe modules (undriven outputs, printed
pass strings, constant outputs) to list the weak benches per suite (``OUT.check.json``; exit 1 when a
golden outside the errata fails).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from tqdm import tqdm

from evals.loaders import DEFAULT_DIRS, SUITES, BenchmarkError, load_suite
from evals.passk import DEFAULT_KS
from evals.run import (
    PROMPT_STYLES,
    SamplesFileError,
    draw_samples,
    grade_samples,
    load_samples,
    summarize,
    write_samples,
)
from rewards.config import ConfigError, jobs_count, load_reward_config
from rollout.sampling import add_sampling_args, sampling_config

log = logging.getLogger("evals")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evals", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="sample (or read samples), grade, compute pass@k, write a report")
    run.add_argument("--suite", required=True, help=f"one of {sorted(SUITES)}, a comma list, or 'all'")
    run.add_argument(
        "--data",
        required=True,
        type=Path,
        help="benchmark checkout, or a folder holding several (e.g. ../shared/benchmarks)",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint: full/merged model dir or LoRA adapter dir")
    source.add_argument("--samples", type=Path, help="JSONL of Completion records to grade")
    run.add_argument("--out", required=True, type=Path, help="output directory")
    run.add_argument("--problems", help="comma-separated problem names (or ids) to keep")
    run.add_argument("--limit", type=int, help="keep the first K problems of each suite")
    run.add_argument(
        "--exclude-errata",
        action="store_true",
        help="leave known errata out of the headline pass@k (both numbers are reported)",
    )
    run.add_argument(
        "--jobs", type=jobs_count, default=None, help="concurrent grading jobs (default, or 0: one per core)"
    )
    run.add_argument(
        "--prompt-style",
        default="benchmark",
        choices=PROMPT_STYLES,
        help="benchmark: the benchmark's own prompt; plain/think/chat: the project's templates",
    )
    run.add_argument("--no-chat-template", action="store_true", help="send prompt text raw (base models)")
    run.add_argument(
        "--reward-config", type=Path, help="reward YAML (limits, sandbox); PPA is off for grading"
    )
    run.add_argument("--no-ppa", action="store_true", help="skip the PPA-vs-golden comparison")
    run.add_argument("--no-plot", action="store_true", help="skip report.png")
    add_sampling_args(run)
    goldens = sub.add_parser(
        "goldens",
        help="write each problem's golden design as a Completion record, then check the benchmark: "
        "goldens pass both verdicts, references drive every output, which benches are weak",
    )
    goldens.add_argument("--suite", required=True, help="one suite, a comma list, or 'all'")
    goldens.add_argument("--data", required=True, type=Path)
    goldens.add_argument("--out", required=True, type=Path, help="output JSONL of golden completions")
    goldens.add_argument("--problems")
    goldens.add_argument("--limit", type=int)
    goldens.add_argument(
        "--check-out",
        type=Path,
        help="where the check's findings go (JSON; default: OUT with suffix .check.json)",
    )
    goldens.add_argument("--no-check", action="store_true", help="only write the golden completions")
    goldens.add_argument(
        "--jobs", type=jobs_count, default=None, help="concurrent grading jobs (default, or 0: one per core)"
    )
    goldens.add_argument("--reward-config", type=Path, help="reward YAML (limits, sandbox, stimulus)")
    return parser


def _suites(arg: str, data: Path) -> list[str]:
    """Suite names from ``--suite``; ``all`` means every suite whose checkout is under ``data``."""
    if arg == "all":
        present = [s for s in sorted(SUITES) if (data / DEFAULT_DIRS[s]).is_dir()]
        if not present:
            raise BenchmarkError(
                f"--suite all: no benchmark checkout under {data} "
                f"(looked for {sorted(set(DEFAULT_DIRS.values()))})"
            )
        return present
    names = [s.strip() for s in arg.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES]
    if unknown:
        raise BenchmarkError(f"unknown suites {unknown}; valid suites are {sorted(SUITES)} or 'all'")
    return names


def _load_tasks(args: argparse.Namespace) -> tuple[list, dict[str, int]]:
    """Selected tasks of every requested suite, and each suite's full problem count.

    ``--problems`` names must each match some suite's problem.
    """
    problems = [p.strip() for p in args.problems.split(",") if p.strip()] if args.problems else None
    tasks, matched, sizes = [], set(), {}
    for suite in _suites(args.suite, args.data):
        suite_tasks = load_suite(suite, args.data)
        sizes[suite] = len(suite_tasks)
        if problems:
            keep = [t for t in suite_tasks if t.meta["problem"] in problems or t.id in problems]
            matched |= {t.meta["problem"] for t in keep} | {t.id for t in keep}
            suite_tasks = keep
        tasks.extend(suite_tasks[: args.limit] if args.limit else suite_tasks)
    missing = [p for p in problems or [] if p not in matched]
    if missing:
        raise BenchmarkError(f"problems {missing} are in none of the suites {args.suite} at {args.data}")
    return tasks, sizes


def _limited(args: argparse.Namespace) -> bool:
    """The user chose a subset of problems on purpose (``--problems`` or ``--limit``)."""
    return bool(args.problems or args.limit)


def _warn_unsampled(suites: dict, limited: bool) -> None:
    for suite, s in suites.items():
        if not s["unsampled"]:
            continue
        shown = ", ".join(tid.split("/", 1)[-1] for tid in s["unsampled"][:20])
        more = f" and {len(s['unsampled']) - 20} more" if len(s["unsampled"]) > 20 else ""
        effect = (
            "left out of pass@k (the run was limited on purpose)"
            if limited
            else "counted as unsolved; select problems with --problems/--limit to leave them out"
        )
        log.warning(
            "%s: the samples cover %s; %d selected problems have no sample (%s): %s%s",
            suite,
            s["coverage"],
            len(s["unsampled"]),
            effect,
            shown,
            more,
        )


def _samples(args: argparse.Namespace, tasks: list, bad_lines: list[str]) -> list:
    if args.samples:
        return load_samples(args.samples, tasks, bad_lines=bad_lines)
    config = sampling_config(args, "raw", chat_template=False if args.no_chat_template else None)
    with tqdm(total=len(tasks) * args.n, desc="sampling", unit="seq") as bar:
        return draw_samples(
            tasks,
            args.model,
            config,
            prompt_style=args.prompt_style,
            base=args.base,
            backend=args.backend,
            device=args.device,
            dtype=args.dtype,
            progress=bar.update,
        )


def run(args: argparse.Namespace) -> dict:
    """Execute ``evals run``; returns the summary written to ``summary.json``."""
    from evals.ppa_compare import compare_ppa
    from evals.report import write_report

    timings: dict[str, float] = {}
    start = time.monotonic()
    tasks, sizes = _load_tasks(args)
    if not tasks:
        raise BenchmarkError(
            f"no problems selected from {args.suite} at {args.data} (check --problems/--limit)"
        )
    bad_lines: list[str] = []  # malformed --samples lines: skipped, reported in summary.json
    samples = _samples(args, tasks, bad_lines)
    timings["sampling_s"] = round(time.monotonic() - start, 2)
    # Graded like the official harness: the benchmark's own test bench decides (hardened).
    config = load_reward_config(args.reward_config, ppa_enabled=False, testbench_cosim=False)
    with tqdm(total=len(samples), desc="grading", unit="sample") as bar:
        graded = grade_samples(samples, config, jobs=args.jobs, progress=bar.update)
    timings["grading_s"] = round(time.monotonic() - start - timings["sampling_s"], 2)
    suites = summarize(
        graded,
        tasks,
        ks=DEFAULT_KS,
        exclude_errata=args.exclude_errata,
        suite_sizes=sizes,
        limited=_limited(args),
    )
    _warn_unsampled(suites, _limited(args))
    ppa = {}
    if not args.no_ppa:
        t0 = time.monotonic()
        with tqdm(desc="PPA vs golden", unit="design") as bar:
            ppa = compare_ppa(graded, config, jobs=args.jobs, progress=bar.update)
        timings["ppa_s"] = round(time.monotonic() - t0, 2)
    summary = {
        "suites": suites,
        "ppa_vs_golden": ppa,
        "exclude_errata": args.exclude_errata,
        "selection": {"problems": args.problems, "limit": args.limit, "limited": _limited(args)},
        "source": {
            "model": args.model,
            "base": args.base,
            "samples": str(args.samples or "") or None,
            "invalid_sample_lines": bad_lines,
            "n": args.n if args.model else None,
            "temperature": args.temperature if args.model else None,
            "prompt_style": args.prompt_style if args.model else None,
        },
        "reward_config": config.to_dict(),
        "timings": timings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_samples(args.out / "samples.jsonl", graded)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False))
    write_report(args.out, summary, plot_png=not args.no_plot)
    return summary


def _table(values: dict[str, float | None]) -> str:
    return ", ".join(f"pass@{k}={v:.4f}" for k, v in values.items() if v is not None) or "-"


def _print_summary(summary: dict) -> None:
    for suite, s in summary["suites"].items():
        official = s["official"]
        print(
            f"{suite}: {s['coverage']}, {s['samples']} samples | strict: {_table(s['pass_at_k'])} | "
            f"official: {_table(official['pass_at_k'])} | "
            f"all problems strict/official: {_table(s['pass_at_k_all_problems'])} / "
            f"{_table(official['pass_at_k_all_problems'])} | "
            f"without {len(s['errata'])} errata strict/official: {_table(s['pass_at_k_excluding_errata'])} / "
            f"{_table(official['pass_at_k_excluding_errata'])} | "
            f"verdicts differ on {len(s['verdicts_differ'])} problems | statuses {s['status_counts']}"
        )


def write_goldens(args: argparse.Namespace) -> int:
    """Execute ``evals goldens``: one fenced golden completion per problem, then the golden check."""
    from evals.goldens import check_goldens, summary_lines

    tasks, _ = _load_tasks(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as handle:
        for task in tasks:
            record = {
                "task_id": task.id,
                "completion": f"```verilog\n{task.reference}\n```\n",
                "sample_index": 0,
            }
            handle.write(json.dumps(record) + "\n")
    print(f"wrote {len(tasks)} golden completions to {args.out}")
    if args.no_check:
        return 0
    config = load_reward_config(args.reward_config, ppa_enabled=False)
    with tqdm(desc="golden check", unit="sample") as bar:
        check = check_goldens(tasks, config, jobs=args.jobs, progress=bar.update)
    check_out = args.check_out or args.out.with_suffix(".check.json")
    check_out.write_text(json.dumps(check, indent=2))
    print("\n".join(summary_lines(check)))
    print(f"wrote {check_out}")
    unexpected = sum(len(s["unexpected_golden_failures"]) for s in check["suites"].values())
    return 1 if unexpected else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "goldens":
            return write_goldens(args)
        summary = run(args)
    except (BenchmarkError, SamplesFileError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(summary)
    if summary["source"]["invalid_sample_lines"]:
        print(
            f"warning: {len(summary['source']['invalid_sample_lines'])} malformed lines of {args.samples} "
            "were skipped (summary.json, source.invalid_sample_lines)",
            file=sys.stderr,
        )
    print(f"wrote {args.out}/samples.jsonl, summary.json, report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
