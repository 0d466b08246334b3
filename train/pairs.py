"""Preference pairs from test-bench outcomes: sample N completions per task, score them, pair them.

    python -m train.pairs --model CKPT --tasks TASKS.jsonl --n 8 --out pairs.jsonl \\
        [--reward-urls http://127.0.0.1:8000] [--rules pass_vs_fail,ppa,closer_fail] [--max-pairs 4]
    python -m train.pairs --completions samples.jsonl --tasks TASKS.jsonl --out pairs.jsonl   # no sampling

A pair is (chosen, rejected) for one prompt, made by the first rule of :data:`RULES` (in the order given)
that prefers one completion over the other:

- ``pass_vs_fail``: a full functional pass beats any scored failure;
- ``ppa``: between two passes, the one whose PPA level is higher by at least ``ppa_margin``;
- ``closer_fail``: between two failures, the one that got further: code extracted < parses and lints <
  right interface < simulated, and among simulated ones more matching vectors (by ``fail_margin``).

Completions that could not be scored (``INFRA_ERROR``, ``INVALID_INPUT``, ``reward`` null) are never
paired: a broken tool is not a wrong answer. Identical completions are kept once. Prompts whose samples
show no contrast under any rule give no pair. At most ``max_pairs`` pairs per prompt; earlier rules fill
the cap first, and within a rule pairs that reuse no completion come before pairs that do.

Output: one JSON object per line with ``prompt``, ``chosen``, ``rejected`` (strings, or chat messages for
style ``chat``; the shape TRL's DPOTrainer reads), plus ``task_id``, ``rule``, ``margin`` and
``chosen_score`` / ``rejected_score`` (status, reward, levels, matched vectors, PPA figures) for inspection.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python train/pairs.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rewards.types import RewardResult, Status, Task

log = logging.getLogger(__name__)

# Statuses that are no verdict on the completion: never pair on them.
UNSCORABLE = frozenset({Status.INFRA_ERROR, Status.INVALID_INPUT})

# Metrics copied into each pair record (always present, None when the result has no such figure).
KEPT_METRICS = ("matched", "vectors", "area", "delay_ns", "power_mw", "lint_warnings")


class PairingError(ValueError):
    """Pairing options or inputs are invalid; the message names the value and the valid choices."""


@dataclass(frozen=True)
class Sample:
    """One scored completion of a prompt (``index`` = its sample index, for stable ordering)."""

    completion: str
    result: RewardResult
    index: int = 0


@dataclass(frozen=True)
class Pair:
    """A preference: ``chosen`` beats ``rejected`` under ``rule`` by ``margin`` (rule-specific units)."""

    task_id: str
    chosen: Sample
    rejected: Sample
    rule: str
    margin: float


# ------------------------------------------------------------------------------------------ rules
def scorable(result: RewardResult) -> bool:
    """True when ``result`` is a verdict on the completion (not an infrastructure failure)."""
    return result.reward is not None and result.status not in UNSCORABLE


def matched_fraction(result: RewardResult) -> float:
    """Fraction of compared output vectors that matched the golden design (0 when not simulated)."""
    total = result.metrics.get("vectors") or 0
    matched = result.metrics.get("matched") or 0
    return matched / total if total else 0.0


def progress(result: RewardResult) -> float:
    """How far a failing completion got: 0 no module (or forbidden), 1 extracted, 2 parses with the
    wrong interface, 3 + matched-vector fraction once simulated."""
    levels = result.levels or {}
    if result.status is Status.FORBIDDEN:
        return 0.0
    if result.status is Status.INTERFACE_MISMATCH:
        return 2.0
    if levels.get("syntax", 0.0) >= 1.0:
        return 3.0 + matched_fraction(result)
    if levels.get("format", 0.0) >= 1.0:
        return 1.0
    return 0.0


def _pass_vs_fail(a: RewardResult, b: RewardResult, *, ppa_margin: float, fail_margin: float) -> float | None:
    if a.passed and not b.passed:
        return float(a.reward) - float(b.reward)
    return None


def _ppa(a: RewardResult, b: RewardResult, *, ppa_margin: float, fail_margin: float) -> float | None:
    if not (a.passed and b.passed):
        return None
    gap = a.levels.get("ppa", 0.0) - b.levels.get("ppa", 0.0)
    return gap if gap >= ppa_margin and gap > 0 else None


def _closer_fail(a: RewardResult, b: RewardResult, *, ppa_margin: float, fail_margin: float) -> float | None:
    if a.passed or b.passed:
        return None
    gap = progress(a) - progress(b)
    return gap if gap >= fail_margin and gap > 0 else None


# A rule returns the margin by which ``a`` is preferred over ``b``, or None when it does not prefer ``a``.
RuleFn = Callable[..., float | None]
RULES: dict[str, RuleFn] = {
    "pass_vs_fail": _pass_vs_fail,
    "ppa": _ppa,
    "closer_fail": _closer_fail,
}
DEFAULT_RULES = ("pass_vs_fail", "ppa", "closer_fail")
PREFER = ("widest", "narrowest")


def check_rules(rules: Sequence[str]) -> tuple[str, ...]:
    """Validate rule names (order kept); raises :class:`PairingError` listing the valid ones."""
    rules = tuple(rules)
    unknown = [r for r in rules if r not in RULES]
    if unknown or not rules or len(set(rules)) != len(rules):
        raise PairingError(
            f"pairing rules {list(rules)} are invalid (unknown: {unknown}, or empty, or repeated); "
            f"give a non-empty ordered subset of {list(RULES)}"
        )
    return rules


# ---------------------------------------------------------------------------------------- pairing
def normalise_completion(text: str) -> str:
    """Whitespace-insensitive form of a completion, for dropping duplicates."""
    return re.sub(r"\s+", " ", text).strip()


def dedupe(samples: Sequence[Sample]) -> list[Sample]:
    """Keep the first of each group of identical (whitespace-normalised) completions."""
    seen: set[str] = set()
    out = []
    for sample in samples:
        key = normalise_completion(sample.completion)
        if key not in seen:
            seen.add(key)
            out.append(sample)
    return out


def _rule_candidates(
    samples: Sequence[Sample], rule: str, ppa_margin: float, fail_margin: float, prefer: str
) -> list[tuple[float, Sample, Sample]]:
    fn = RULES[rule]
    found = []
    for a, b in itertools.permutations(samples, 2):
        margin = fn(a.result, b.result, ppa_margin=ppa_margin, fail_margin=fail_margin)
        if margin is not None:
            found.append((margin, a, b))
    sign = -1.0 if prefer == "widest" else 1.0
    found.sort(key=lambda item: (sign * item[0], item[1].index, item[2].index))
    return found


def _pick(candidates: list[tuple[float, Sample, Sample]], budget: int) -> list[tuple[float, Sample, Sample]]:
    """Up to ``budget`` candidates: first those that reuse no completion, then the rest in order."""
    picked, used, taken = [], set(), set()
    for item in candidates:
        _, a, b = item
        if len(picked) < budget and a.index not in used and b.index not in used:
            picked.append(item)
            used.update((a.index, b.index))
            taken.add((a.index, b.index))
    for item in candidates:
        if len(picked) >= budget:
            break
        if (item[1].index, item[2].index) not in taken:
            picked.append(item)
            taken.add((item[1].index, item[2].index))
    return picked


def pair_samples(
    task_id: str,
    samples: Sequence[Sample],
    *,
    rules: Sequence[str] = DEFAULT_RULES,
    max_pairs: int = 4,
    ppa_margin: float = 0.02,
    fail_margin: float = 0.1,
    prefer: str = "widest",
) -> list[Pair]:
    """Preference pairs among the samples of one prompt (see the module docstring for the rules).

    Args:
        task_id: the prompt's task id (copied into each pair).
        samples: its scored completions; unscorable ones and duplicates are dropped first.
        rules: rule names from :data:`RULES`, in priority order.
        max_pairs: cap on pairs for this prompt.
        ppa_margin: smallest PPA-level gap that makes a ``ppa`` pair.
        fail_margin: smallest progress gap that makes a ``closer_fail`` pair (1.0 = a whole stage).
        prefer: ``widest`` pairs the largest margins first, ``narrowest`` the hardest contrasts first.

    Returns:
        Pairs, earlier rules first; empty when the samples show no contrast.
    """
    rules = check_rules(rules)
    if prefer not in PREFER:
        raise PairingError(f"prefer={prefer!r} is unknown; valid: {', '.join(PREFER)}")
    if max_pairs < 1:
        raise PairingError(f"max_pairs={max_pairs} must be >= 1")
    pool = dedupe([s for s in samples if scorable(s.result)])
    if len({s.index for s in pool}) != len(pool):
        pool = [Sample(s.completion, s.result, i) for i, s in enumerate(pool)]
    pairs: list[Pair] = []
    for rule in rules:
        budget = max_pairs - len(pairs)
        if budget <= 0:
            break
        candidates = _rule_candidates(pool, rule, ppa_margin, fail_margin, prefer)
        for margin, chosen, rejected in _pick(candidates, budget):
            pairs.append(Pair(task_id, chosen, rejected, rule, round(margin, 6)))
    return pairs


@dataclass
class PairStats:
    """Counts of one pair-building pass (what ``python -m train.pairs`` reports)."""

    prompts: int = 0
    prompts_paired: int = 0
    no_contrast: int = 0
    samples: int = 0
    unscorable: int = 0
    duplicates: int = 0
    passed: int = 0
    pairs_by_rule: Counter = field(default_factory=Counter)
    statuses: Counter = field(default_factory=Counter)

    @property
    def pairs(self) -> int:
        return sum(self.pairs_by_rule.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "prompts_paired": self.prompts_paired,
            "no_contrast": self.no_contrast,
            "samples": self.samples,
            "unscorable": self.unscorable,
            "duplicates": self.duplicates,
            "passed": self.passed,
            "pairs": self.pairs,
            "pairs_by_rule": dict(self.pairs_by_rule),
            "statuses": dict(self.statuses),
        }

    def summary(self) -> str:
        rules = ", ".join(f"{rule}={count}" for rule, count in self.pairs_by_rule.items()) or "none"
        return (
            f"{self.pairs} pairs from {self.prompts_paired}/{self.prompts} prompts ({rules}); "
            f"{self.no_contrast} prompts without contrast; {self.samples} samples, {self.passed} passed, "
            f"{self.unscorable} unscorable (not paired), {self.duplicates} duplicates dropped"
        )


def build_pairs(
    groups: Sequence[tuple[str, Sequence[Sample]]], **options: Any
) -> tuple[list[Pair], PairStats]:
    """Pair every prompt's samples; ``groups`` is ``[(task_id, samples), ...]``, ``options`` go to
    :func:`pair_samples`. Returns the pairs (prompt order) and their counts."""
    stats = PairStats()
    pairs: list[Pair] = []
    for task_id, samples in groups:
        stats.prompts += 1
        stats.samples += len(samples)
        stats.statuses.update(s.result.status.value for s in samples)
        stats.passed += sum(1 for s in samples if s.result.passed and scorable(s.result))
        scored = [s for s in samples if scorable(s.result)]
        stats.unscorable += len(samples) - len(scored)
        stats.duplicates += len(scored) - len(dedupe(scored))
        found = pair_samples(task_id, samples, **options)
        if found:
            stats.prompts_paired += 1
        else:
            stats.no_contrast += 1
        stats.pairs_by_rule.update(p.rule for p in found)
        pairs.extend(found)
    return pairs, stats


# ---------------------------------------------------------------------------------------- records
def score_summary(sample: Sample) -> dict[str, Any]:
    """What a pair record keeps of one side's score (fixed keys, so every row has the same shape)."""
    result = sample.result
    return {
        "status": result.status.value,
        "passed": result.passed,
        "reward": result.reward,
        "levels": {
            name: float(result.levels.get(name, 0.0)) for name in ("format", "syntax", "function", "ppa")
        },
        **{name: _number(result.metrics.get(name)) for name in KEPT_METRICS},
        "sample_index": sample.index,
    }


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def prompt_for(task: Task, style: str) -> str | list[dict[str, str]]:
    """The DPO prompt of ``task``: text for plain/think/raw styles, chat messages for ``chat``.

    It is the text the sampler fed the model (``rollout.prompts.render_prompt`` without a chat
    template), so chosen/rejected continue exactly what was sampled; TRL applies the chat template
    itself to conversational rows.
    """
    from rollout.prompts import build_messages, build_prompt

    if style == "chat":
        return build_messages(task.prompt, style=style)
    return build_prompt(task.prompt, style=style)


def pair_record(pair: Pair, task: Task, style: str) -> dict[str, Any]:
    """One JSONL row: DPO fields (prompt, chosen, rejected) plus the kept scores."""
    prompt = prompt_for(task, style)
    chosen, rejected = pair.chosen.completion, pair.rejected.completion
    if style == "chat":
        chosen = [{"role": "assistant", "content": chosen}]
        rejected = [{"role": "assistant", "content": rejected}]
    return {
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "task_id": pair.task_id,
        "rule": pair.rule,
        "margin": pair.margin,
        "chosen_score": score_summary(pair.chosen),
        "rejected_score": score_summary(pair.rejected),
    }


def write_jsonl(path: str | Path, records: Sequence[dict]) -> Path:
    """Write ``records`` one JSON object per line (parent directories created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def load_pairs(path: str | Path):
    """A ``datasets.Dataset`` of pairs from a JSONL/parquet file or a ``save_to_disk`` directory.

    Raises:
        PairingError: the file is missing or lacks the prompt/chosen/rejected columns.
    """
    from datasets import load_dataset, load_from_disk

    path = Path(path)
    if path.is_dir():
        dataset = load_from_disk(str(path))
    elif path.is_file():
        kind = "parquet" if path.suffix == ".parquet" else "json"
        dataset = load_dataset(kind, data_files=str(path), split="train")
    else:
        raise PairingError(f"pairs file {path} does not exist; build one with `python -m train.pairs`")
    missing = {"prompt", "chosen", "rejected"} - set(dataset.column_names)
    if missing:
        raise PairingError(
            f"pairs file {path} lacks columns {sorted(missing)} (has {dataset.column_names}); "
            "DPO needs prompt, chosen and rejected"
        )
    return dataset


# ----------------------------------------------------------------------------- sample and score
Scorer = Callable[[list[dict]], list[RewardResult]]


def make_scorer(
    reward_urls: Sequence[str] | None,
    tasks: Sequence[Task],
    *,
    reward_config: str | None = None,
    timeout_s: float = 600.0,
    retries: int = 2,
) -> Scorer:
    """``items -> results`` through the reward client: the servers at ``reward_urls``, or, with no URLs,
    the same scoring pipeline in this process."""
    from rewards.client import RewardClient
    from rewards.config import load_reward_config

    client = RewardClient(
        list(reward_urls or []),
        tasks={t.id: t for t in tasks},
        config=load_reward_config(reward_config),
        timeout_s=timeout_s,
        retries=retries,
    )
    return client.score


def score_groups(
    tasks: Sequence[Task], completions: Sequence[Sequence[str]], scorer: Scorer
) -> list[list[Sample]]:
    """Score every completion (one scorer call) and regroup them per task as :class:`Sample` lists."""
    items = [
        {"task_id": t.id, "completion": c} for t, group in zip(tasks, completions, strict=True) for c in group
    ]
    results = scorer(items)
    if len(results) != len(items):
        raise PairingError(f"the scorer returned {len(results)} results for {len(items)} completions")
    groups, position = [], 0
    for group in completions:
        groups.append([Sample(text, results[position + i], i) for i, text in enumerate(group)])
        position += len(group)
    return groups


def sample_for_tasks(
    checkpoint: str | Path,
    tasks: Sequence[Task],
    *,
    n: int,
    style: str,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 16,
    seed: int = 0,
    backend: str = "auto",
    base: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> list[list[str]]:
    """``n`` completions per task from ``checkpoint`` (full, merged or LoRA adapter), HF or vLLM."""
    from rollout.sampling import SamplingConfig, sample_completions

    config = SamplingConfig(
        n=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        seed=seed,
        style=style,
    )
    return sample_completions(
        checkpoint, [t.prompt for t in tasks], config, base=base, backend=backend, device=device, dtype=dtype
    )


def pair_file_from_groups(
    tasks: Sequence[Task],
    groups: Sequence[Sequence[Sample]],
    out: str | Path,
    *,
    style: str,
    scored_out: str | Path | None = None,
    **options: Any,
) -> tuple[Path, PairStats]:
    """Pair scored groups and write the pairs JSONL (and, if asked, every scored sample)."""
    pairs, stats = build_pairs([(t.id, g) for t, g in zip(tasks, groups, strict=True)], **options)
    by_id = {t.id: t for t in tasks}
    path = write_jsonl(out, [pair_record(p, by_id[p.task_id], style) for p in pairs])
    if scored_out is not None:
        write_jsonl(
            scored_out,
            [
                {"task_id": t.id, "sample_index": s.index, "completion": s.completion, **s.result.to_dict()}
                for t, group in zip(tasks, groups, strict=True)
                for s in group
            ],
        )
    log.info("pairs: %s -> %s", stats.summary(), path)
    return path, stats


def read_completions(path: str | Path, tasks: Sequence[Task]) -> list[list[str]]:
    """Completion records (``task_id``, ``completion``) grouped in the order of ``tasks``."""
    known = {t.id: [] for t in tasks}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("task_id") not in known:
            raise PairingError(
                f"{path}:{number}: task_id {record.get('task_id')!r} is not in the task file; "
                "pass the --tasks file the completions were sampled from"
            )
        known[record["task_id"]].append(record["completion"])
    return [known[t.id] for t in tasks]


# ------------------------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    from rollout.sampling import add_sampling_args

    parser = argparse.ArgumentParser(
        prog="python -m train.pairs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="checkpoint to sample from (full, merged or LoRA adapter dir)")
    parser.add_argument("--completions", type=Path, help="pair these Completion records instead of sampling")
    parser.add_argument(
        "--tasks", type=Path, help="task JSONL/parquet (default: embedded corpus split --split)"
    )
    parser.add_argument("--split", default="train", help="embedded corpus split when --tasks is not given")
    parser.add_argument("--max-tasks", type=int, help="use only the first N tasks")
    parser.add_argument("--out", required=True, type=Path, help="pairs JSONL to write")
    parser.add_argument("--scored-out", type=Path, help="also write every scored sample here (JSONL)")
    parser.add_argument("--hf-dir", type=Path, help="also save the pairs as a datasets.Dataset directory")
    parser.add_argument("--style", default="plain", help="prompt style: plain | think | chat | raw")
    parser.add_argument("--reward-urls", nargs="*", help="reward server URLs (default: score in-process)")
    parser.add_argument("--reward-config", help="reward config YAML (default: RewardConfig defaults)")
    parser.add_argument(
        "--rules", default=",".join(DEFAULT_RULES), help=f"ordered, comma-separated subset of {list(RULES)}"
    )
    parser.add_argument("--max-pairs", type=int, default=4, help="pairs per prompt at most")
    parser.add_argument(
        "--ppa-margin", type=float, default=0.02, help="smallest PPA-level gap for a ppa pair"
    )
    parser.add_argument(
        "--fail-margin",
        type=float,
        default=0.1,
        help="smallest progress gap for a closer_fail pair (0.1 = 10%% more vectors matched)",
    )
    parser.add_argument("--prefer", default="widest", choices=PREFER, help="which margins fill the cap first")
    add_sampling_args(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if bool(args.model) == bool(args.completions):
        parser.error("give exactly one of --model (sample) or --completions (pair existing samples)")
    from train.common import resolve_tasks

    tasks = resolve_tasks(str(args.tasks) if args.tasks else None, args.split)[: args.max_tasks or None]
    options = {
        "rules": check_rules([r.strip() for r in args.rules.split(",") if r.strip()]),
        "max_pairs": args.max_pairs,
        "ppa_margin": args.ppa_margin,
        "fail_margin": args.fail_margin,
        "prefer": args.prefer,
    }
    if args.completions:
        completions = read_completions(args.completions, tasks)
    else:
        completions = sample_for_tasks(
            args.model,
            tasks,
            n=args.n,
            style=args.style,
            temperature=args.temperature,
            top_p=args.top_p,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            seed=args.seed,
            backend=args.backend,
            base=args.base,
            device=args.device,
            dtype=args.dtype,
        )
    scorer = make_scorer(args.reward_urls, tasks, reward_config=args.reward_config)
    groups = score_groups(tasks, completions, scorer)
    path, stats = pair_file_from_groups(
        tasks, groups, args.out, style=args.style, scored_out=args.scored_out, **options
    )
    if args.hf_dir:
        load_pairs(path).save_to_disk(str(args.hf_dir))
    print(json.dumps(stats.to_dict(), indent=1))
    print(f"{stats.summary()}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
