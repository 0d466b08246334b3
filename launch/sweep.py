"""Sweeps: a grid and/or list of config overrides expanded into one resolved recipe per job.

Each job's config lands in its own run directory with ``output_dir`` pointing there, plus a manifest
(one config per line) that a Slurm array indexes with ``$SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from launch.plan import LaunchError, read_run_config


@dataclass(frozen=True)
class SweepJob:
    """One point of a sweep: its overrides and where its resolved config and run live."""

    index: int
    overrides: dict[str, Any]
    config_path: Path
    run_dir: Path


def expand_sweep(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Override sets of a sweep: the cartesian product of ``grid`` times each entry of ``list``.

    ``grid: {learning_rate: [1e-6, 3e-6], beta: [0.0, 0.04]}`` gives 4 jobs; ``list: [{...}, {...}]`` gives
    one job per entry; both together give every grid point combined with every list entry.
    """
    unknown = sorted(set(spec) - {"name", "algo", "base", "cluster", "grid", "list", "output_root"})
    if unknown:
        raise LaunchError(
            f"sweep file has unknown keys {unknown}; valid: name, algo, base, cluster, grid, list, output_root"
        )
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise LaunchError("sweep 'grid' must map each config key to a non-empty list of values")
    items = spec.get("list") or [{}]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise LaunchError("sweep 'list' must be a list of mappings of config key: value")
    keys = list(grid)
    points = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    return [{**point, **item} for point in points for item in items]


def write_sweep(spec: dict[str, Any], sweep_path: str | Path) -> tuple[list[SweepJob], Path]:
    """Resolve every job's config (base YAML + overrides) into its own run directory; returns the manifest."""
    name = spec.get("name") or Path(sweep_path).stem
    base = read_run_config(spec.get("base"))
    root = (Path(spec.get("output_root", "runs/sweeps")) / name).resolve()
    jobs = []
    for index, overrides in enumerate(expand_sweep(spec)):
        run_dir = root / f"{index:03d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved = {**base, **overrides, "output_dir": str(run_dir)}
        if "run_name" in base or spec.get("algo", "grpo") in ("grpo", "dpo", "sft"):
            resolved["run_name"] = f"{name}-{index:03d}"
        config_path = run_dir / "config.yaml"
        config_path.write_text(yaml.safe_dump(resolved, sort_keys=False))
        jobs.append(SweepJob(index, overrides, config_path, run_dir))
    manifest = root / "manifest.txt"
    manifest.write_text("".join(f"{job.config_path}\n" for job in jobs))
    (root / "sweep.json").write_text(
        json.dumps(
            [{"index": j.index, "overrides": j.overrides, "config": str(j.config_path)} for j in jobs],
            indent=1,
        )
    )
    return jobs, manifest
