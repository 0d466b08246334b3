"""PPA versus the human golden: synthesise passing samples and the golden the same way and compare.

Each distinct passing design (after extraction and whitespace normalisation) and each task's golden go
through the reward core's PPA path (:func:`rewards.ppa.measure`: Yosys mapped to the OSU 0.18 µm
liberty, OpenSTA delay and power; goldens through its per-task cache). A design *beats the golden on a metric* when at least one of its
passing samples is strictly better on that metric; ``product`` is area × delay × power (area × delay
with each factor floored as the reward floors it).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from evals.run import GradedSample
from rewards import ppa
from rewards.config import RewardConfig
from rewards.sandbox import SandboxError
from rewards.score import default_jobs, limits_for, normalise_code
from rewards.tools import ToolNotFound, liberty_path
from rewards.types import Task

log = logging.getLogger(__name__)

METRICS = ("area", "delay", "power", "product")
_EPS = 1e-9


class PPAError(RuntimeError):
    """Synthesis or timing of a design produced no figures."""


def measure(task: Task, code: str, config: RewardConfig, *, golden: bool = False) -> dict[str, float]:
    """Area, delay (ns), power (mW) and their product for ``code``, synthesised like every design.

    ``golden=True`` measures ``task.reference`` through the reward core's per-task cache. Factors are
    floored as the reward does (:func:`rewards.ppa.cost`), so wiring-only designs give finite ratios.

    Raises:
        PPAError: synthesis or timing failed (the message carries the tool's reason).
    """
    liberty = liberty_path()
    clock = ppa.clock_port_of(task)
    synth_limits = limits_for(config, config.synth_cpu_s)
    sta_limits = limits_for(config, config.sta_cpu_s)
    if golden:
        figures = ppa.golden_figures(
            task,
            clock,
            liberty=liberty,
            synth_limits=synth_limits,
            sta_limits=sta_limits,
            sandbox=config.sandbox,
        )
    else:
        figures = ppa.measure(
            code,
            task.top_module,
            clock,
            liberty=liberty,
            synth_limits=synth_limits,
            sta_limits=sta_limits,
            sandbox=config.sandbox,
        )
    if not figures.ok:
        raise PPAError(f"{'golden' if golden else 'sample'} of {task.id}: {figures.error}")
    area, delay, power = figures.synth.area, figures.sta.delay_ns, figures.sta.power_mw
    product = ppa.cost("area_delay_power", area, delay, power)
    return {
        "area": ppa.cost("area", area, delay, power),
        "delay": ppa.cost("delay", area, delay, power),
        "power": product / ppa.cost("area_delay", area, delay, power),
        "product": product,
        "raw_area": area,
        "raw_delay_ns": delay,
        "raw_power_mw": power,
    }


def _ratios(sample: dict[str, float], golden: dict[str, float]) -> dict[str, float | None]:
    return {
        m: sample[m] / golden[m] if sample.get(m) is not None and golden.get(m) else None for m in METRICS
    }


def _distinct_passing(graded: Sequence[GradedSample]) -> dict[str, dict[str, tuple[Task, str, list]]]:
    """task id -> normalised code -> (task, code, graded samples with that code)."""
    out: dict[str, dict[str, tuple[Task, str, list]]] = defaultdict(dict)
    for g in graded:
        if not g.passed:  # strict: a design the official bench only waves through is not compared
            continue
        code = g.code  # what the reward core extracted and graded
        if code is None:
            continue
        key = normalise_code(code)
        entry = out[g.task_id].setdefault(key, (g.sample.task, code, []))
        entry[2].append(g)
    return out


def _safe_measure(task: Task, code: str, config: RewardConfig, golden: bool) -> dict[str, float] | str:
    try:
        return measure(task, code, config, golden=golden)
    except (PPAError, ToolNotFound, SandboxError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def compare_ppa(
    graded: Sequence[GradedSample],
    config: RewardConfig,
    *,
    jobs: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compare every passing design with its golden; returns per-design ratios and counts.

    Also stores each measured sample's figures and ratios in ``GradedSample.ppa``. ``progress(n)`` is
    called as designs (goldens included) are measured.
    """
    designs = _distinct_passing(graded)
    work: list[tuple[str, str | None, Task, str]] = []
    for task_id, codes in designs.items():
        task = next(iter(codes.values()))[0]
        work.append((task_id, None, task, task.reference))
        work.extend((task_id, key, task, code) for key, (task, code, _) in codes.items())

    def run(item: tuple[str, str | None, Task, str]) -> dict[str, float] | str:
        result = _safe_measure(item[2], item[3], config, item[1] is None)
        if progress:
            progress(1)
        return result

    with ThreadPoolExecutor(max_workers=jobs or default_jobs()) as pool:
        measured = list(pool.map(run, work))
    figures = {(w[0], w[1]): m for w, m in zip(work, measured, strict=True)}
    report: dict[str, Any] = {"designs": {}, "errors": {}, "counts": {"compared": 0}}
    for metric in METRICS:
        for verdict in ("beats", "ties", "worse"):
            report["counts"][f"{verdict}_{metric}"] = 0
    for task_id, codes in designs.items():
        golden = figures[(task_id, None)]
        if isinstance(golden, str):
            report["errors"][task_id] = f"golden: {golden}"
            continue
        ratios = []
        for key, (_, _, samples) in codes.items():
            sample = figures[(task_id, key)]
            if isinstance(sample, str):
                report["errors"].setdefault(task_id, sample)
                continue
            ratio = _ratios(sample, golden)
            ratios.append(ratio)
            for g in samples:
                g.ppa = {"sample": sample, "golden": golden, "ratio": ratio}
        if ratios:
            _record_design(report, task_id, golden, ratios)
    return report


def _record_design(
    report: dict[str, Any], task_id: str, golden: dict[str, float], ratios: list[dict]
) -> None:
    best = {m: min((r[m] for r in ratios if r[m] is not None), default=None) for m in METRICS}
    report["designs"][task_id] = {"golden": golden, "ratio": best, "distinct_passing": len(ratios)}
    report["counts"]["compared"] += 1
    for metric, value in best.items():
        if value is None:
            continue
        verdict = "beats" if value < 1 - _EPS else "ties" if value <= 1 + _EPS else "worse"
        report["counts"][f"{verdict}_{metric}"] += 1
