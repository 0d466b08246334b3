"""An evaluation run: tasks → samples (drawn from a checkpoint or read from a file) → grades → pass@k.

Grading goes through the reward core (:func:`rewards.engine.score_batch_with_code`): each sample is extracted,
guarded, linted, interface-checked and run against the benchmark's own test bench with the verdict
decided by the harness, never by what the design prints. PPA is off while grading (speed); the
PPA-vs-golden comparison is a separate step (:mod:`evals.ppa_compare`).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from evals.errata import erratum, name_erratum, split_task_id, weak_bench
from evals.passk import DEFAULT_KS, ks_for, pass_at_k
from evals.strict import BASIS_OFFICIAL, StrictVerdict, official_passed, strict_verdicts
from rewards.config import RewardConfig
from rewards.engine import score_batch_with_code
from rewards.types import RewardResult, Status, Task

log = logging.getLogger(__name__)

PROMPT_STYLES = ("benchmark", "plain", "think", "chat")
"""``benchmark``: the benchmark's own prompt text; the others: :mod:`rollout.prompts` templates."""


class SamplesFileError(ValueError):
    """A ``--samples`` file is unreadable or names tasks that are not in the suite."""


@dataclass
class Sample:
    """One completion to grade for one task."""

    task: Task
    sample_index: int
    completion: str


@dataclass
class GradedSample:
    """A sample and its grade: ``result`` from the official bench, ``strict`` from :mod:`evals.strict`.

    Without a strict verdict (``strict`` is ``None``, grading with ``strict=False``) both verdicts
    are the official one.
    """

    sample: Sample
    result: RewardResult
    interface_prefixed: bool = False
    ppa: dict[str, Any] = field(default_factory=dict)
    strict: StrictVerdict | None = None
    code: str | None = None  # the Verilog the reward core extracted and graded (None: none found)

    @property
    def task_id(self) -> str:
        return self.sample.task.id

    @property
    def passed_official(self) -> bool:
        """The official harness's verdict (its bench, judged from the harness-owned trace)."""
        return official_passed(self.result)

    @property
    def passed(self) -> bool:
        """The strict verdict: official AND co-simulation against the reference AND not refuted."""
        return self.strict.passed if self.strict is not None else self.passed_official

    @property
    def verdicts_differ(self) -> bool:
        return self.passed != self.passed_official

    def to_record(self) -> dict[str, Any]:
        """The ``samples.jsonl`` line for this sample."""
        suite, problem = split_task_id(self.task_id)
        record = {
            "task_id": self.task_id,
            "suite": suite,
            "problem": problem,
            "sample_index": self.sample.sample_index,
            "passed": self.passed,
            "passed_official": self.passed_official,
            "status": self.result.status.value,
            "reward": self.result.reward,
            "levels": self.result.levels,
            "metrics": self.result.metrics,
            "log": self.result.log,
            "erratum": erratum(self.task_id),
            "interface_prefixed": self.interface_prefixed,
            "completion": self.sample.completion,
        }
        if self.strict is not None:
            record["strict"] = self.strict.to_dict()
        if self.ppa:
            record["ppa_vs_golden"] = self.ppa
        return record


def spec_for(task: Task, prompt_style: str) -> tuple[str, str]:
    """``(spec text, rollout style)`` for a task: the benchmark's own prompt is sent as is (``raw``)."""
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {prompt_style!r}; valid styles are {list(PROMPT_STYLES)}")
    return task.prompt, "raw" if prompt_style == "benchmark" else prompt_style


def prepare_completion(task: Task, completion: str) -> tuple[str, bool]:
    """Complete a code-completion answer: prepend the task's module header when the text lacks it.

    Code-completion benchmarks (VerilogEval v1, v2 code-complete) end the prompt with the module
    header, and a base model continues with the body only; the official harnesses grade
    ``header + completion``. Returns ``(text to grade, whether the header was prepended)``.
    """
    if task.interface and not re.search(rf"\bmodule\s+{re.escape(task.top_module)}\b", completion):
        return task.interface.rstrip() + "\n" + completion, True
    return completion, False


def draw_samples(
    tasks: Sequence[Task],
    checkpoint: str | Path,
    sampling,
    *,
    prompt_style: str = "benchmark",
    base: str | Path | None = None,
    backend: str = "auto",
    device: str | None = None,
    dtype=None,
    progress: Callable[[int], None] | None = None,
) -> list[Sample]:
    """Draw ``sampling.n`` completions per task from ``checkpoint`` (see :mod:`rollout.sampling`).

    ``sampling`` is a :class:`rollout.sampling.SamplingConfig`; its ``style`` is replaced by the one
    that ``prompt_style`` implies, and the chat template is used whenever the tokenizer has one.
    """
    from rollout.sampling import sample_completions

    specs = [spec_for(t, prompt_style) for t in tasks]
    style = specs[0][1] if specs else "raw"
    config = replace(
        sampling,
        style=style,
        chat_template=True if sampling.chat_template is None else sampling.chat_template,
    )
    completions = sample_completions(
        checkpoint,
        [s for s, _ in specs],
        config,
        base=base,
        backend=backend,
        device=device,
        dtype=dtype,
        progress=progress,
    )
    return [
        Sample(task, index, text)
        for task, texts in zip(tasks, completions, strict=True)
        for index, text in enumerate(texts)
    ]


def _resolve_id(raw_id: str, tasks: dict[str, Task], suites: set[str]) -> str | None:
    if raw_id in tasks:
        return raw_id
    matches = [f"{suite}/{raw_id}" for suite in suites if f"{suite}/{raw_id}" in tasks]
    return matches[0] if len(matches) == 1 else None


def load_samples(
    path: str | Path, tasks: Sequence[Task], *, strict: bool = False, bad_lines: list[str] | None = None
) -> list[Sample]:
    """Read Completion records (``task_id``, ``completion``, optional ``sample_index``) for ``tasks``.

    ``task_id`` may be a full id (``suite/problem``) or, when unambiguous, the bare problem name.
    Records for tasks outside the selection are skipped (an error when ``strict``). A malformed line
    (not JSON, no string ``task_id``/``completion``, a ``sample_index`` that is not an integer) is
    skipped with a logged warning and its ``path:line: reason`` appended to ``bad_lines`` (an error
    when ``strict``), so one bad line does not stop an evaluation. An empty file, or one with no
    record for the selected problems, is a logged warning.

    Raises:
        SamplesFileError: unreadable file, or (``strict``) a malformed line or an unknown task id.
    """
    path = Path(path)
    by_id = {t.id: t for t in tasks}
    suites = {split_task_id(t.id)[0] for t in tasks}
    samples, next_index, skipped = [], Counter(), Counter()
    bad = [] if bad_lines is None else bad_lines
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SamplesFileError(f"cannot read samples file {path}: {exc}") from exc
    records = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        records += 1
        parsed = _parse_sample_line(line)
        if isinstance(parsed, str):
            message = f"{path}:{number}: {parsed}"
            if strict:
                raise SamplesFileError(message)
            log.warning("%s; line skipped", message)
            bad.append(message)
            continue
        raw_id, completion, index = parsed
        task_id = _resolve_id(raw_id, by_id, suites)
        if task_id is None:
            if strict:
                raise SamplesFileError(f"{path}:{number}: task {raw_id!r} is not in the selected suites")
            skipped[raw_id] += 1
            continue
        index = next_index[task_id] if index is None else index
        next_index[task_id] = max(next_index[task_id], index + 1)
        samples.append(Sample(by_id[task_id], index, completion))
    if skipped:
        log.info("skipped %d samples of %d tasks outside the selection", sum(skipped.values()), len(skipped))
    if not records:
        log.warning("samples file %s holds no records (it is empty or blank)", path)
    elif not samples:
        log.warning("none of the %d records in %s is a valid sample of the selected problems", records, path)
    return samples


def _parse_sample_line(line: str) -> tuple[str, str, int | None] | str:
    """``(task_id, completion, sample_index or None)`` of one samples-file line, or what is wrong with it."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg} at column {exc.colno})"
    if (
        not isinstance(record, dict)
        or not isinstance(record.get("task_id"), str)
        or not isinstance(record.get("completion"), str)
    ):
        return "need string fields 'task_id' and 'completion'"
    index = record.get("sample_index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
        return f"sample_index must be an integer >= 0, got {index!r}"
    return record["task_id"], record["completion"], index


def grade_samples(
    samples: Sequence[Sample],
    config: RewardConfig,
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
    strict: bool = True,
) -> list[GradedSample]:
    """Grade every sample: the official verdict, then (``strict``) the strict one.

    The official verdict is the reward core's hardened test-bench path with ``testbench_cosim`` and
    the formal level off (exactly the official harness's rule); the strict verdict co-simulates each
    official pass against the reference, then runs the formal level as ``config`` sets it
    (:mod:`evals.strict`). ``progress(n)`` counts samples of both passes.
    """
    # The official harness has neither a co-simulation nor a formal level: both belong to strict.
    official_config = replace(config, testbench_cosim=False, formal="off")
    prepared = [prepare_completion(s.task, s.completion) for s in samples]
    items = [(s.task, text) for s, (text, _) in zip(samples, prepared, strict=True)]
    scored = score_batch_with_code(items, official_config, jobs=jobs, progress=progress)
    results = [result for result, _ in scored]
    verdicts: list[StrictVerdict | None] = [None] * len(samples)
    if strict:
        strict_config = replace(config, testbench_cosim=False)
        verdicts = list(strict_verdicts(items, results, strict_config, jobs=jobs, progress=progress))
    return [
        GradedSample(s, r, prefixed, strict=v, code=code)
        for s, (r, code), (_, prefixed), v in zip(samples, scored, prepared, verdicts, strict=True)
    ]


def _pass_at_k_table(
    counts: dict[str, tuple[int, int]], ks: Sequence[int], unsampled: int = 0
) -> dict[str, float | None]:
    """Mean pass@k over problems with at least ``k`` gradable samples, plus ``unsampled`` zeros."""
    table = {}
    for k in ks:
        usable = [(n, c) for n, c in counts.values() if n >= k]
        total = len(usable) + unsampled
        table[str(k)] = sum(pass_at_k(n, c, k) for n, c in usable) / total if total else None
    return table


def _verdict_tables(
    counts: dict[str, tuple[int, int]], errata: Sequence[str], ks: Sequence[int], unsampled: Sequence[str]
) -> dict[str, Any]:
    clean = {tid: nc for tid, nc in counts.items() if tid not in errata}
    clean_unsampled = sum(1 for tid in unsampled if tid not in errata)
    return {
        "all": _pass_at_k_table(counts, ks, len(unsampled)),
        "clean": _pass_at_k_table(clean, ks, clean_unsampled),
        "solved": sum(1 for _, c in counts.values() if c > 0),
        "solved_clean": sum(1 for _, c in clean.values() if c > 0),
    }


def _weak_spots(graded: Sequence[GradedSample]) -> dict[str, list[dict[str, Any]]]:
    """Samples whose two verdicts differ, per problem: where the official bench is weak."""
    spots: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for g in graded:
        if g.verdicts_differ:
            spots[g.task_id].append(
                {
                    "sample_index": g.sample.sample_index,
                    "passed_official": g.passed_official,
                    "passed": g.passed,
                    "why": (g.strict.log if g.strict else "")[:300],
                }
            )
    return dict(sorted(spots.items()))


def _names_note(task: Task) -> str | None:
    """The known name erratum of ``task``, or one worded from the names the loader found disagreeing."""
    known = name_erratum(task.id)
    names = task.meta.get("module_names")
    if known or not names:
        return known
    return (
        f"module names disagree: description `{names.get('description') or '?'}`, bench "
        f"`{names.get('testbench')}`, reference `{names.get('reference')}` (graded under the bench's name)"
    )


def formal_breakdown(graded: Sequence[GradedSample]) -> dict[str, int]:
    """What the formal level said about the strict passes: ``proved`` (formally equivalent to the
    reference), ``bounded`` (no difference within the proof depth), ``unknown`` (undecided in budget)
    and ``not_run`` (formal off, or the strict check fell back to the official bench)."""
    counts = {"proved": 0, "bounded": 0, "unknown": 0, "not_run": 0}
    for g in graded:
        if not g.passed:
            continue
        formal = (g.strict.formal if g.strict is not None else None) or ""
        kind = formal.split(":", 1)[0].strip()
        counts[kind if kind in ("proved", "bounded", "unknown") else "not_run"] += 1
    return counts


def summarize_suite(
    graded: Sequence[GradedSample],
    tasks: Sequence[Task],
    *,
    ks: Sequence[int],
    exclude_errata: bool,
    suite_size: int | None = None,
    limited: bool = False,
) -> dict[str, Any]:
    """pass@k under both verdicts (all problems, and without errata), coverage, statuses, errata.

    Samples whose grading hit an infrastructure error are left out of ``n`` for their problem (a broken
    tool is not a wrong answer) and counted under ``infra_errors``; a problem with fewer than ``k``
    gradable samples does not enter pass@k. Known errata are the exception: their bench cannot run
    with the golden (the reward core reports that as INFRA_ERROR), so on the all-problems figure
    each of their samples counts as a failure, as under the official graders.

    Coverage: ``tasks`` are the selected problems of a suite of ``suite_size``. A selected problem
    without any sample counts as unsolved, unless the user ``limited`` the run on purpose
    (``--problems``/``--limit``): then pass@k is over the sampled problems only. Either way the
    unsampled problems are listed.
    """
    per_task: dict[str, list[GradedSample]] = defaultdict(list)
    for g in graded:
        per_task[g.task_id].append(g)
    unsampled = [t.id for t in tasks if not per_task[t.id]]
    counts, official_counts = {}, {}
    for task in tasks:
        if not per_task[task.id]:
            continue
        known_broken = erratum(task.id) is not None
        valid = [g for g in per_task[task.id] if known_broken or g.result.status is not Status.INFRA_ERROR]
        counts[task.id] = (len(valid), sum(g.passed for g in valid))
        official_counts[task.id] = (len(valid), sum(g.passed_official for g in valid))
    errata = sorted(t.id for t in tasks if erratum(t.id))
    n_max = max((n for n, _ in counts.values()), default=0)
    ks = ks_for(n_max, ks)
    zeros = [] if limited else unsampled
    strict, official = (
        _verdict_tables(counts, errata, ks, zeros),
        _verdict_tables(official_counts, errata, ks, zeros),
    )
    fallback = sorted(
        {g.task_id for g in graded if g.strict is not None and g.strict.basis == BASIS_OFFICIAL}
    )
    sampled = len(tasks) - len(unsampled)
    size = suite_size if suite_size is not None else len(tasks)
    return {
        "problems": len(tasks),
        "problems_in_suite": size,
        "problems_sampled": sampled,
        "coverage": f"{sampled} of {size} problems sampled",
        "limited": limited,
        "unsampled": unsampled,
        "samples": len(graded),
        "samples_per_problem": n_max,
        "pass_at_k": strict["clean"] if exclude_errata else strict["all"],
        "pass_at_k_all_problems": strict["all"],
        "pass_at_k_excluding_errata": strict["clean"],
        "problems_solved": strict["solved"],
        "problems_solved_excluding_errata": strict["solved_clean"],
        "passed_samples": sum(g.passed for g in graded),
        "official": {
            "pass_at_k": official["clean"] if exclude_errata else official["all"],
            "pass_at_k_all_problems": official["all"],
            "pass_at_k_excluding_errata": official["clean"],
            "problems_solved": official["solved"],
            "problems_solved_excluding_errata": official["solved_clean"],
            "passed_samples": sum(g.passed_official for g in graded),
        },
        "verdicts_differ": _weak_spots(graded),
        "formal": formal_breakdown(graded),
        "strict_fallback": fallback,
        "status_counts": dict(Counter(g.result.status.value for g in graded).most_common()),
        "infra_errors": sum(g.result.status is Status.INFRA_ERROR and not erratum(g.task_id) for g in graded),
        "errata_infra_errors": sum(
            g.result.status is Status.INFRA_ERROR and bool(erratum(g.task_id)) for g in graded
        ),
        "errata": {tid: erratum(tid) for tid in errata},
        "errata_excluded": exclude_errata,
        "errata_solved": sorted(tid for tid in errata if counts.get(tid, (0, 0))[1] > 0),
        "errata_solved_official": sorted(tid for tid in errata if official_counts.get(tid, (0, 0))[1] > 0),
        "weak_bench": {t.id: weak_bench(t.id) for t in tasks if weak_bench(t.id)},
        "module_names": {t.id: _names_note(t) for t in tasks if _names_note(t)},
        "per_problem": {
            tid: {"n": n, "c": c, "c_official": official_counts[tid][1]} for tid, (n, c) in counts.items()
        },
    }


def summarize(
    graded: Sequence[GradedSample],
    tasks: Sequence[Task],
    *,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_errata: bool = False,
    suite_sizes: dict[str, int] | None = None,
    limited: bool = False,
) -> dict[str, Any]:
    """Summary over all suites present in ``tasks`` (keyed by suite name); see :func:`summarize_suite`.

    ``suite_sizes`` gives each suite's full problem count (default: the selected count).
    """
    by_suite_tasks: dict[str, list[Task]] = defaultdict(list)
    by_suite_graded: dict[str, list[GradedSample]] = defaultdict(list)
    for task in tasks:
        by_suite_tasks[split_task_id(task.id)[0]].append(task)
    for g in graded:
        by_suite_graded[split_task_id(g.task_id)[0]].append(g)
    return {
        suite: summarize_suite(
            by_suite_graded[suite],
            suite_tasks,
            ks=ks,
            exclude_errata=exclude_errata,
            suite_size=(suite_sizes or {}).get(suite),
            limited=limited,
        )
        for suite, suite_tasks in by_suite_tasks.items()
    }


def write_samples(path: Path, graded: Sequence[GradedSample]) -> None:
    """Write one JSON line per graded sample."""
    with path.open("w") as handle:
        for g in graded:
            handle.write(json.dumps(g.to_record(), ensure_ascii=False) + "\n")
