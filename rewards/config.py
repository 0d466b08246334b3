"""The reward config: every weight, gate, limit, seed and vector count in one place.

Defaults are declared once here (each field has a help string); a YAML file under
``configs/reward/`` overrides them; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or value is wrong; the message says what to set instead."""


def option(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse/TRL naming
    """A dataclass field with a help string (``metadata["help"]``), the one helper every config
    dataclass uses (reward, server, training scripts). A list or dict default is copied per instance."""
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CosimSettings:
    """What the co-simulation's stimulus depends on (see :mod:`rewards.cosim`)."""

    seeds: tuple[int, ...] = (1, 2, 3)
    comb_vectors: int = 256
    seq_cycles: int = 200
    reset_cycles: int = 2
    midrun_resets: int = 2

    def as_dict(self) -> dict[str, Any]:
        return {
            "seeds": tuple(int(s) for s in self.seeds),
            "comb_vectors": int(self.comb_vectors),
            "seq_cycles": int(self.seq_cycles),
            "reset_cycles": int(self.reset_cycles),
            "midrun_resets": int(self.midrun_resets),
        }


@dataclass(frozen=True)
class RewardConfig:
    # --- weights: reward = format + syntax + function + ppa, each level gated by the previous one
    w_format: float = option(0.1, "reward for extracting a module with the right name")
    w_syntax: float = option(0.2, "reward for passing Verilator lint and matching the golden interface")
    w_function: float = option(1.0, "reward for a full functional pass")
    partial_credit: float = option(
        0.5,
        "max function credit for a failing design, times its fraction of matching vectors "
        "(0 disables graded credit; must stay < 1 so a full pass dominates)",
    )
    w_ppa: float = option(
        0.5, "weight of the PPA level (in [0, 1]); only awarded after a full functional pass"
    )
    ppa_enabled: bool = option(True, "run Yosys + OpenSTA on designs that pass")
    ppa_metric: str = option("area_delay", "what PPA compares: area | delay | area_delay | area_delay_power")
    ppa_max_gain: float = option(2.0, "improvement factor over the golden that earns the full PPA level")
    # --- co-simulation
    seeds: list[int] = option([1, 2, 3], "stimulus seeds; each seed is an independent run from reset")
    comb_vectors: int = option(256, "random + corner vectors per seed for combinational designs")
    seq_cycles: int = option(200, "clock cycles per seed for sequential designs")
    reset_cycles: int = option(2, "cycles reset is held at the start of each seed")
    midrun_resets: int = option(2, "extra resets asserted at random cycles during each sequential seed")
    testbench_cosim: bool = option(
        True,
        "for tasks with their own test bench, also co-simulate against the golden and require both "
        "to pass (official benches can be weak, e.g. accept constant outputs); evals turn it off to grade "
        "exactly like the official harness",
    )
    # --- formal equivalence (after a co-simulation pass; see rewards/formal.py)
    formal: str = option(
        "confirm",
        "off | confirm: prove a co-simulation pass equivalent to the golden; a counterexample confirmed "
        "in simulation turns the pass into SIM_MISMATCH, proved/bounded/unknown keep the co-sim verdict",
    )
    formal_cpu_s: float = option(
        20.0, "CPU seconds for the proof engines per design (then bounded or unknown)"
    )
    formal_depth: int = option(20, "cycles from reset searched by the bounded engine (sat -tempinduct)")
    formal_soak_cycles: int = option(
        70000,
        "cycles of the soak simulation (inputs held) for sequential designs no engine decided; covers a "
        "16-bit counter's wrap (0 disables)",
    )
    # --- limits (per tool call; CPU seconds hold under load, wall = cpu * wall_factor + 2)
    lint_cpu_s: float = option(10.0, "CPU-time limit for Verilator lint")
    sim_cpu_s: float = option(10.0, "CPU-time limit for Icarus compile + run")
    synth_cpu_s: float = option(30.0, "CPU-time limit for Yosys synthesis")
    sta_cpu_s: float = option(20.0, "CPU-time limit for OpenSTA")
    wall_factor: float = option(
        4.0, "wall-clock limit = cpu limit * wall_factor + 2 s (generous: load is not a timeout)"
    )
    memory_mb: int = option(2048, "address-space limit per tool process")
    max_procs: int = option(64, "process/thread limit per sandbox")
    max_output_bytes: int = option(1_000_000, "stdout/stderr captured per tool call; the rest is dropped")
    max_file_mb: int = option(64, "largest file a tool may write")
    tmp_mb: int = option(64, "size of the private /tmp inside the sandbox")
    max_completion_chars: int = option(
        200_000, "longer completions are rejected with RESOURCE_LIMIT before any tool runs"
    )
    sandbox: bool = option(True, "run tools inside bubblewrap (turn off only for debugging trusted input)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.partial_credit < 1.0:
            raise ConfigError(
                f"partial_credit={self.partial_credit} must be in [0, 1) so a full pass is worth clearly more; "
                "set e.g. partial_credit: 0.5"
            )
        if self.ppa_metric not in ("area", "delay", "area_delay", "area_delay_power"):
            raise ConfigError(
                f"ppa_metric={self.ppa_metric!r} is unknown; valid: area, delay, area_delay, area_delay_power"
            )
        if not self.seeds:
            raise ConfigError("seeds is empty; give at least one seed, e.g. seeds: [1, 2, 3]")
        if self.formal not in ("off", "confirm"):
            raise ConfigError(f"formal={self.formal!r} is unknown; valid: off, confirm")
        if self.formal_depth < 1 or self.formal_cpu_s <= 0 or self.formal_soak_cycles < 0:
            raise ConfigError(
                f"formal_depth={self.formal_depth}, formal_cpu_s={self.formal_cpu_s}, formal_soak_cycles="
                f"{self.formal_soak_cycles}: need depth >= 1, cpu > 0, soak >= 0; e.g. 20, 20.0, 70000"
            )
        if self.ppa_max_gain <= 1.0:
            raise ConfigError(f"ppa_max_gain={self.ppa_max_gain} must be > 1, e.g. 2.0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def cosim(self) -> CosimSettings:
        """The co-simulation settings of this config."""
        return CosimSettings(
            seeds=tuple(self.seeds),
            comb_vectors=self.comb_vectors,
            seq_cycles=self.seq_cycles,
            reset_cycles=self.reset_cycles,
            midrun_resets=self.midrun_resets,
        )

    def content_hash(self) -> str:
        """Hash of every setting (in cache keys); computed once per config (a config is frozen)."""
        cached = self.__dict__.get("_content_hash")
        if cached is None:
            cached = hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
            object.__setattr__(self, "_content_hash", cached)
        return cached

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def load_reward_config(path: str | Path | None = None, **overrides: Any) -> RewardConfig:
    """Defaults ← YAML file (if given) ← keyword overrides. Unknown keys raise :class:`ConfigError`."""
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(
                f"reward config {path} does not exist; see configs/reward/default.yaml"
            ) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"reward config {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"reward config {path} must be a mapping of field: value, got {type(loaded).__name__}"
            )
        values.update(loaded)
    values.update(overrides)
    known = {f.name for f in dataclasses.fields(RewardConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown reward config keys {unknown}; valid keys are {sorted(known)}")
    try:
        return RewardConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"bad reward config value: {exc}") from exc


def jobs_count(text: str) -> int:
    """``argparse`` type of every ``--jobs``/``--workers`` flag: an integer >= 0, where 0 = one per core.

    Raises:
        argparse.ArgumentTypeError: not an integer, or negative (argparse prints it and exits 2).
    """
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number; pass 0 for one job per core"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(
            f"{value} is negative; pass a number of concurrent jobs >= 1, or 0 for one per core"
        )
    return value
