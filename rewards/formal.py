"""The formal level: prove a design that passed co-simulation equal to the golden, or refute it.

Co-simulation samples (a few seeds of a few hundred cycles); a design can survive the sample and
still be wrong on one value of a wide input, after a long input sequence, or after a second reset.
This level closes that gap for designs that already passed co-simulation.

Model (one sandboxed Yosys job, :func:`prepare`). Golden and candidate are read separately,
elaborated (``proc``, ``flatten``, ``memory``), renamed apart and instantiated side by side in a
generated wrapper (the *miter*) that drives both from the same inputs and raises ``rtlf_trigger``
when an output bit differs where the golden's bit is 0 or 1 (golden x/z bits are don't-care, as in
co-simulation; a candidate x/z bit against a golden 0/1 bit is a difference). For sequential designs
(a clock found as co-simulation finds it) the wrapper holds the reset active in the first cycle and
leaves it a free input afterwards, so resets at any later cycle (a second reset included) are
covered; registers start undefined unless an initialiser says otherwise; asynchronous resets become
synchronous-equivalent logic (``async2sync``). Outputs are compared from the cycle after that first
reset on, one step per clock cycle, as the co-simulation harness samples them.

Not modelled (``unknown`` with the reason): latches, flip-flops clocked by anything but the task's
clock, designs whose flip-flops use both clock edges, and whatever Yosys cannot read.

Engines, within one CPU budget (``cpu_s``):

1. Yosys ``sat`` with x-modelling (``-enable_undef``, registers x at start): for combinational
   designs a complete SAT proof; for sequential ones ``-tempinduct`` up to ``depth`` steps (a base
   case failure is a counterexample, a successful induction step is a proof).
2. If that is undecided: ABC ``pdr`` (IC3) on the miter written as AIGER, two-valued: x constants
   and uninitialised registers are free values (``setundef -anyseq``, ``write_aiger -zinit``), so
   a proof there covers every way x could resolve and is a proof of the original.
3. Sequential designs still undecided get a *soak* simulation (``soak_cycles`` cycles from reset
   per pattern, inputs held at all-ones and at all-zeros, other resets inactive): counters that go
   wrong only when they wrap, or after thousands of enabled cycles, are out of reach of the SAT
   engines in any budget that fits a training step (measured: ABC ``pdr`` and ``bmc3`` reach a few
   hundred frames of a 16-bit counter miter in 40 s), and a long run with the enable held reaches
   them in well under a second.

Every counterexample is replayed in Icarus through the co-simulation harness
(:mod:`rewards.cosim`) against the golden before it counts: confirmed means the design fails
(``SIM_MISMATCH``; the log has the input trace and the first differing output and cycle); not
confirmed means ``unknown`` and a warning is logged (a formal/simulation disagreement: x semantics,
initial values).

Verdicts (``FormalResult.verdict``): ``proved``, ``bounded:K`` (no difference within K cycles from
reset and none in the soak runs, no proof), ``counterexample`` (confirmed), ``unknown: <reason>``.
A timeout or an unsupported construct is ``unknown``, never a failure of the candidate; a tool that
crashes is ``infra`` (the caller reports ``INFRA_ERROR``); a missing tool raises
:class:`rewards.tools.ToolNotFound`, a sandbox that cannot start :class:`rewards.sandbox.SandboxError`.
Results are kept per (golden, candidate, settings) content in an in-process LRU cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rewards.cosim import (
    GoldenTrace,
    PortRoles,
    StimulusPlan,
    TraceError,
    compare,
    describe_inputs,
    golden_ports,
    harness_source,
    parse_trace,
    plan_ports,
)
from rewards.interface import InterfaceError
from rewards.sandbox import Job, JobResult, Limits, run_job
from rewards.sim import LruCache, SimOutcome, failure_status, new_nonce, simulate
from rewards.tools import YOSYS, Tool
from rewards.types import Status, Task

log = logging.getLogger(__name__)

YOSYS_ABC = Tool("yosys-abc", "YOSYS_ABC", "yosys-abc", "install yosys (apt-get install yosys)", ("-h",))

FORMAL_VERSION = 1
"""Bump when the model or the engines change, so cached verdicts are recomputed."""

RESULT_CACHE = LruCache(size=1024)
SOAK_CACHE = LruCache(size=256)

_GOLD_FILE = "gold.sv"
_GATE_FILE = "gate.sv"
_WRAP_FILE = "miter.sv"
_MODEL_FILE = "miter.il"
_STAGE = "rtlf-formal-stage "
_MAX_TRACE_SHOWN = 12


@dataclass(frozen=True)
class FormalResult:
    """The formal level's outcome for one candidate.

    ``verdict`` is ``proved``, ``bounded``, ``counterexample``, ``unknown`` or ``infra``;
    ``depth`` the bound reached (``bounded``) or the failing cycle (``counterexample``);
    ``engine`` what decided it; ``reason`` why it is unknown (or what crashed); ``log`` the replayed
    difference of a confirmed counterexample; ``replay`` that replay's outcome.
    """

    verdict: str
    depth: int = 0
    engine: str = ""
    reason: str = ""
    log: str = ""
    cpu_s: float = 0.0
    replay: SimOutcome | None = None

    @property
    def label(self) -> str:
        """What ``metrics["formal"]`` holds: ``proved``, ``bounded:K``, ``counterexample``, ``unknown: …``."""
        if self.verdict == "bounded":
            return f"bounded:{self.depth}"
        if self.verdict in ("unknown", "infra"):
            return f"unknown: {self.reason}"
        return self.verdict

    def metrics(self) -> dict:
        out = {"formal": self.label, "formal_engine": self.engine, "formal_cpu_s": round(self.cpu_s, 3)}
        if self.verdict == "counterexample":
            out["formal_cex_cycle"] = self.depth
        return out


# --- the model ---------------------------------------------------------------------------------


def _decl(width: int) -> str:
    return f"[{width - 1}:0] " if width > 1 else ""


def miter_source(roles: PortRoles, gold: str, gate: str, name: str) -> str:
    """The wrapper instantiating modules ``gold`` and ``gate`` on shared inputs; see the module doc."""
    ports, body = [], []
    if roles.clock:
        ports.append("input rtlf_clk")
    for port in roles.data_inputs:
        ports.append(f"input {_decl(port.width)}i_{port.name}")
    ports.append("output rtlf_trigger")
    conns = [f".{p.name}(rtlf_clk)" for p in roles.clock_inputs]
    reset_wire = {}
    if roles.clock:
        body += ["  reg rtlf_first = 1'b1;", "  always @(posedge rtlf_clk) rtlf_first <= 1'b0;"]
        if roles.reset:
            reset = next(p for p in roles.data_inputs if p.name == roles.reset)
            active = "1'b1" if roles.reset_active else "1'b0"
            body.append(f"  wire rtlf_reset = rtlf_first ? {active} : i_{reset.name};")
            reset_wire[reset.name] = "rtlf_reset"
    conns += [f".{p.name}({reset_wire.get(p.name, 'i_' + p.name)})" for p in roles.data_inputs]
    diffs = []
    for port in roles.outputs:
        body.append(f"  wire {_decl(port.width)}g_{port.name}, c_{port.name};")
        body.append(f"  wire {_decl(port.width)}d_{port.name};")
        body.append(
            f"  generate for (genvar k = 0; k < {port.width}; k = k + 1) begin : cmp_{port.name}\n"
            f"    assign d_{port.name}[k] = (g_{port.name}[k] === 1'b0 && c_{port.name}[k] !== 1'b0)"
            f" || (g_{port.name}[k] === 1'b1 && c_{port.name}[k] !== 1'b1);\n"
            "  end endgenerate"
        )
        diffs.append(f"(|d_{port.name})")
    gold_conns = conns + [f".{p.name}(g_{p.name})" for p in roles.outputs]
    gate_conns = conns + [f".{p.name}(c_{p.name})" for p in roles.outputs]
    body.append(f"  {gold} rtlf_g ({', '.join(gold_conns)});")
    body.append(f"  {gate} rtlf_c ({', '.join(gate_conns)});")
    armed = "!rtlf_first && " if roles.clock else ""
    body.append(f"  assign rtlf_trigger = {armed}({' || '.join(diffs)});")
    return f"module {name} ({', '.join(ports)});\n" + "\n".join(body) + "\nendmodule\n"


def prepare_script(top: str, gold: str, gate: str, miter: str, sequential: bool) -> str:
    """Yosys script: read both designs apart, build the miter, check it is modelled, write RTLIL."""

    def design(source: str, new_name: str) -> list[str]:
        return [
            f"read_verilog -sv {source}",
            f"hierarchy -check -top {top}",
            "proc",
            "flatten",
            f"hierarchy -top {top}",
            "memory",
            "opt_clean",
            f"rename {top} {new_name}",
        ]

    lines = [f"log -stderr {_STAGE}golden", *design(_GOLD_FILE, gold), "design -stash rtlf_gold"]
    lines += [f"log -stderr {_STAGE}candidate", *design(_GATE_FILE, gate)]
    lines += [
        f"design -copy-from rtlf_gold -as {gold} {gold}",
        f"log -stderr {_STAGE}miter",
        f"read_verilog -sv {_WRAP_FILE}",
        f"hierarchy -check -top {miter}",
        "proc",
        "flatten",
        "opt_clean",
        f"log -stderr {_STAGE}latch",
        "select -assert-none t:$dlatch t:$adlatch t:$dlatchsr t:$sr",
    ]
    if sequential:
        lines += [
            f"log -stderr {_STAGE}clock",
            # flip-flops whose clock pin is driven by anything but the wrapper's clock
            "select -assert-none r:CLK_POLARITY %ci1:+[CLK] r:CLK_POLARITY %d w:rtlf_clk %d",
            "async2sync",
            "tee -q -o negedge.txt select -count r:CLK_POLARITY=0",
            "tee -q -o posedge.txt select -count r:CLK_POLARITY=1",
            "select -clear",
        ]
    lines += [f"log -stderr {_STAGE}write", f"write_rtlil {_MODEL_FILE}", ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class Model:
    """The miter as RTLIL text, or why there is none (``problem``; ``infra`` when a tool broke)."""

    rtlil: str = ""
    problem: str = ""
    infra: bool = False
    cpu_s: float = 0.0


def _stage_of(text: str) -> str:
    stages = re.findall(rf"^{_STAGE}(\w+)$", text, re.M)
    return stages[-1] if stages else "start"


def _first_error(result: JobResult) -> str:
    for line in (result.stdout + "\n" + result.stderr).splitlines():
        if line.startswith("ERROR"):
            return line.replace("/job/", "").strip()[:300]
    return result.tail(300)


def _crashed(result: JobResult) -> bool:
    """A tool that died of a signal the limits do not explain (segfault, abort): the tool's fault."""
    return failure_status(result) is None and result.signal in (
        signal.SIGSEGV,
        signal.SIGABRT,
        signal.SIGBUS,
        signal.SIGILL,
    )


def _count(text: bytes | None) -> int:
    match = re.search(rb"(\d+) objects", text or b"")
    return int(match.group(1)) if match else 0


def prepare(task: Task, code: str, roles: PortRoles, limits: Limits, sandbox: bool) -> Model:
    """Run :func:`prepare_script` in the sandbox; see :class:`Model`."""
    nonce = new_nonce(6)
    gold, gate, miter = f"rtlf_gold_{nonce}", f"rtlf_gate_{nonce}", f"rtlf_miter_{nonce}"
    wrapper = miter_source(roles, gold, gate, miter).replace(miter, "rtlf_miter")
    script = prepare_script(task.top_module, gold, gate, "rtlf_miter", bool(roles.clock))
    job = Job(
        argv=(YOSYS.binary(), "-Q", "-T", "-p", "script prepare.ys"),
        files=(
            (_GOLD_FILE, task.reference),
            (_GATE_FILE, code),
            (_WRAP_FILE, wrapper),
            ("prepare.ys", script),
        ),
        limits=limits,
        outputs=(_MODEL_FILE, "negedge.txt", "posedge.txt"),
        ro_binds=YOSYS.ro_binds(),
    )
    result = run_job(job, sandbox=sandbox)
    cpu = result.cpu_s
    if result.timed_out or failure_status(result) is not None:
        return Model(problem=f"building the miter hit a limit ({limits.cpu_s:g} s CPU)", cpu_s=cpu)
    if _crashed(result):
        return Model(problem=f"yosys crashed building the miter: {result.tail(300)}", infra=True, cpu_s=cpu)
    if result.returncode != 0 or _MODEL_FILE not in result.outputs:
        stage, error = _stage_of(result.stderr), _first_error(result)
        what = {
            "golden": "the golden design has no formal model",
            "candidate": "unsupported construct in the design",
            "latch": "latches are not modelled",
            "clock": "flip-flops clocked by something other than the task's clock are not modelled",
        }.get(stage, "building the miter failed")
        return Model(problem=f"{what}: {error}", infra=stage in ("miter", "write"), cpu_s=cpu)
    negedge, posedge = _count(result.outputs.get("negedge.txt")), _count(result.outputs.get("posedge.txt"))
    # The wrapper's own first-cycle flag is one posedge flip-flop.
    if negedge and posedge > 1:
        return Model(problem="flip-flops on both clock edges are not modelled", cpu_s=cpu)
    return Model(rtlil=result.outputs[_MODEL_FILE].decode("utf-8", "replace"), cpu_s=cpu)


# --- engines -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineRun:
    """What one engine said: ``proved``, ``cex`` (with ``trace``: input values per step), ``undecided``."""

    outcome: str
    trace: tuple[dict[str, int], ...] = ()
    depth: int = 0
    reason: str = ""
    cpu_s: float = 0.0
    crashed: bool = False


def _engine_limits(limits: Limits, cpu_s: float) -> Limits:
    """``limits`` with an engine's CPU budget and a wall backstop of four times it (load is not a timeout)."""
    return replace(limits, cpu_s=cpu_s, wall_s=cpu_s * 4 + 2)


_SAT_ROW = re.compile(r"^\s*(\d+\s+)?\\(\S+)\s+\S+\s+\S+\s+([01xz]+)\s*$")


def parse_sat_trace(text: str) -> tuple[dict[str, int], ...]:
    """Input values per time step from ``sat -show-inputs`` (steps from 1; names without ``i_``)."""
    steps: dict[int, dict[str, int]] = {}
    for line in text.splitlines():
        match = _SAT_ROW.match(line)
        if match and match.group(2).startswith("i_"):
            bits = match.group(3).replace("x", "0").replace("z", "0")
            step = int(match.group(1)) if match.group(1) else 1
            steps.setdefault(step, {})[match.group(2)[2:]] = int(bits, 2)
    return tuple(steps[k] for k in sorted(steps))


def run_sat(
    model: str, sequential: bool, depth: int, cpu_s: float, limits: Limits, sandbox: bool
) -> EngineRun:
    """Yosys ``sat`` on the miter (x-modelled): proof, counterexample, or undecided."""
    timeout = max(1, int(cpu_s))
    if sequential:
        command = (
            f"sat -tempinduct -prove rtlf_trigger 0 -enable_undef -set-init-undef -set-def-inputs "
            f"-maxsteps {depth} -timeout {timeout} -show-inputs rtlf_miter"
        )
    else:
        command = f"sat -prove rtlf_trigger 0 -enable_undef -set-def-inputs -timeout {timeout} -show-inputs rtlf_miter"
    job = Job(
        argv=(YOSYS.binary(), "-Q", "-T", "-p", f"read_rtlil {_MODEL_FILE}; {command}"),
        files=((_MODEL_FILE, model),),
        limits=_engine_limits(limits, cpu_s + 2),
        ro_binds=YOSYS.ro_binds(),
    )
    result = run_job(job, sandbox=sandbox)
    text = result.stdout
    if result.timed_out or failure_status(result) is not None or "TIMEOUT" in text:
        return EngineRun("undecided", reason=f"sat ran out of time ({timeout} s)", cpu_s=result.cpu_s)
    if _crashed(result) or result.returncode != 0:
        return EngineRun(
            "undecided",
            reason=f"sat failed: {_first_error(result)}",
            cpu_s=result.cpu_s,
            crashed=_crashed(result),
        )
    if re.search(r"Induction step proven: SUCCESS|QED|Q\.E\.D\.|SUCCESS!", text) and "FAIL!" not in text:
        return EngineRun("proved", depth=depth, cpu_s=result.cpu_s)
    if "FAIL!" in text:
        trace = parse_sat_trace(text)
        return EngineRun("cex", trace=trace, depth=len(trace), cpu_s=result.cpu_s)
    return EngineRun("undecided", depth=depth, reason=f"no proof within {depth} steps", cpu_s=result.cpu_s)


def _aiger_script() -> str:
    return "; ".join(
        [
            f"read_rtlil {_MODEL_FILE}",
            "setundef -undriven -anyseq",
            "setundef -anyseq",
            "opt -fast",
            "dffunmap",
            "techmap",
            "opt_clean",
            "abc -g AND",
            "aigmap",
            "opt_clean",
            "write_aiger -zinit -map miter.aim miter.aig",
        ]
    )


def parse_aiger_cex(cex: str, aig_header: bytes, aim: str) -> tuple[dict[str, int], ...]:
    """Input values per frame from ABC's ``write_cex`` of a ``write_aiger -map`` model."""
    fields = aig_header.split(b"\n", 1)[0].split()
    n_inputs, n_latches = int(fields[2]), int(fields[3])
    bits: dict[int, tuple[str, int]] = {}
    for line in aim.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "input" and parts[3].startswith("i_"):
            bits[int(parts[1])] = (parts[3][2:], int(parts[2]))
    # ABC writes the initial latch values, then each frame's inputs, as one run of digits (or lines).
    digits = "".join(ch for line in cex.splitlines() for ch in line.split("#")[0] if ch in "01x")
    if n_inputs == 0:
        return ()
    if len(digits) >= n_latches and (len(digits) - n_latches) % n_inputs == 0:
        digits = digits[n_latches:]
    rows = [digits[k : k + n_inputs] for k in range(0, len(digits) - n_inputs + 1, n_inputs)]
    trace = []
    for row in rows:
        values: dict[str, int] = {}
        for index, (name, bit) in bits.items():
            if index < len(row) and row[index] == "1":
                values[name] = values.get(name, 0) | (1 << bit)
            else:
                values.setdefault(name, 0)
        trace.append(values)
    return tuple(trace)


def run_pdr(model: str, sequential: bool, cpu_s: float, limits: Limits, sandbox: bool) -> EngineRun:
    """ABC ``pdr`` (or ``iprove`` for a combinational miter) on the two-valued AIGER miter."""
    timeout = max(1, int(cpu_s))
    engine = f"pdr -T {timeout}" if sequential else "iprove"
    abc = f"read_aiger miter.aig; {engine}; write_cex cex.txt"
    script = f"{YOSYS.binary()} -q -p '{_aiger_script()}' && {YOSYS_ABC.binary()} -c '{abc}'"
    job = Job(
        argv=("/bin/sh", "-c", script),
        files=((_MODEL_FILE, model),),
        limits=_engine_limits(limits, cpu_s + 3),
        outputs=("cex.txt", "miter.aig", "miter.aim"),
        ro_binds=tuple(sorted({*YOSYS.ro_binds(), *YOSYS_ABC.ro_binds()})),
    )
    result = run_job(job, sandbox=sandbox)
    text = result.stdout + result.stderr
    if result.timed_out or failure_status(result) is not None:
        return EngineRun("undecided", reason=f"pdr ran out of time ({timeout} s)", cpu_s=result.cpu_s)
    if _crashed(result) or result.returncode != 0:
        return EngineRun(
            "undecided",
            reason=f"pdr failed: {_first_error(result)}",
            cpu_s=result.cpu_s,
            crashed=_crashed(result),
        )
    if re.search(r"Property proved|Networks are equivalent", text):
        return EngineRun("proved", cpu_s=result.cpu_s)
    asserted = re.search(r"was asserted in frame (\d+)|NOT EQUIVALENT", text)
    if asserted and "cex.txt" in result.outputs and "miter.aig" in result.outputs:
        trace = parse_aiger_cex(
            result.outputs["cex.txt"].decode("ascii", "replace"),
            result.outputs["miter.aig"],
            result.outputs.get("miter.aim", b"").decode("ascii", "replace"),
        )
        return EngineRun("cex", trace=trace, depth=len(trace), cpu_s=result.cpu_s)
    return EngineRun("undecided", reason="pdr undecided within its time limit", cpu_s=result.cpu_s)


# --- replay in Icarus --------------------------------------------------------------------------


def _plan(roles: PortRoles, trace: Sequence[dict[str, int]], first_reset: bool) -> StimulusPlan:
    vectors = []
    for step, values in enumerate(trace):
        row = []
        for port in roles.data_inputs:
            value = values.get(port.name, 0) & ((1 << port.width) - 1)
            if first_reset and step == 0 and port.name == roles.reset:
                value = roles.reset_active
            row.append(value)
        vectors.append(tuple(row))
    return StimulusPlan(roles=roles, vectors=tuple(vectors), seed_starts=((0, 0),))


def _golden_run(task: Task, plan: StimulusPlan, limits: Limits, sandbox: bool) -> GoldenTrace | str:
    """The golden's trace under ``plan``, or why there is none."""
    names, secret = new_nonce(), new_nonce()
    stim = plan.hex_text()
    run = simulate(
        [("harness.sv", harness_source(plan, task.top_module, names, secret)), ("golden.sv", task.reference)],
        None,
        [f"rtlf_tb_{names}"],
        limits=limits,
        sandbox=sandbox,
        data_files=[("stim.hex", stim)],
        outputs=[f"trace_{secret}.txt"],
    )
    try:
        rows = parse_trace(run.outputs.get(f"trace_{secret}.txt"), secret, plan)
    except TraceError as exc:
        return f"golden replay failed: {exc}"
    return GoldenTrace(
        plan=plan, rows=tuple(rows), stim_text=stim, cpu_s=run.result.cpu_s, defined_fraction=1.0
    )


def replay(
    task: Task,
    code: str,
    plan: StimulusPlan,
    limits: Limits,
    sandbox: bool,
    golden: GoldenTrace | None = None,
) -> SimOutcome:
    """Simulate golden and candidate under ``plan`` in Icarus and compare as co-simulation does.

    ``SIM_MISMATCH`` confirms a difference; ``OK`` refutes it; ``INFRA_ERROR`` means the replay
    itself could not run (the golden did not simulate, or the candidate hit a limit).
    """
    if golden is None:
        found = _golden_run(task, plan, limits, sandbox)
        if isinstance(found, str):
            return SimOutcome(Status.INFRA_ERROR, log=found)
        golden = found
    names, secret = new_nonce(), new_nonce()
    run = simulate(
        [("harness.sv", harness_source(plan, task.top_module, names, secret))],
        ("candidate.sv", code),
        [f"rtlf_tb_{names}"],
        limits=limits,
        sandbox=sandbox,
        data_files=[("stim.hex", golden.stim_text)],
        outputs=[f"trace_{secret}.txt"],
    )
    try:
        rows = parse_trace(run.outputs.get(f"trace_{secret}.txt"), secret, plan)
    except TraceError as exc:
        return SimOutcome(Status.INFRA_ERROR, log=f"candidate replay failed: {exc}")
    return compare(golden, rows)


def _trace_text(plan: StimulusPlan, upto: int) -> str:
    shown = [f"cycle {k}: {describe_inputs(plan, k)}" for k in range(min(upto + 1, len(plan.vectors)))]
    if len(shown) > _MAX_TRACE_SHOWN:
        shown = shown[: _MAX_TRACE_SHOWN // 2] + ["..."] + shown[-_MAX_TRACE_SHOWN // 2 :]
    return "; ".join(shown)


def _confirm(
    task: Task, code: str, roles: PortRoles, run: EngineRun, engine: str, limits: Limits, sandbox: bool
) -> FormalResult:
    """Replay ``run``'s counterexample; a confirmed one is a ``counterexample`` result."""
    trace = list(run.trace)
    if roles.clock:
        trace.append(dict(trace[-1]) if trace else {})  # one more cycle shows the post-edge sample too
    plan = _plan(roles, trace, first_reset=bool(roles.clock))
    outcome = replay(task, code, plan, limits, sandbox)
    if outcome.status is Status.SIM_MISMATCH:
        where = outcome.log.split("first: ", 1)[-1]
        text = (
            f"formal counterexample ({engine}, {len(run.trace)} step(s)) confirmed in simulation; "
            f"first difference: {where}. Input trace: {_trace_text(plan, len(run.trace))}"
        )
        return FormalResult("counterexample", depth=len(run.trace), engine=engine, log=text, replay=outcome)
    why = "replay did not run" if outcome.status is Status.INFRA_ERROR else "simulation agrees"
    log.warning(
        "formal/simulation disagreement on %s (%s counterexample of %d steps, %s): %s",
        task.id,
        engine,
        len(run.trace),
        why,
        outcome.log[:300],
    )
    return FormalResult(
        "unknown", engine=engine, reason=f"{engine} counterexample not confirmed in simulation ({why})"
    )


# --- soak simulation ---------------------------------------------------------------------------


def soak_plan(roles: PortRoles, cycles: int, reset_cycles: int) -> StimulusPlan:
    """From reset, every data input held at all-ones for ``cycles``, then (after a reset) at all-zeros.

    The all-zeros run is capped at 4096 cycles: what it exercises (free-running state) the all-ones
    run exercises too, apart from designs whose enables are active-low.
    """
    vectors, starts = [], []
    for pattern, (fill, length) in enumerate(((1, cycles), (0, min(cycles, 4096)))):
        starts.append((pattern, len(vectors)))
        for cycle in range(length):
            row = []
            for port in roles.data_inputs:
                if port.name == roles.reset:
                    value = roles.reset_active if cycle < reset_cycles else 1 - roles.reset_active
                elif port.width == 1 and re.search(r"(rst|reset|clear|clr)", port.name, re.I):
                    low = port.name.lower().startswith("n") or port.name.lower().endswith(("n", "_b", "_l"))
                    active = cycle < reset_cycles
                    value = (0 if low else 1) if active else (1 if low else 0)
                else:
                    value = ((1 << port.width) - 1) if fill else 0
                row.append(value)
            vectors.append(tuple(row))
    return StimulusPlan(roles=roles, vectors=tuple(vectors), seed_starts=tuple(starts))


def _soak(
    task: Task, code: str, roles: PortRoles, cycles: int, reset_cycles: int, limits: Limits, sandbox: bool
) -> SimOutcome:
    plan = soak_plan(roles, cycles, reset_cycles)
    key = hashlib.sha256(
        json.dumps(
            [FORMAL_VERSION, task.reference, task.top_module, cycles, reset_cycles, repr(roles)]
        ).encode()
    ).hexdigest()
    golden = SOAK_CACHE.get_or_compute(key, lambda: _golden_run(task, plan, limits, sandbox))
    if isinstance(golden, str):
        return SimOutcome(Status.INFRA_ERROR, log=golden)
    return replay(task, code, plan, limits, sandbox, golden=golden)


# --- the level ---------------------------------------------------------------------------------


def check_equivalence(
    task: Task,
    code: str,
    *,
    cpu_s: float,
    depth: int,
    soak_cycles: int,
    reset_cycles: int,
    limits: Limits,
    sandbox: bool = True,
) -> FormalResult:
    """Prove ``code`` equivalent to ``task.reference`` or refute it (see the module docstring).

    Args:
        cpu_s: CPU seconds for the proof engines together (model building and replays apart).
        depth: steps of the bounded (``sat -tempinduct``) search from reset.
        soak_cycles: cycles per soak pattern for undecided sequential designs (0: no soak).
        reset_cycles: cycles the soak runs hold reset at their start.
        limits: sandbox limits for model building and simulations.

    Raises:
        ToolNotFound, SandboxError: Yosys, Icarus or the sandbox is missing (infrastructure).
    """
    if not task.reference or not task.reference.strip():
        return FormalResult("unknown", reason="no reference")
    key = hashlib.sha256(
        json.dumps(
            [
                FORMAL_VERSION,
                task.reference,
                task.top_module,
                task.meta.get("clock"),
                task.meta.get("reset"),
                task.meta.get("reset_active"),
                code,
                cpu_s,
                depth,
                soak_cycles,
                reset_cycles,
            ]
        ).encode()
    ).hexdigest()
    return RESULT_CACHE.get_or_compute(
        key, lambda: _check(task, code, cpu_s, depth, soak_cycles, reset_cycles, limits, sandbox)
    )


def _check(
    task: Task,
    code: str,
    cpu_s: float,
    depth: int,
    soak_cycles: int,
    reset_cycles: int,
    limits: Limits,
    sandbox: bool,
) -> FormalResult:
    try:
        roles = plan_ports(golden_ports(task), task.meta)
    except InterfaceError as exc:
        return FormalResult("unknown", reason=f"golden ports unusable: {exc}")
    sequential = bool(roles.clock)
    model = prepare(task, code, roles, limits, sandbox)
    spent = model.cpu_s
    if model.problem:
        return FormalResult("infra" if model.infra else "unknown", reason=model.problem, cpu_s=spent)
    sat = run_sat(model.rtlil, sequential, depth, max(1.0, cpu_s * 0.4), limits, sandbox)
    spent += sat.cpu_s
    if sat.crashed:
        return FormalResult("infra", engine="sat", reason=sat.reason, cpu_s=spent)
    if sat.outcome == "proved":
        return FormalResult("proved", engine="sat", cpu_s=spent)
    if sat.outcome == "cex":
        confirmed = _confirm(task, code, roles, sat, "sat", limits, sandbox)
        if confirmed.verdict == "counterexample":
            return replace(confirmed, cpu_s=spent)
        sat = replace(sat, reason=confirmed.reason)  # x semantics differ: let the two-valued engine try
    pdr = run_pdr(model.rtlil, sequential, max(1.0, cpu_s - sat.cpu_s), limits, sandbox)
    spent += pdr.cpu_s
    if pdr.crashed:
        return FormalResult("infra", engine="pdr", reason=pdr.reason, cpu_s=spent)
    if pdr.outcome == "proved":
        return FormalResult("proved", engine="pdr", cpu_s=spent)
    if pdr.outcome == "cex":
        confirmed = _confirm(task, code, roles, pdr, "pdr", limits, sandbox)
        if confirmed.verdict == "counterexample":
            return replace(confirmed, cpu_s=spent)
    if sequential and soak_cycles > 0:
        soaked = _soak(task, code, roles, soak_cycles, reset_cycles, limits, sandbox)
        if soaked.status is Status.SIM_MISMATCH:
            where = soaked.log.split("first: ", 1)[-1]
            text = f"soak simulation ({soak_cycles} cycles per pattern) differs from the golden: {where}"
            return FormalResult("counterexample", engine="soak", log=text, replay=soaked, cpu_s=spent)
    if sequential and sat.reason.startswith("no proof"):
        return FormalResult("bounded", depth=depth, engine="sat", reason=pdr.reason, cpu_s=spent)
    return FormalResult("unknown", engine="pdr", reason=f"{sat.reason}; {pdr.reason}", cpu_s=spent)
