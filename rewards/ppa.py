"""The PPA level: synthesise a passing candidate and its golden, time and power both, compare.

Flow (each tool call is one sandboxed job, see :mod:`rewards.sandbox`):

* **Synthesis** (:func:`synthesize`): Yosys ``read_verilog -sv``, ``synth -flatten -noabc -top``,
  ``dfflibmap -liberty``, ``abc -liberty``, ``opt_clean``, ``stat -liberty``. ABC runs once, mapping
  straight onto the liberty: ``synth``'s own ``abc -fast`` (to generic gates) would be redone by
  it. Over 40 embedded-corpus goldens the two flows give the same geometric-mean area and delay
  (within 0.1% and 0.3%; single designs within ±5% and ±16%), and the single pass takes 29% less
  time (ABC is a process of its own, about 30 ms to start). Area is the
  "Chip area" number of the ``stat`` report (liberty area units), cells its cell count; the
  mapped netlist is written into the job directory and read back. A design whose mapped netlist
  still holds cells that are not standard cells of the liberty (latches: ``$_DLATCH_P_`` has no
  mapping here, and the OSU latch cell has area 0; ``(* blackbox *)`` or ``(* keep_hierarchy *)``
  submodules) has no honest area, so it counts as a synthesis failure.
* **Timing and power** (:func:`time_and_power`): OpenSTA on that netlist. A sequential design gets
  a clock of :data:`NOMINAL_PERIOD_NS` on its clock port; a combinational one a virtual clock with
  zero input/output delays. ``delay_ns`` = period - worst max-delay slack, i.e. the critical
  register-to-register (or input-to-output) path including setup; ``power_mw`` is
  ``report_power``'s total at OpenSTA's default switching activity at that clock.

Level. With ``cost`` the chosen metric (``area``, ``delay``, ``area*delay`` or
``area*delay*power``, each factor floored at a tiny positive value) and ``gain = golden_cost /
candidate_cost``::

    level = clip(0.5 + 0.5 * log(gain) / log(max_gain), 0, 1)

so parity earns 0.5, ``max_gain`` times better earns 1.0, ``max_gain`` times worse earns 0, and
equal factors of improvement earn equal steps.

Failures. A candidate that does not synthesise (unsynthesisable constructs that simulate fine,
unmapped latches, a synthesis timeout) gets level 0 and a note: that is the candidate's outcome.
A missing tool or liberty raises :class:`rewards.tools.ToolNotFound` and a sandbox that cannot
start raises :class:`rewards.sandbox.SandboxError` (the caller reports ``INFRA_ERROR``). A golden
design that cannot be synthesised or timed is a broken task, not a broken toolchain: the level is
0 for every candidate of that task (so it adds nothing to any advantage), the note names the
golden's error, and the candidate's own figures are still reported.

The golden's figures are computed once per task content (reference, top, clock, liberty) and kept
in an in-process LRU cache shared by every completion of that task.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import re
from dataclasses import dataclass, replace

from rewards.cosim import plan_ports
from rewards.interface import InterfaceError, parse_ports
from rewards.sandbox import Job, JobResult, Limits, run_job
from rewards.sim import LruCache
from rewards.tools import STA, YOSYS, liberty_path
from rewards.types import Task

log = logging.getLogger(__name__)

NOMINAL_PERIOD_NS = 10.0
"""Clock period for timing and power; long enough that no design here fails it, so slack = period - path."""

METRICS = ("area", "delay", "area_delay", "area_delay_power")

# Floors keep ratios finite for designs with no logic (pure wiring has zero delay and area).
_AREA_FLOOR = 1.0
_DELAY_FLOOR_NS = 0.01
_POWER_FLOOR_MW = 1e-6

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")
_CHIP_AREA = re.compile(
    r"^\s*Chip area for (?:top )?module '\\?(?P<module>[^']+)':\s*(?P<area>[0-9.eE+-]+)\s*$"
)
_CELLS = re.compile(r"^\s*Number of cells:\s*(?P<cells>\d+)\s*$")
_CELL_TYPE = re.compile(r"^\s+(?P<type>\S+)\s+(?P<count>\d+)\s*$")
_POWER_TOTAL = re.compile(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(?P<total>[0-9.eE+-]+)\s")
_LIB_CELL = re.compile(r"^\s*cell\s*\(\s*\"?([^\s\")]+)\"?\s*\)", re.M)
_RESULT_LINE = re.compile(r"^(?P<key>slack|period)\s+(?P<value>\S+)\s*$")

GOLDEN_CACHE = LruCache(size=512)


@dataclass(frozen=True)
class SynthResult:
    """One Yosys run. ``ok`` is False when synthesis failed; ``error`` then says why."""

    ok: bool
    area: float = 0.0
    cells: int = 0
    netlist: str = ""
    error: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    timed_out: bool = False


@dataclass(frozen=True)
class StaResult:
    """One OpenSTA run on a mapped netlist."""

    ok: bool
    delay_ns: float = 0.0
    power_mw: float = 0.0
    clock: str | None = None
    error: str = ""
    cpu_s: float = 0.0
    wall_s: float = 0.0
    timed_out: bool = False


@dataclass(frozen=True)
class PpaFigures:
    """Synthesis + timing of one design."""

    synth: SynthResult
    sta: StaResult | None

    @property
    def ok(self) -> bool:
        return self.synth.ok and self.sta is not None and self.sta.ok

    @property
    def error(self) -> str:
        if not self.synth.ok:
            return self.synth.error
        return self.sta.error if self.sta is not None else "not timed"


def _liberty_binds(liberty: str) -> tuple[str, ...]:
    return () if liberty.startswith("/usr/") else (liberty,)


def _tool_failure(result: JobResult, tool: str, limits: Limits) -> str:
    if result.cpu_limit:
        return f"{tool} ran out of CPU time ({limits.cpu_s:g} s)"
    if result.wall_timeout:
        return f"{tool} ran out of wall time ({limits.wall_s:g} s)"
    if result.output_truncated:
        return f"{tool} printed more than {limits.max_output_bytes} bytes"
    if result.memory_limit:
        return f"{tool} ran out of memory ({limits.memory_mb} MB)"
    errors = [
        line.strip()
        for line in (result.stderr + "\n" + result.stdout).splitlines()
        if line.lstrip().startswith("ERROR")
    ]
    detail = errors[0] if errors else result.tail(300)
    return f"{tool} failed (exit {result.returncode}): {detail.replace('/job/', '')}"


def synth_script(top: str, liberty: str) -> str:
    """The Yosys script for ``top`` in ``design.sv``; writes ``stat.txt`` and ``netlist.v``."""
    return "\n".join(
        [
            "read_verilog -sv design.sv",
            # A black-boxed module keeps its body in simulation but would cost nothing here.
            "select -assert-none =A:blackbox =A:whitebox =A:lib_whitebox =A:keep_hierarchy",
            f"synth -flatten -noabc -top {top}",  # ABC once, below, onto the liberty
            f"dfflibmap -liberty {liberty}",
            f"abc -liberty {liberty}",
            "opt_clean",
            f"tee -q -o stat.txt stat -liberty {liberty}",
            "write_verilog -noattr -noexpr netlist.v",
            "",
        ]
    )


@functools.lru_cache(maxsize=8)
def _liberty_cells(liberty: str, mtime_ns: int) -> frozenset[str]:
    with open(liberty, encoding="utf-8", errors="replace") as handle:
        return frozenset(_LIB_CELL.findall(handle.read()))


def liberty_cells(liberty: str) -> frozenset[str]:
    """Names of the cells a liberty file defines."""
    return _liberty_cells(liberty, os.stat(liberty).st_mtime_ns)


def parse_stat(text: str, top: str) -> tuple[float | None, int, list[str]]:
    """(chip area of ``top`` or None, cell count, cell types listed) from a Yosys ``stat`` report."""
    area = None
    cells = 0
    cell_types = []
    for line in text.splitlines():
        if match := _CHIP_AREA.match(line):
            if match["module"] == top:
                area = float(match["area"])
        elif match := _CELLS.match(line):
            cells = int(match["cells"])
        elif match := _CELL_TYPE.match(line):
            cell_types.append(match["type"])
    return area, cells, cell_types


def synthesize(code: str, top: str, *, liberty: str, limits: Limits, sandbox: bool = True) -> SynthResult:
    """Synthesise module ``top`` of ``code`` onto the cells of ``liberty`` with Yosys.

    Returns a :class:`SynthResult`; a design that does not synthesise is ``ok=False`` with the
    reason. Raises :class:`ToolNotFound` (Yosys missing) or :class:`SandboxError`.
    """
    if not _IDENT.match(top):
        return SynthResult(ok=False, error=f"top module name {top!r} is not a plain Verilog identifier")
    yosys = YOSYS.binary()
    job = Job(
        argv=(yosys, "-q", "-s", "synth.ys"),
        files=(("design.sv", code), ("synth.ys", synth_script(top, liberty))),
        limits=limits,
        outputs=("stat.txt", "netlist.v"),
        ro_binds=YOSYS.ro_binds() + _liberty_binds(liberty),
    )
    result = run_job(job, sandbox=sandbox)
    times = {"cpu_s": result.cpu_s, "wall_s": result.wall_s}
    stat = result.outputs.get("stat.txt", b"").decode("utf-8", "replace")
    netlist = result.outputs.get("netlist.v", b"").decode("utf-8", "replace")
    if result.returncode != 0 or not stat or not netlist:
        return SynthResult(
            ok=False, error=_tool_failure(result, "yosys", limits), timed_out=result.timed_out, **times
        )
    area, cells, cell_types = parse_stat(stat, top)
    foreign = sorted(set(cell_types) - liberty_cells(liberty))
    if foreign:
        return SynthResult(
            ok=False,
            error=f"yosys left cells that are not standard cells of the liberty ({foreign}): "
            "latches, black boxes and kept hierarchy have no honest area; use flip-flops and "
            "plain modules",
            **times,
        )
    if area is None and cells == 0:
        area = 0.0  # stat prints no chip area for a design without cells (pure wiring, constants)
    if area is None:
        return SynthResult(ok=False, error=f"yosys stat report has no chip area for module {top!r}", **times)
    return SynthResult(ok=True, area=area, cells=cells, netlist=netlist, **times)


def sta_script(top: str, clock_port: str | None, liberty: str, period_ns: float = NOMINAL_PERIOD_NS) -> str:
    """The OpenSTA script: constraints, critical path report, power; writes ``result.txt``."""
    if clock_port:
        clock = [
            f"create_clock -name rtlf_clk -period {period_ns} [get_ports {{{clock_port}}}]",
            f"set rtlf_inputs [delete_from_list [all_inputs] [get_ports {{{clock_port}}}]]",
        ]
    else:
        clock = [f"create_clock -name rtlf_clk -period {period_ns}", "set rtlf_inputs [all_inputs]"]
    return "\n".join(
        [
            f"read_liberty {liberty}",
            "read_verilog netlist.v",
            f"link_design {top}",
            *clock,
            "if {[llength $rtlf_inputs] > 0} { set_input_delay 0 -clock rtlf_clk $rtlf_inputs }",
            "if {[llength [all_outputs]] > 0} { set_output_delay 0 -clock rtlf_clk [all_outputs] }",
            "report_checks -path_delay max -format full -digits 4",
            "report_power -digits 6",
            "set rtlf_out [open result.txt w]",
            f'puts $rtlf_out "period {period_ns}"',
            'puts $rtlf_out "slack [worst_slack -max]"',
            "close $rtlf_out",
            "",
        ]
    )


def parse_sta(result_text: str, report: str) -> tuple[float | None, float | None]:
    """(delay in ns, total power in mW) from ``result.txt`` and the ``report_power`` output."""
    values = {}
    for line in result_text.splitlines():
        if match := _RESULT_LINE.match(line):
            try:
                values[match["key"]] = float(match["value"])
            except ValueError:
                pass
    delay = None
    if "period" in values and "slack" in values:
        slack = values["slack"]
        # No constrained path (outputs tied to constants) reports a huge slack: no delay at all.
        delay = 0.0 if not math.isfinite(slack) or slack >= values["period"] else values["period"] - slack
    power = None
    for line in report.splitlines():
        if match := _POWER_TOTAL.match(line):
            power = float(match["total"]) * 1e3  # OpenSTA reports watts
            break
    return delay, power


def time_and_power(
    netlist: str, top: str, clock_port: str | None, *, liberty: str, limits: Limits, sandbox: bool = True
) -> StaResult:
    """Critical-path delay and total power of a mapped ``netlist`` with OpenSTA.

    ``clock_port`` None means combinational (virtual clock). Raises :class:`ToolNotFound` or
    :class:`SandboxError`; a netlist OpenSTA cannot time gives ``ok=False``.
    """
    if clock_port is not None and not _IDENT.match(clock_port):
        clock_port = None  # an escaped name cannot be quoted safely in Tcl; time it as combinational
    sta = STA.binary()
    job = Job(
        argv=(sta, "-no_init", "-no_splash", "-exit", "sta.tcl"),
        files=(("netlist.v", netlist), ("sta.tcl", sta_script(top, clock_port, liberty))),
        limits=limits,
        outputs=("result.txt",),
        ro_binds=STA.ro_binds() + _liberty_binds(liberty),
    )
    result = run_job(job, sandbox=sandbox)
    times = {"cpu_s": result.cpu_s, "wall_s": result.wall_s, "clock": clock_port}
    if result.timed_out or result.output_truncated or result.memory_limit:
        return StaResult(
            ok=False, error=_tool_failure(result, "sta", limits), timed_out=result.timed_out, **times
        )
    delay, power = parse_sta(result.outputs.get("result.txt", b"").decode("utf-8", "replace"), result.stdout)
    if delay is None or power is None:
        errors = [
            line for line in (result.stdout + "\n" + result.stderr).splitlines() if line.startswith("Error")
        ]
        why = errors[0] if errors else result.tail(300)
        return StaResult(
            ok=False,
            error=f"sta gave no {'delay' if delay is None else 'power'} (exit {result.returncode}): {why}",
            **times,
        )
    return StaResult(ok=True, delay_ns=delay, power_mw=power, **times)


def clock_port_of(task: Task) -> str | None:
    """The task's clock input: ``meta['clock']`` when set (None = combinational), else found by name."""
    if "clock" in task.meta:
        return task.meta["clock"] or None
    try:
        return plan_ports(parse_ports(task.reference, task.top_module), task.meta).clock
    except InterfaceError as exc:
        log.warning("ports of golden %s unreadable (%s); timing it as combinational", task.id, exc)
        return None


def measure(
    code: str,
    top: str,
    clock_port: str | None,
    *,
    liberty: str,
    synth_limits: Limits,
    sta_limits: Limits,
    sandbox: bool,
) -> PpaFigures:
    """Synthesis, then timing and power when synthesis worked."""
    synth = synthesize(code, top, liberty=liberty, limits=synth_limits, sandbox=sandbox)
    if not synth.ok:
        return PpaFigures(synth=synth, sta=None)
    if synth.cells == 0:
        # Pure wiring or constants: no cell delays or switching power, and OpenSTA has no network to
        # link (it errors out); the cost floors in cost() keep the ratio finite.
        return PpaFigures(synth=synth, sta=StaResult(ok=True, delay_ns=0.0, power_mw=0.0))
    sta = time_and_power(synth.netlist, top, clock_port, liberty=liberty, limits=sta_limits, sandbox=sandbox)
    return PpaFigures(synth=synth, sta=sta)


def _golden_key(task: Task, clock_port: str | None, liberty: str) -> str:
    try:
        stamp = os.stat(liberty).st_mtime_ns
    except OSError:
        stamp = 0
    blob = "\0".join(
        [task.reference, task.top_module, str(clock_port), liberty, str(stamp), YOSYS.binary(), STA.binary()]
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class _Transient(Exception):
    """A golden measurement that ran out of time: returned, but not cached (load may have caused it)."""

    def __init__(self, figures: PpaFigures) -> None:
        super().__init__(figures.error)
        self.figures = figures


def golden_figures(
    task: Task,
    clock_port: str | None,
    *,
    liberty: str,
    synth_limits: Limits,
    sta_limits: Limits,
    sandbox: bool,
) -> PpaFigures:
    """The golden's figures, cached in-process (a failure caused by a time limit is not cached)."""

    def compute() -> PpaFigures:
        figures = measure(
            task.reference,
            task.top_module,
            clock_port,
            liberty=liberty,
            synth_limits=synth_limits,
            sta_limits=sta_limits,
            sandbox=sandbox,
        )
        if figures.synth.timed_out or (figures.sta is not None and figures.sta.timed_out):
            raise _Transient(figures)
        return figures

    try:
        return GOLDEN_CACHE.get_or_compute(_golden_key(task, clock_port, liberty), compute)
    except _Transient as exc:
        return exc.figures


def cost(metric: str, area: float, delay_ns: float, power_mw: float) -> float:
    """The figure of merit ``metric`` (lower is better), each factor floored above zero."""
    a, d, p = max(area, _AREA_FLOOR), max(delay_ns, _DELAY_FLOOR_NS), max(power_mw, _POWER_FLOOR_MW)
    table = {"area": a, "delay": d, "area_delay": a * d, "area_delay_power": a * d * p}
    if metric not in table:
        raise ValueError(f"ppa metric {metric!r} is unknown; valid: {', '.join(METRICS)}")
    return table[metric]


def level_from_ratio(ratio: float, max_gain: float) -> float:
    """Level for ``ratio`` = candidate cost / golden cost: 0.5 at 1, 1 at 1/max_gain, 0 at max_gain."""
    if max_gain <= 1.0:
        raise ValueError(f"max_gain={max_gain} must be > 1, e.g. 2.0")
    if ratio <= 0 or not math.isfinite(ratio):
        return 0.0
    level = 0.5 - 0.5 * math.log(ratio) / math.log(max_gain)
    return min(1.0, max(0.0, level))


def _candidate_synth_limits(
    limits: Limits, golden: SynthResult, factor: float = 20.0, floor_s: float = 5.0
) -> Limits:
    # A candidate equivalent to the golden synthesises in about the golden's time; a much slower
    # one (a huge unrolled memory) should not hold a core for the whole configured limit.
    if not golden.ok or golden.cpu_s <= 0:
        return limits
    return replace(limits, cpu_s=min(limits.cpu_s, max(floor_s, factor * golden.cpu_s)))


def score_ppa(
    task: Task,
    code: str,
    *,
    metric: str,
    max_gain: float,
    synth_limits: Limits,
    sta_limits: Limits,
    sandbox: bool = True,
) -> tuple[float, dict, str]:
    """PPA level of a functionally correct ``code`` against ``task``'s golden (see module docstring).

    Returns ``(level in [0, 1], metrics, note)``; ``note`` is empty when both designs were measured.
    Raises :class:`ToolNotFound` (Yosys, OpenSTA or the liberty missing) or :class:`SandboxError`.
    """
    if metric not in METRICS:
        raise ValueError(f"ppa metric {metric!r} is unknown; valid: {', '.join(METRICS)}")
    liberty = liberty_path()
    clock_port = clock_port_of(task)
    golden = golden_figures(
        task, clock_port, liberty=liberty, synth_limits=synth_limits, sta_limits=sta_limits, sandbox=sandbox
    )
    cand = measure(
        code,
        task.top_module,
        clock_port,
        liberty=liberty,
        synth_limits=_candidate_synth_limits(synth_limits, golden.synth),
        sta_limits=sta_limits,
        sandbox=sandbox,
    )
    metrics: dict = {}
    if golden.ok:
        metrics.update(
            golden_area=golden.synth.area,
            golden_delay_ns=golden.sta.delay_ns,
            golden_power_mw=golden.sta.power_mw,
        )
    if cand.synth.ok:
        metrics.update(area=cand.synth.area, cells=cand.synth.cells)
    if cand.ok:
        metrics.update(delay_ns=cand.sta.delay_ns, power_mw=cand.sta.power_mw)
    if not cand.ok:
        return 0.0, metrics, f"candidate PPA failed: {cand.error}"
    if not golden.ok:
        log.warning("golden PPA of task %s failed: %s", task.id, golden.error)
        return (
            0.0,
            metrics,
            f"golden PPA unavailable (task {task.id!r}): {golden.error}. Fix the task's reference.",
        )
    ratio = cost(metric, cand.synth.area, cand.sta.delay_ns, cand.sta.power_mw) / cost(
        metric, golden.synth.area, golden.sta.delay_ns, golden.sta.power_mw
    )
    metrics["ppa_ratio"] = round(ratio, 6)
    return level_from_ratio(ratio, max_gain), metrics, ""
