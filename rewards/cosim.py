"""Co-simulation of a candidate against the golden design, decided in Python.

How a verdict is reached (docs/design.md, "The verdict is the harness's, never the design's"):

1. The golden module's ports (``task.reference``, ``task.top_module``) give the harness: a clock
   (``meta["clock"]`` or a clock-like 1-bit input name; none means combinational), a reset
   (``meta["reset"]``/``meta["reset_active"]`` or a reset-like name; active-low when the name says
   so: ``rst_n``, ``resetn``, ``nrst`` …) and every other input as data.
2. Stimulus is generated here, seeded and deterministic: directed corners (and the numeric
   literals of the golden source, for inputs they fit) then random values; sequential designs get
   reset held at the start of each seed and extra resets mid-run (a single cycle long in every
   second seed, so a design that needs a longer reset is caught), inputs that change 4 time units
   away from either clock edge, and (second and third seeds) inputs that often keep their value
   for long runs of cycles.
3. The golden and the candidate are simulated in *separate* Icarus runs with the same harness, so
   no candidate ever shares a simulation with the golden. The golden trace is computed once per
   (task content, stimulus settings) and kept in an in-process LRU cache.
4. The harness writes one line per compared vector (outputs in ``%b``, so x/z stay visible) to a
   file named after a per-run secret, between a header holding the secret and an end marker holding
   the vector count. Python checks the header, the end marker and the exact vector count, then
   compares bit by bit: golden x/z bits are don't-care, a candidate x/z where the golden is 0/1 is a
   mismatch. The candidate's stdout is never read.
5. Sequential designs are compared every cycle, sampled twice: just before the rising and just
   before the falling clock edge (so either active edge is covered). The first cycle, before the
   initial reset has met a clock edge, is not compared (only initialisers define it).

The candidate's source is compiled unchanged; the harness root module is ``rtlf_tb_<nonce>``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from rewards.config import CosimSettings
from rewards.interface import InterfaceError, parse_ports
from rewards.lint import LintResult, interpret, lint_binds, lint_command, run_lint
from rewards.sandbox import Job, JobResult, Limits, SandboxError, cpu_rlimit, out_of_memory, run_job
from rewards.sim import (
    COMPILE_FAILED_RC,
    LruCache,
    SimOutcome,
    SimRun,
    candidate_limits,
    compile_log,
    failure_status,
    new_nonce,
    simulate,
)
from rewards.sim import _script as sim_script
from rewards.tools import IVERILOG, VVP, ToolNotFound
from rewards.types import Port, Status, Task

log = logging.getLogger(__name__)

__all__ = ["SimOutcome", "LintedOutcome", "run_cosim", "run_lint_and_cosim", "golden_trace", "GOLDEN_CACHE"]

HARNESS_VERSION = 4
"""Bump when the harness or stimulus changes, so cached golden traces are recomputed."""

GOLDEN_CACHE = LruCache(size=512)
_CANDIDATE_FILE = "candidate.sv"
_HARNESS_FILE = "harness.sv"
_STIM_FILE = "stim.hex"
_MAX_LOGGED_MISMATCHES = 3


# --- port roles -------------------------------------------------------------------------------

_CLOCK_NAMES = re.compile(
    r"^(i_|in_)?(clk|clock|clk_in|clkin|sys_clk|sysclk|aclk|pclk|hclk|wclk|rclk)(_i|_in)?$", re.I
)
_CLOCK_LIKE = re.compile(r"^(.*_)?(clk|clock)(_?[a-z0-9])?$|(clk|clock)$", re.I)
_RESET_NAMES = re.compile(r"^(i_)?([a-z]{1,2}_?)?(rst|reset)(_?n|_b|_ni|_l)?(_i)?$", re.I)
_RESET_LIKE = re.compile(r"(rst|reset|clear|clr)", re.I)


@dataclass(frozen=True)
class PortRoles:
    """How the harness drives each golden port."""

    clock: str | None
    clock_inputs: tuple[Port, ...]
    reset: str | None
    reset_active: int
    data_inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]


def _active_low(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("n") or lower.endswith(("n", "_b", "_l", "_ni"))


def _pick(ports: Sequence[Port], name: str | None) -> Port | None:
    return next((p for p in ports if name is not None and p.name == name), None)


def plan_ports(ports: Sequence[Port], meta: dict) -> PortRoles:
    """Find the clock and reset among ``ports`` (``meta`` first, then names); the rest is data.

    Raises :class:`InterfaceError` when ``meta`` names a clock or reset the module does not have,
    or when the module has no output to compare.
    """
    inputs = [p for p in ports if p.direction == "input"]
    outputs = tuple(p for p in ports if p.direction != "input")
    if not outputs:
        raise InterfaceError(f"module has no outputs ({[p.name for p in ports]}): nothing to compare")
    clock = _pick(inputs, meta.get("clock"))
    if meta.get("clock") and clock is None:
        raise InterfaceError(
            f"meta clock {meta['clock']!r} is not an input of the module "
            f"(inputs: {[p.name for p in inputs]}); fix the task's meta"
        )
    one_bit = [p for p in inputs if p.width == 1]
    if clock is None and "clock" not in meta:
        clock = next((p for p in one_bit if _CLOCK_NAMES.match(p.name)), None) or next(
            (p for p in one_bit if _CLOCK_LIKE.search(p.name)), None
        )
    clocks = (clock,) if clock else ()
    if clock:  # further clock-named inputs toggle with the main clock
        clocks += tuple(p for p in one_bit if p is not clock and _CLOCK_LIKE.search(p.name))
    reset = _pick(inputs, meta.get("reset"))
    if meta.get("reset") and reset is None:
        raise InterfaceError(
            f"meta reset {meta['reset']!r} is not an input of the module "
            f"(inputs: {[p.name for p in inputs]}); fix the task's meta"
        )
    if reset is None and "reset" not in meta:
        reset = next((p for p in one_bit if p not in clocks and _RESET_NAMES.match(p.name)), None)
    active = meta.get("reset_active")
    if reset is not None and active is None:
        active = 0 if _active_low(reset.name) else 1
    data = tuple(p for p in inputs if p not in clocks)
    return PortRoles(
        clock=clock.name if clock else None,
        clock_inputs=clocks,
        reset=reset.name if reset else None,
        reset_active=int(active or 0),
        data_inputs=data,
        outputs=outputs,
    )


# --- stimulus ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StimulusPlan:
    """Port roles plus the input vectors (one value per data input) and where each seed starts."""

    roles: PortRoles
    vectors: tuple[tuple[int, ...], ...]
    seed_starts: tuple[tuple[int, int], ...] = field(default=())

    @property
    def clock(self) -> str | None:
        return self.roles.clock

    @property
    def clock_inputs(self) -> tuple[Port, ...]:
        return self.roles.clock_inputs

    @property
    def data_inputs(self) -> tuple[Port, ...]:
        return self.roles.data_inputs

    @property
    def outputs(self) -> tuple[Port, ...]:
        return self.roles.outputs

    @property
    def stim_width(self) -> int:
        return sum(p.width for p in self.data_inputs)

    def hex_text(self) -> str:
        """The vectors packed (first data input most significant) for ``$readmemh``."""
        digits = max(1, (self.stim_width + 3) // 4)
        out = []
        for vector in self.vectors:
            packed = 0
            for port, value in zip(self.data_inputs, vector, strict=True):
                packed = (packed << port.width) | value
            out.append(f"{packed:0{digits}x}")
        return "\n".join(out) + "\n"

    def unreset_rows(self) -> frozenset[int]:
        """Rows compared before any clock edge under reset: cycle 0 when the stimulus starts in reset.

        Until the first reset reaches the state, the state is whatever initialisers say; a design
        that relies on its reset (as the spec asks) must not fail because the golden also has an
        initialiser, so that cycle is not compared.
        """
        roles = self.roles
        if not roles.clock or roles.reset is None or not self.vectors:
            return frozenset()
        index = [p.name for p in roles.data_inputs].index(roles.reset)
        return frozenset({0}) if self.vectors[0][index] == roles.reset_active else frozenset()

    def where(self, index: int) -> str:
        """``seed S, cycle C`` (or ``vector V``) of vector ``index``."""
        seed, start = next((s, b) for s, b in reversed(self.seed_starts) if b <= index)
        unit = "cycle" if self.clock else "vector"
        return f"seed {seed}, {unit} {index - start}"


def describe_inputs(plan: StimulusPlan, index: int) -> str:
    """``a=0x3 b=0x1`` for vector ``index`` (long lists are cut)."""
    parts = [f"{p.name}=0x{v:x}" for p, v in zip(plan.data_inputs, plan.vectors[index], strict=True)]
    text = " ".join(parts) or "no inputs"
    return text if len(text) <= 200 else text[:197] + "..."


def corner_values(width: int) -> list[int]:
    """Directed values for a ``width``-bit input: 0, all ones, MSB only, 1, alternating, signed max/min."""
    ones = (1 << width) - 1
    alt = int("01" * width, 2) & ones
    values = [0, ones, 1 << (width - 1), 1, alt, ones ^ alt, ones >> 1]
    return list(dict.fromkeys(v & ones for v in values))


_LITERAL = re.compile(r"(\d+)\s*'\s*[sS]?([bBoOdDhH])\s*([0-9a-fA-F_xXzZ?]+)|\b(\d+)\b")
_RADIX = {"b": 2, "o": 8, "d": 10, "h": 16}
_MAX_CONSTANTS = 64


def harvest_constants(source: str) -> tuple[tuple[int | None, int], ...]:
    """Numeric literals of ``source`` as ``(size or None, value)``, x/z digits read as 0.

    Designs compare inputs with specific codes (``16'he06b``, ``q == 999``) that random values
    almost never hit; the stimulus offers them to inputs they fit.
    """
    code = re.sub(r"//[^\n]*|/\*.*?\*/", " ", source, flags=re.S)
    found: dict[tuple[int | None, int], None] = {}
    for match in _LITERAL.finditer(code):
        size, radix, digits, plain = match.groups()
        try:
            if plain is not None:
                key = (None, int(plain))
            else:
                clean = re.sub(r"[xXzZ?]", "0", digits.replace("_", ""))
                key = (int(size), int(clean, _RADIX[radix.lower()]))
        except ValueError:
            continue
        found[key] = None
        if len(found) >= _MAX_CONSTANTS:
            break
    return tuple(found)


def port_values(port: Port, constants: Sequence[tuple[int | None, int]] = ()) -> list[int]:
    """Directed values for ``port``: its corners, then harvested constants that fit its width."""
    values = corner_values(port.width)
    for size, value in constants:
        if (size == port.width or (size is None and value > 1)) and 0 <= value < (1 << port.width):
            values.append(value)
    return list(dict.fromkeys(values))


def _directed(ports: Sequence[Port], values: dict[str, list[int]]) -> list[tuple[int, ...]]:
    """Whole-vector corners (every input the same pattern), then one input at a time on a zero background."""
    per_port = [values[p.name] for p in ports]
    vectors = []
    for k in range(max((len(v) for v in per_port), default=0)):
        vectors.append(tuple(v[k % len(v)] for v in per_port))
    for i, options in enumerate(per_port):
        for value in options[1:]:
            vectors.append(tuple(value if j == i else 0 for j in range(len(ports))))
    return list(dict.fromkeys(vectors))


def _random_vector(
    rng: random.Random, ports: Sequence[Port], values: dict[str, list[int]], directed_p: float = 0.25
) -> tuple[int, ...]:
    out = []
    for port in ports:
        if port.width > 1 and rng.random() < directed_p:
            out.append(rng.choice(values[port.name]))
        else:
            out.append(rng.getrandbits(port.width))
    return tuple(out)


def _comb_seed(
    rng: random.Random, ports: Sequence[Port], values: dict[str, list[int]], count: int, first: bool
) -> list[tuple[int, ...]]:
    width = sum(p.width for p in ports)
    vectors: list[tuple[int, ...]] = []
    if first and width <= 16 and (1 << width) <= count:
        for packed in range(1 << width):  # exhaustive when it fits
            row, shift = [], width
            for port in ports:
                shift -= port.width
                row.append((packed >> shift) & ((1 << port.width) - 1))
            vectors.append(tuple(row))
    elif first:
        vectors = _directed(ports, values)[: max(1, count // 2)]
    while len(vectors) < count:
        vectors.append(_random_vector(rng, ports, values))
    return vectors[:count]


_HOLD = (0.0, 0.85, 0.97)
"""Per seed (cycling), the chance that an input keeps last cycle's value: long runs of one value
reach the states behind "N cycles in a row" conditions that fresh random values never do."""


def _seq_seed(
    rng: random.Random,
    roles: PortRoles,
    values: dict[str, list[int]],
    cycles: int,
    reset_cycles: int,
    midrun_resets: int,
    hold: float = 0.0,
    midrun_cycles: int | None = None,
) -> list[tuple[int, ...]]:
    ports = roles.data_inputs
    reset_at = {i for i in range(min(reset_cycles, cycles))} if roles.reset else set()
    if roles.reset and cycles > reset_cycles + 2:
        for _ in range(midrun_resets):
            start = rng.randrange(reset_cycles + 1, cycles - 1)
            reset_at.update(range(start, min(cycles, start + (midrun_cycles or max(1, reset_cycles)))))
    vectors = []
    for cycle in range(cycles):
        row = list(_random_vector(rng, ports, values))
        if vectors and hold:
            row = [old if rng.random() < hold else new for old, new in zip(vectors[-1], row, strict=True)]
        for i, port in enumerate(ports):
            if port.name == roles.reset:
                on = cycle in reset_at
                row[i] = roles.reset_active if on else 1 - roles.reset_active
            elif port.width == 1 and _RESET_LIKE.search(port.name):
                # other resets/clears: asserted with the main reset (multi-domain designs need
                # every domain reset) and now and then, so they do not mask the logic
                active = 0 if _active_low(port.name) else 1
                on = cycle in reset_at or (cycle < reset_cycles) or rng.random() < 0.05
                row[i] = active if on else 1 - active
        vectors.append(tuple(row))
    return vectors


def build_stimulus(
    roles: PortRoles,
    *,
    seeds: Sequence[int],
    comb_vectors: int,
    seq_cycles: int,
    reset_cycles: int,
    midrun_resets: int,
    constants: Sequence[tuple[int | None, int]] = (),
) -> StimulusPlan:
    """Deterministic stimulus for ``roles``: per seed, ``seq_cycles`` cycles or ``comb_vectors`` vectors.

    ``constants`` (see :func:`harvest_constants`) join the directed values of inputs they fit.
    """
    values = {p.name: port_values(p, constants) for p in roles.data_inputs}
    vectors: list[tuple[int, ...]] = []
    starts = []
    for n, seed in enumerate(seeds):
        rng = random.Random(f"rtlforge-stimulus-{seed}")
        starts.append((int(seed), len(vectors)))
        if roles.clock:
            vectors += _seq_seed(
                rng,
                roles,
                values,
                seq_cycles,
                reset_cycles,
                midrun_resets,
                hold=_HOLD[n % len(_HOLD)],
                midrun_cycles=1 if n % 2 else None,
            )
        else:
            vectors += _comb_seed(rng, roles.data_inputs, values, comb_vectors, first=n == 0)
    return StimulusPlan(roles=roles, vectors=tuple(vectors), seed_starts=tuple(starts))


@dataclass(frozen=True)
class GoldenTrace:
    """The golden's behaviour under one stimulus: what candidates are compared against."""

    plan: StimulusPlan
    rows: tuple[tuple[str, ...], ...]
    stim_text: str
    cpu_s: float
    defined_fraction: float

    @functools.cached_property
    def dont_care_rows(self) -> frozenset[int]:
        """Rows with an x or z bit (don't-care): only there can a different row still match."""
        return frozenset(i for i, row in enumerate(self.rows) if any(not set(v) <= {"0", "1"} for v in row))

    @functools.cached_property
    def trace_body(self) -> bytes:
        """The rows as the harness writes them (what a candidate that matches everywhere writes)."""
        return "".join(f"{' '.join((str(k), *row))}\n" for k, row in enumerate(self.rows)).encode()


class GoldenError(RuntimeError):
    """The golden design itself cannot be simulated: the task (or the toolchain) is broken."""


class TraceError(ValueError):
    """A trace file is missing, forged, truncated or malformed."""


def harness_source(
    plan: StimulusPlan,
    top: str,
    names_nonce: str,
    secret: str,
    *,
    stim_file: str = _STIM_FILE,
    last: bool = True,
) -> str:
    """The Verilog harness driving ``top`` from ``stim_file`` and writing ``trace_<secret>.txt``.

    ``last=False`` (a harness among others in one simulation, :mod:`rewards.batch`): instead of
    ending the simulation it sets its ``rtlf_done`` flag when its trace is closed.
    """
    n = len(plan.vectors)
    width = max(1, plan.stim_width)
    lines = [
        "`timescale 1ns/1ps",
        f"module rtlf_tb_{names_nonce};",
        f"  reg [{width - 1}:0] rtlf_stim [0:{n - 1}];",
    ]
    if plan.clock:
        lines.append("  reg rtlf_clk;")
    for port in plan.data_inputs:
        lines.append(f"  reg [{port.width - 1}:0] rtlf_i_{port.name};")
    for port in plan.outputs:
        lines.append(f"  wire [{port.width - 1}:0] rtlf_o_{port.name};")
    conns = [f".{p.name}(rtlf_clk)" for p in plan.clock_inputs]
    conns += [f".{p.name}(rtlf_i_{p.name})" for p in plan.data_inputs]
    conns += [f".{p.name}(rtlf_o_{p.name})" for p in plan.outputs]
    lines.append(f"  {top} rtlf_dut ({', '.join(conns)});")
    if not last:
        lines.append("  reg rtlf_done = 1'b0;")
    lines.append("  integer rtlf_fd, rtlf_k;")
    outs = ", ".join(f"rtlf_o_{p.name}" for p in plan.outputs)
    fmt = " ".join("%b" for _ in plan.outputs)
    drive = ""
    if plan.data_inputs:
        drive = "{" + ", ".join(f"rtlf_i_{p.name}" for p in plan.data_inputs) + "} = rtlf_stim[rtlf_k];"
    lines += [
        "  initial begin",
        f'    $readmemh("{stim_file}", rtlf_stim);',
        f'    rtlf_fd = $fopen("trace_{secret}.txt", "w");',
        f'    $fdisplay(rtlf_fd, "H {secret}");',
    ]
    if plan.clock:
        lines += [
            "    rtlf_clk = 1'b0;",
            f"    for (rtlf_k = 0; rtlf_k < {n}; rtlf_k = rtlf_k + 1) begin",
            f"      #1 {drive}",
            f'      #3 $fwrite(rtlf_fd, "%0d {fmt}", rtlf_k, {outs});',
            "      #1 rtlf_clk = 1'b1;",
            f'      #4 $fdisplay(rtlf_fd, " {fmt}", {outs});',
            "      #1 rtlf_clk = 1'b0;",
            "    end",
        ]
    else:
        lines += [
            f"    for (rtlf_k = 0; rtlf_k < {n}; rtlf_k = rtlf_k + 1) begin",
            f"      {drive}",
            f'      #5 $fdisplay(rtlf_fd, "%0d {fmt}", rtlf_k, {outs});',
            "      #5;",
            "    end",
        ]
    lines += [
        f'    $fdisplay(rtlf_fd, "E {secret} %0d", {n});',
        "    $fclose(rtlf_fd);",
        "    $finish;" if last else "    rtlf_done = 1'b1;",
        "  end",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def parse_trace(data: bytes | None, secret: str, plan: StimulusPlan) -> list[tuple[str, ...]]:
    """Rows of a trace file, validated against ``secret`` and the plan; raises :class:`TraceError`."""
    if data is None:
        raise TraceError("the harness wrote no trace (the simulation ended before it started)")
    lines = data.decode("ascii", "replace").splitlines()
    if not lines or lines[0] != f"H {secret}":
        raise TraceError("the trace header is missing or does not carry this run's secret")
    n = len(plan.vectors)
    samples = 2 if plan.clock else 1
    widths = [p.width for p in plan.outputs] * samples
    # the line the harness writes, checked in one match (the field-by-field checks below decide the rest)
    exact = _row_pattern(tuple(widths))
    rows = []
    for number, line in enumerate(lines[1:]):
        matched = exact.fullmatch(line)
        if matched is not None and number < n and matched.group(1) == str(number):
            rows.append(tuple(line.split()[1:]))
            continue
        if line.startswith("E "):
            if line != f"E {secret} {n}" or number != n or len(lines) != n + 2:
                raise TraceError(f"the trace end marker is wrong (after {number} of {n} vectors)")
            return rows
        fields = line.split()
        if number >= n or len(fields) != len(widths) + 1 or fields[0] != str(number):
            raise TraceError(f"trace line {number + 1} is malformed or out of order")
        values = tuple(fields[1:])
        if any(len(v) != w for v, w in zip(values, widths, strict=True)):
            raise TraceError(f"trace line {number + 1} has values of the wrong width")
        rows.append(values)
    raise TraceError(f"the simulation ended after {len(rows)} of {n} vectors (no end marker)")


@functools.lru_cache(maxsize=256)
def _row_pattern(widths: tuple[int, ...]) -> re.Pattern:
    return re.compile(r"(\d+)" + "".join(rf" [^\s]{{{w}}}" for w in widths))


def bits_match(golden: str, got: str) -> bool:
    """Golden x/z bits are don't-care; every golden 0/1 bit must be the same 0/1 in ``got``."""
    if golden == got:
        return True
    return all(g not in "01" or g == c for g, c in zip(golden, got, strict=True))


def _defined_fraction(rows: Sequence[tuple[str, ...]]) -> float:
    total = defined = 0
    for row in rows:
        for value in row:
            total += len(value)
            defined += value.count("0") + value.count("1")
    return defined / total if total else 0.0


def _cache_key(task: Task, settings: dict) -> str:
    blob = json.dumps(
        {
            "v": HARNESS_VERSION,
            "ref": task.reference,
            "top": task.top_module,
            "meta": {k: task.meta.get(k) for k in ("clock", "reset", "reset_active")},
            **settings,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def golden_ports(task: Task) -> list[Port]:
    """Ports of the golden top module; raises :class:`InterfaceError` for a broken task."""
    return parse_ports(task.reference, task.top_module)


def _run_golden(task: Task, settings: dict, limits: Limits, sandbox: bool) -> GoldenTrace:
    plan = build_stimulus(
        plan_ports(golden_ports(task), task.meta), **settings, constants=harvest_constants(task.reference)
    )
    if not plan.vectors:
        raise GoldenError(f"no stimulus for task {task.id!r} ({settings}): set comb_vectors/seq_cycles > 0")
    stim_text = plan.hex_text()
    names_nonce, secret = new_nonce(), new_nonce()
    harness = harness_source(plan, task.top_module, names_nonce, secret)
    run = simulate(
        [(_HARNESS_FILE, harness), ("golden.sv", task.reference)],
        None,
        [f"rtlf_tb_{names_nonce}"],
        limits=limits,
        sandbox=sandbox,
        data_files=[(_STIM_FILE, stim_text)],
        outputs=[f"trace_{secret}.txt"],
    )
    where = f"task {task.id!r}, module {task.top_module}"
    if not run.compiled:
        raise GoldenError(
            f"golden design does not compile under Icarus ({where}): "
            f"{compile_log(run.result)}. Fix the task's reference."
        )
    try:
        rows = parse_trace(run.outputs.get(f"trace_{secret}.txt"), secret, plan)
    except TraceError as exc:
        raise GoldenError(
            f"golden simulation failed ({where}): {exc}; {run.result.tail(400)}. "
            "Fix the task's reference or raise sim_cpu_s."
        ) from exc
    defined = _defined_fraction(rows)
    if defined == 0.0:
        raise GoldenError(
            f"golden design defines no output bit under this stimulus ({where}): every "
            "candidate would pass. Fix the task's reference, or its meta clock/reset."
        )
    return GoldenTrace(
        plan=plan,
        rows=tuple(rows),
        stim_text=stim_text,
        cpu_s=max(run.result.cpu_s, run.result.wall_s),
        defined_fraction=defined,
    )


def golden_trace(task: Task, settings: CosimSettings, *, limits: Limits, sandbox: bool) -> GoldenTrace:
    """The golden's trace for these stimulus settings (cached in-process).

    Raises:
        GoldenError, InterfaceError: the task's reference cannot be simulated.
        ToolNotFound, SandboxError: the toolchain or the sandbox is missing.
    """
    settings = settings.as_dict()
    key = _cache_key(task, settings)
    return GOLDEN_CACHE.get_or_compute(
        key, lambda: _run_golden(task, settings, limits, sandbox), remember=(GoldenError, InterfaceError)
    )


def _mismatch_line(golden: GoldenTrace, index: int, got: tuple[str, ...]) -> str:
    plan = golden.plan
    want = golden.rows[index]
    names = [p.name for p in plan.outputs]
    parts = []
    for pos, (g, c) in enumerate(zip(want, got, strict=True)):
        if not bits_match(g, c):
            name = names[pos % len(names)]
            when = ("@rise" if pos < len(names) else "@fall") if plan.clock else ""
            parts.append(f"{name}{when} expected {g} got {c}")
    return f"vector {index} ({plan.where(index)}; {describe_inputs(plan, index)}): " + ", ".join(parts)


def compare(golden: GoldenTrace, rows: Sequence[tuple[str, ...]]) -> SimOutcome:
    """Compare a validated candidate trace with the golden's; graded by fully matching vectors."""
    skip = golden.plan.unreset_rows()
    loose = golden.dont_care_rows
    bad = [
        i
        for i, (want, got) in enumerate(zip(golden.rows, rows, strict=True))
        if want != got
        and i not in skip
        and (i not in loose or not all(bits_match(g, c) for g, c in zip(want, got, strict=True)))
    ]
    total = len(golden.rows)
    metrics = {"golden_defined_fraction": round(golden.defined_fraction, 4)}
    if not bad:
        return SimOutcome(Status.OK, total, total, "", metrics)
    shown = [_mismatch_line(golden, i, rows[i]) for i in bad[:_MAX_LOGGED_MISMATCHES]]
    head = f"{len(bad)} of {total} vectors mismatch; first: "
    return SimOutcome(Status.SIM_MISMATCH, total - len(bad), total, head + "\n".join(shown), metrics)


def run_cosim(
    task: Task, code: str, settings: CosimSettings, *, limits: Limits, sandbox: bool = True
) -> SimOutcome:
    """Co-simulate ``code`` against ``task.reference``; see the module docstring.

    Returns a :class:`SimOutcome`: OK (all vectors match), SIM_MISMATCH (graded), SYNTAX_ERROR
    (Icarus rejects the candidate), SIM_TIMEOUT, RESOURCE_LIMIT, or INFRA_ERROR (the golden cannot
    be simulated).

    Raises:
        ToolNotFound, SandboxError: Icarus or the sandbox is missing (infrastructure).
    """
    try:
        golden = golden_trace(task, settings, limits=limits, sandbox=sandbox)
    except (GoldenError, InterfaceError) as exc:
        log.warning("golden of %s unusable: %s", task.id, exc)
        return SimOutcome(Status.INFRA_ERROR, log=f"golden design of task {task.id!r} unusable: {exc}")
    plan = golden.plan
    names_nonce, secret = new_nonce(), new_nonce()
    harness = harness_source(plan, task.top_module, names_nonce, secret)
    trace_name = f"trace_{secret}.txt"
    run = simulate(
        [(_HARNESS_FILE, harness)],
        (_CANDIDATE_FILE, code),
        [f"rtlf_tb_{names_nonce}"],
        limits=candidate_limits(limits, golden.cpu_s),
        sandbox=sandbox,
        data_files=[(_STIM_FILE, golden.stim_text)],
        outputs=[trace_name],
    )
    return judge_run(golden, run, secret)


def judge_run(golden: GoldenTrace, run: SimRun, secret: str) -> SimOutcome:
    """The outcome of a candidate's compile + simulation ``run`` whose trace carries ``secret``."""
    plan = golden.plan
    trace_name = f"trace_{secret}.txt"
    total = len(golden.rows)
    metrics = {"sequential": bool(plan.clock)}
    if not run.compiled:
        return SimOutcome(
            Status.SYNTAX_ERROR, 0, total, f"Icarus rejects the design: {compile_log(run.result)}", metrics
        )
    limit_status = failure_status(run.result)
    if limit_status is not None:
        what = "ran out of time" if limit_status is Status.SIM_TIMEOUT else "hit a resource limit"
        return SimOutcome(
            limit_status,
            0,
            total,
            f"simulation {what} (combinational loop or runaway process?): {run.result.tail(300)}",
            metrics,
        )
    try:
        return judge_trace(golden, run.outputs.get(trace_name), secret)
    except TraceError as exc:
        return SimOutcome(Status.SIM_MISMATCH, 0, total, f"harness trace rejected: {exc}", metrics)


def judge_trace(golden: GoldenTrace, data: bytes | None, secret: str) -> SimOutcome:
    """The outcome of a candidate whose harness wrote trace ``data`` under ``secret``; raises
    :class:`TraceError` for a trace that is missing, forged, truncated or malformed.

    A trace identical to the golden's (the same header, rows and end marker) is judged without
    parsing it: parsing it would give the golden's own rows.
    """
    if data is not None and data == b"".join(
        (f"H {secret}\n".encode(), golden.trace_body, f"E {secret} {len(golden.rows)}\n".encode())
    ):
        return judge_rows(golden, golden.rows)
    return judge_rows(golden, parse_trace(data, secret, golden.plan))


def judge_rows(golden: GoldenTrace, rows: Sequence[tuple[str, ...]]) -> SimOutcome:
    """The outcome of a candidate whose validated trace rows are ``rows``."""
    outcome = compare(golden, rows)
    outcome.metrics.update({"sequential": bool(golden.plan.clock)})
    return outcome


# --- lint and co-simulation in one job --------------------------------------------------------


@dataclass
class LintedOutcome:
    """The lint verdict and, when the lint passed, the co-simulation's (``None`` otherwise).

    ``lint_share`` is the fraction of the time that went to the lint (for per-level timings).
    """

    lint: LintResult
    outcome: SimOutcome | None
    lint_share: float = 1.0


def _mark_text(nonce: str) -> str:
    return f"rtlf-lint-{nonce} "


def _lint_marker(nonce: str) -> re.Pattern:
    # printf 'rtlf-lint-<nonce> <status> '; times  -> shell's own user/sys, then its children's
    return re.compile(rf"rtlf-lint-{nonce} (\d+) \S+ \S+\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s\n")


def _cpu_step(limits: Limits) -> str:
    cpu = cpu_rlimit(limits)
    return f"ulimit -S -t {cpu} && ulimit -H -t {cpu + 1}"


def _lint_then_sim_script(top: str, lint_limits: Limits, sim_limits: Limits, nonce: str, sim: str) -> str:
    return (
        f"({_cpu_step(lint_limits)} && {lint_command(top)}) 1>&2\n"
        "rtlf_lint=$?\n"
        f"printf 'rtlf-lint-{nonce} %d ' $rtlf_lint >&2; times >&2\n"
        '[ "$rtlf_lint" -eq 0 ] || exit "$rtlf_lint"\n'
        f"{_cpu_step(sim_limits)} || exit 125\n" + sim
    )


def _combined_limits(lint_limits: Limits, sim_limits: Limits) -> Limits | None:
    """Limits of a job running both steps, or ``None`` when they differ in more than time."""
    if replace(lint_limits, cpu_s=0, wall_s=0, max_output_bytes=0) != replace(
        sim_limits, cpu_s=0, wall_s=0, max_output_bytes=0
    ):
        return None
    return replace(
        sim_limits,
        cpu_s=float(max(cpu_rlimit(lint_limits), cpu_rlimit(sim_limits))),
        wall_s=lint_limits.wall_s + sim_limits.wall_s,
        max_output_bytes=lint_limits.max_output_bytes + sim_limits.max_output_bytes,
    )


def _split(
    result: JobResult, nonce: str, lint_limits: Limits, sim_limits: Limits
) -> tuple[JobResult, JobResult | None, float]:
    """The lint's view and the simulation's view (``None`` when it did not run) of one job.

    A job stopped before the lint's marker is the lint's, whatever stopped it.
    """
    mark = _lint_marker(nonce).search(result.stderr)
    if mark is None:
        return result, None, 1.0
    status = int(mark.group(1))
    lint_cpu = int(mark.group(2)) * 60 + float(mark.group(3)) + int(mark.group(4)) * 60 + float(mark.group(5))
    lint_wall = result.marks.get(_mark_text(nonce), result.wall_s)
    share = min(1.0, lint_wall / result.wall_s) if result.wall_s > 0 else 1.0
    lint_err = result.stderr[: mark.start()]
    sig = status - 128 if status > 128 else None
    lint_view = JobResult(
        returncode=status,
        stdout="",
        stderr=lint_err,
        outputs={},
        wall_s=lint_wall,
        cpu_s=lint_cpu,
        cpu_limit=sig in (signal.SIGXCPU, signal.SIGKILL),
        wall_timeout=False,
        memory_limit=status != 0 and out_of_memory(lint_err),
        output_truncated=len(lint_err.encode()) > lint_limits.max_output_bytes,
        signal=sig,
    )
    if status != 0:
        return lint_view, None, 1.0
    sim_err = result.stderr[mark.end() :]
    sim_size = len(result.stdout.encode()) + len(sim_err.encode())
    sim_view = replace(
        result,
        stderr=sim_err,
        wall_s=max(0.0, result.wall_s - lint_wall),
        cpu_s=max(0.0, result.cpu_s - lint_cpu),
        memory_limit=result.returncode != 0 and out_of_memory(sim_err),
        output_truncated=result.output_truncated or sim_size > sim_limits.max_output_bytes,
    )
    return lint_view, sim_view, share


def run_lint_and_cosim(
    task: Task,
    code: str,
    settings: CosimSettings,
    *,
    lint_limits: Limits,
    limits: Limits,
    sandbox: bool = True,
) -> LintedOutcome:
    """:func:`rewards.lint.run_lint`, then :func:`run_cosim` when the lint passes: same results, one job.

    One sandbox start instead of two. The job lints first (under the lint's CPU limit, Verilator's
    output kept apart from the simulation's), then prints a marker with a fresh nonce, Verilator's
    exit status and its CPU time; only when Verilator exited 0 does it compile and simulate, under
    the candidate's own limits. A job stopped before the marker is the lint's timeout, after it the
    simulation's; the simulation's result is used only when the lint passes. A lint that passes
    although Verilator exited non-zero (only *Unsupported* messages), a broken golden, and limits
    that differ in more than time fall back to separate jobs.

    Raises:
        ToolNotFound, SandboxError: a tool or the sandbox is missing (infrastructure).
    """
    try:
        golden = golden_trace(task, settings, limits=limits, sandbox=sandbox)
        job_limits = _combined_limits(lint_limits, candidate_limits(limits, golden.cpu_s))
    except (GoldenError, InterfaceError, ToolNotFound, SandboxError):
        job_limits = None  # the lint comes first, as in separate jobs
    if job_limits is None:
        checked = run_lint(code, task.top_module, limits=lint_limits, sandbox=sandbox)
        outcome = run_cosim(task, code, settings, limits=limits, sandbox=sandbox) if checked.ok else None
        return LintedOutcome(checked, outcome, 0.5 if checked.ok else 1.0)
    sim_limits = candidate_limits(limits, golden.cpu_s)
    names_nonce, secret, marker = new_nonce(), new_nonce(), new_nonce()
    harness = harness_source(golden.plan, task.top_module, names_nonce, secret)
    sources = [_HARNESS_FILE, _CANDIDATE_FILE]
    script = _lint_then_sim_script(
        task.top_module,
        lint_limits,
        sim_limits,
        marker,
        sim_script(sources, [f"rtlf_tb_{names_nonce}"], IVERILOG.binary(), VVP.binary()),
    )
    job = Job(
        argv=("/bin/sh", "-c", script),
        files=((_HARNESS_FILE, harness), (_CANDIDATE_FILE, code), (_STIM_FILE, golden.stim_text)),
        limits=job_limits,
        outputs=(f"trace_{secret}.txt",),
        marks=(_mark_text(marker),),
        as_init=True,
        ro_binds=tuple(sorted({*lint_binds(), *IVERILOG.ro_binds(), *VVP.ro_binds()})),
    )
    result = run_job(job, sandbox=sandbox)
    lint_view, sim_view, share = _split(result, marker, lint_limits, sim_limits)
    checked = interpret(lint_view, lint_limits)
    if not checked.ok:
        return LintedOutcome(checked, None)
    if sim_view is None:
        return LintedOutcome(checked, run_cosim(task, code, settings, limits=limits, sandbox=sandbox), 0.5)
    compiled = not (sim_view.returncode == COMPILE_FAILED_RC and not sim_view.timed_out)
    run = SimRun(result=sim_view, compiled=compiled, outputs=sim_view.outputs)
    return LintedOutcome(checked, judge_run(golden, run, secret), share)
