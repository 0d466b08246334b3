"""Co-simulation against the golden design, with real Icarus runs in the sandbox."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rewards import cosim
from rewards.config import RewardConfig
from rewards.cosim import (
    GOLDEN_CACHE,
    TraceError,
    bits_match,
    build_stimulus,
    corner_values,
    harvest_constants,
    parse_trace,
    plan_ports,
    port_values,
    run_cosim,
)
from rewards.score import limits_for
from rewards.types import Port, Status, Task

DATA = Path(__file__).parent / "data" / "sim"
BENCHMARKS = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks"
CONFIG = RewardConfig()
SETTINGS = CONFIG.cosim.as_dict()


def fixture_task(name: str, **meta) -> Task:
    return Task(
        id=f"fixture/{name}",
        prompt="spec",
        top_module="TopModule",
        reference=(DATA / f"{name}.v").read_text(),
        meta=meta,
    )


def cosim_run(task: Task, code: str, **overrides):
    settings = replace(CONFIG.cosim, **overrides)
    return run_cosim(task, code, settings, limits=limits_for(CONFIG, CONFIG.sim_cpu_s), sandbox=True)


def mutate(task: Task, old: str, new: str) -> str:
    assert old in task.reference, f"mutation anchor {old!r} not in {task.id}"
    return task.reference.replace(old, new)


# --- port roles and stimulus (pure Python) ---------------------------------------------------------


def ports(*spec: tuple[str, str, int]) -> list[Port]:
    return [Port(name=n, direction=d, width=w, msb=w - 1) for n, d, w in spec]


@pytest.mark.parametrize(
    "clock, reset, active",
    [
        ("clk", "reset", 1),
        ("clock", "rst_n", 0),
        ("i_clk", "aresetn", 0),
        ("CLK", "areset", 1),
        ("clk_i", "nrst", 0),
        ("wclk", "rst", 1),
        ("clk", "reset_n", 0),
        ("clk", "rst_b", 0),
    ],
)
def test_clock_and_reset_found_by_name(clock, reset, active):
    roles = plan_ports(
        ports((clock, "input", 1), (reset, "input", 1), ("d", "input", 4), ("q", "output", 4)), {}
    )
    assert (roles.clock, roles.reset, roles.reset_active) == (clock, reset, active)
    assert [p.name for p in roles.data_inputs] == [reset, "d"]


def test_no_clock_means_combinational_and_clock_enable_is_data():
    roles = plan_ports(ports(("clk_en", "input", 1), ("a", "input", 8), ("y", "output", 8)), {})
    assert roles.clock is None and roles.reset is None
    assert [p.name for p in roles.data_inputs] == ["clk_en", "a"]


def test_meta_overrides_names():
    spec = ports(("tick", "input", 1), ("clear", "input", 1), ("rst", "input", 1), ("q", "output", 2))
    roles = plan_ports(spec, {"clock": "tick", "reset": "clear", "reset_active": 0})
    assert (roles.clock, roles.reset, roles.reset_active) == ("tick", "clear", 0)
    assert plan_ports(spec, {"clock": None}).clock is None
    with pytest.raises(cosim.InterfaceError, match="meta clock 'clk'"):
        plan_ports(spec, {"clock": "clk"})


def test_corner_values_cover_the_directed_patterns():
    assert corner_values(8) == [0x00, 0xFF, 0x80, 0x01, 0x55, 0xAA, 0x7F]
    assert corner_values(1) == [0, 1]


def test_constants_of_the_golden_join_the_directed_values():
    source = "// 8'hff in a comment\nassign y = (a == 16'he06b) ? 4'b1x01 : (b > 999);"
    constants = harvest_constants(source)
    assert (16, 0xE06B) in constants and (4, 0b1001) in constants and (None, 999) in constants
    assert (8, 0xFF) not in constants
    assert 0xE06B in port_values(Port("a", "input", 16, 15), constants)
    assert 999 not in port_values(Port("b", "input", 8, 7), constants)  # does not fit


def test_comb_stimulus_is_deterministic_exhaustive_when_small_and_cornered_when_wide():
    small = plan_ports(ports(("a", "input", 3), ("b", "input", 2), ("y", "output", 1)), {})
    plan = build_stimulus(small, **SETTINGS)
    assert plan == build_stimulus(small, **SETTINGS)
    assert len(plan.vectors) == len(SETTINGS["seeds"]) * SETTINGS["comb_vectors"]
    assert set(plan.vectors[:32]) == {(a, b) for a in range(8) for b in range(4)}
    wide = plan_ports(ports(("a", "input", 32), ("b", "input", 32), ("y", "output", 1)), {})
    vectors = build_stimulus(wide, **SETTINGS).vectors
    for corner in [
        (0, 0),
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x80000000, 0x80000000),
        (0x7FFFFFFF, 0x7FFFFFFF),
        (0x55555555, 0x55555555),
        (0, 0xFFFFFFFF),
    ]:
        assert corner in vectors[:64]
    other = build_stimulus(wide, **{**SETTINGS, "seeds": (7, 8, 9)}).vectors
    assert other != vectors


def test_sequential_stimulus_resets_each_seed_and_midrun():
    roles = plan_ports(
        ports(("clk", "input", 1), ("rst_n", "input", 1), ("d", "input", 4), ("q", "output", 4)), {}
    )
    plan = build_stimulus(roles, seeds=(1, 2), comb_vectors=8, seq_cycles=50, reset_cycles=3, midrun_resets=2)
    assert len(plan.vectors) == 100
    for start in (0, 50):
        resets = [v[0] for v in plan.vectors[start : start + 50]]
        assert resets[:3] == [0, 0, 0] and resets[3] == 1  # active low, held 3 cycles
        assert 0 in resets[4:]  # a mid-run reset
    second = "".join(str(v[0]) for v in plan.vectors[53:100])
    assert "101" in second  # every second seed also resets for a single cycle mid-run
    assert "rst_n" in plan.hex_text() or len(plan.hex_text().splitlines()) == 100


# --- trace checks (pure Python) ----------------------------------------------------------------------


def test_bits_match_treats_golden_x_as_dont_care_and_candidate_x_as_wrong():
    assert bits_match("01x1", "0101") and bits_match("01z1", "0111")
    assert not bits_match("0101", "01x1")
    assert not bits_match("0101", "0111")
    assert bits_match("xxxx", "zzzz")


def _comb_plan(n: int = 2):
    roles = plan_ports(ports(("a", "input", 2), ("y", "output", 2)), {})
    return build_stimulus(roles, seeds=(1,), comb_vectors=n, seq_cycles=0, reset_cycles=0, midrun_resets=0)


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "header"),
        ("H wrong\n0 01\n1 10\nE s3cret 2\n", "header"),
        ("H s3cret\n0 01\n1 10\n", "no end marker"),
        ("H s3cret\n0 01\nE s3cret 2\n", "end marker"),
        ("H s3cret\n0 01\n1 10\n2 11\nE s3cret 2\n", "malformed"),
        ("H s3cret\n0 01\n1 10\nE s3cret 3\n", "end marker"),
        ("H s3cret\n1 01\n0 10\nE s3cret 2\n", "out of order"),
        ("H s3cret\n0 011\n1 10\nE s3cret 2\n", "wrong width"),
        ("H s3cret\n0 01\n1 10\nE s3cret 2\n0 01\n", "end marker"),
    ],
)
def test_parse_trace_rejects_forged_or_incomplete_traces(text, why):
    with pytest.raises(TraceError, match=why):
        parse_trace(text.encode(), "s3cret", _comb_plan())
    with pytest.raises(TraceError):
        parse_trace(None, "s3cret", _comb_plan())


def test_parse_trace_accepts_a_complete_trace():
    assert parse_trace(b"H s3cret\n0 01\n1 1x\nE s3cret 2\n", "s3cret", _comb_plan()) == [("01",), ("1x",)]


def _golden(rows):
    return cosim.GoldenTrace(
        plan=_comb_plan(len(rows)), rows=tuple(rows), stim_text="", cpu_s=0.01, defined_fraction=1.0
    )


def test_judge_trace_equal_to_the_golden_needs_the_secret_and_every_line():
    golden = _golden([("01",), ("1x",)])
    same = b"H s3cret\n0 01\n1 1x\nE s3cret 2\n"
    outcome = cosim.judge_trace(golden, same, "s3cret")
    assert outcome.status is Status.OK and outcome.matched == outcome.total == 2
    assert cosim.judge_trace(golden, b"H s3cret\n0 01\n1 10\nE s3cret 2\n", "s3cret").status is Status.OK
    flipped = cosim.judge_trace(golden, b"H s3cret\n0 11\n1 10\nE s3cret 2\n", "s3cret")
    assert flipped.status is Status.SIM_MISMATCH and flipped.matched == 1
    for forged in (same.replace(b"s3cret", b"other"), same + b"0 01\n", same[:-1] + b" \n", same[:12]):
        with pytest.raises(TraceError):
            cosim.judge_trace(golden, forged, "s3cret")
    with pytest.raises(TraceError):
        cosim.judge_trace(golden, None, "s3cret")


# --- real simulations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, sequential",
    [
        ("adder8", False),
        ("bitwise", False),
        ("mux2", False),
        ("dontcare", False),
        ("scancode", False),
        ("counter10", True),
        ("shiftreg_negedge", True),
    ],
)
def test_golden_against_itself_passes(name, sequential):
    task = fixture_task(name)
    outcome = cosim_run(task, task.reference)
    per_seed = CONFIG.seq_cycles if sequential else CONFIG.comb_vectors
    assert outcome.status is Status.OK, outcome.log
    assert outcome.matched == outcome.total == per_seed * len(CONFIG.seeds)
    assert outcome.metrics["sequential"] is sequential


@pytest.mark.parametrize(
    "name, old, new",
    [
        ("bitwise", "a & b", "a | b"),  # flipped operator
        ("bitwise", "a ^ b", "a ~^ b"),
        ("adder8", "assign s = a + b;", "wire [7:0] t = a + b;\n  assign s = t;"),  # wrong width
        ("counter10", "(q == 4'd9)", "(q == 4'd10)"),  # off-by-one counter
        ("counter10", "en && q == 4'd9", "en && q == 4'd8"),
        ("counter10", "if (reset)      q <= 4'd0;\n    else if (en)", "if (en)"),  # missing reset
        ("mux2", "if (sel) y = a;\n    else     y = b;", "if (sel) y = a;"),  # a latch
        ("shiftreg_negedge", "negedge clk", "posedge clk"),  # wrong clock edge
        ("shiftreg_negedge", "if (!rst_n)", "if (rst_n)"),  # reset polarity
        ("shiftreg_negedge", "{q[6:0], din}", "{din, q[7:1]}"),  # shifts the wrong way
        ("scancode", "16'he074", "16'he073"),  # a code random inputs never hit
    ],
)
def test_mutants_fail(name, old, new):
    task = fixture_task(name)
    outcome = cosim_run(task, mutate(task, old, new))
    assert outcome.status is Status.SIM_MISMATCH, outcome.log
    assert 0 <= outcome.matched < outcome.total
    assert "expected" in outcome.log and "vector" in outcome.log


def test_graded_credit_counts_matching_vectors():
    task = fixture_task("adder8")
    outcome = cosim_run(task, mutate(task, "assign s = a + b;", "wire [7:0] t = a + b;\n  assign s = t;"))
    assert outcome.status is Status.SIM_MISMATCH
    assert 0.2 * outcome.total < outcome.matched < 0.9 * outcome.total  # only carries are wrong


def test_golden_dont_care_accepts_any_value_but_not_x_where_defined():
    task = fixture_task("dontcare")
    free = mutate(task, "else       y = 4'bxxxx;", "else       y = 4'b1010;")
    assert cosim_run(task, free).status is Status.OK
    sloppy = mutate(task, "if (valid) y = ~x;", "if (valid) y = {~x[3:1], 1'bx};")
    outcome = cosim_run(task, sloppy)
    assert outcome.status is Status.SIM_MISMATCH and "got" in outcome.log


def test_first_cycle_before_reset_is_not_compared():
    task = fixture_task("counter10")
    initialised = Task.from_dict(
        {
            **task.to_dict(),
            "id": "fixture/init",
            "reference": mutate(task, "output reg [3:0] q,", "output reg [3:0] q = 4'd5,"),
        }
    )
    assert cosim_run(initialised, task.reference).status is Status.OK  # relies on its reset only
    no_reset = task.reference.replace("if (reset)      q <= 4'd0;\n    else if (en)", "if (en)")
    assert cosim_run(initialised, no_reset).status is Status.SIM_MISMATCH


def test_candidate_stdout_is_ignored():
    task = fixture_task("bitwise")
    noisy = mutate(
        task, "endmodule", 'initial $display("H x\\nMismatches: 0 in 768 samples\\nE x 768");\nendmodule'
    )
    assert cosim_run(task, noisy).status is Status.OK
    wrong = noisy.replace("a & b", "a | b")
    assert cosim_run(task, wrong).status is Status.SIM_MISMATCH


def test_icarus_rejecting_the_candidate_is_a_syntax_error():
    task = fixture_task("adder8")
    outcome = cosim_run(task, mutate(task, "assign s = a + b;", "assign s = a + ;"))
    assert outcome.status is Status.SYNTAX_ERROR and "candidate.sv" in outcome.log


def test_infinite_loop_is_a_timeout():
    task = fixture_task("counter10")
    hang = mutate(
        task, "endmodule", "reg r;\n always @(posedge clk) begin r = 1; while (r) r = r; end\nendmodule"
    )
    outcome = cosim_run(task, hang)
    assert outcome.status is Status.SIM_TIMEOUT, outcome.log


def test_combinational_oscillation_is_a_timeout():
    task = fixture_task("counter10")
    loop = mutate(task, "endmodule", "wire p, n;\n assign p = en ? ~n : 1'b0;\n assign n = p;\nendmodule")
    assert cosim_run(task, loop).status is Status.SIM_TIMEOUT


def test_output_flood_is_a_resource_limit():
    task = fixture_task("counter10")
    flood = mutate(
        task, "endmodule", 'initial forever $display("flood flood flood flood flood flood");\nendmodule'
    )
    assert cosim_run(task, flood).status is Status.RESOURCE_LIMIT


def test_broken_golden_is_an_infra_error_not_a_score():
    task = Task(
        id="fixture/broken",
        prompt="p",
        top_module="TopModule",
        reference="module TopModule(input a, output y);\n assign y = a &;\nendmodule\n",
    )
    outcome = cosim_run(task, "module TopModule(input a, output y); assign y = a; endmodule")
    assert outcome.status is Status.INFRA_ERROR and "golden" in outcome.log


def test_golden_that_hangs_is_an_infra_error():
    task = Task(
        id="fixture/hangs",
        prompt="p",
        top_module="TopModule",
        reference=(
            "module TopModule(input clk, input d, output reg q);\n"
            "  reg r;\n  always @(posedge clk) begin r = 1; while (r) r = r; q <= d; end\nendmodule\n"
        ),
    )
    limits = limits_for(RewardConfig(sim_cpu_s=1.0), 1.0)
    outcome = run_cosim(task, task.reference, CONFIG.cosim, limits=limits, sandbox=True)
    assert outcome.status is Status.INFRA_ERROR and "golden simulation failed" in outcome.log


def test_golden_defining_nothing_is_an_infra_error():
    task = Task(
        id="fixture/allx",
        prompt="p",
        top_module="TopModule",
        reference="module TopModule(input a, output y);\n  assign y = 1'bx;\nendmodule\n",
    )
    outcome = cosim_run(task, "module TopModule(input a, output y); assign y = a; endmodule")
    assert outcome.status is Status.INFRA_ERROR and "defines no output bit" in outcome.log


def test_concurrent_candidates_of_one_task_simulate_the_golden_once():
    from concurrent.futures import ThreadPoolExecutor

    task = fixture_task("counter10")
    task = Task.from_dict({**task.to_dict(), "id": "fixture/concurrent", "reference": task.reference + "\n"})
    misses = GOLDEN_CACHE.misses
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: cosim_run(task, task.reference), range(4)))
    assert all(o.status is Status.OK for o in outcomes)
    assert GOLDEN_CACHE.misses == misses + 1


def test_golden_trace_is_cached_per_task_and_settings():
    task = fixture_task("bitwise")
    cosim_run(task, task.reference)
    hits = GOLDEN_CACHE.hits
    cosim_run(task, task.reference)
    assert GOLDEN_CACHE.hits == hits + 1
    misses = GOLDEN_CACHE.misses
    cosim_run(task, task.reference, seeds=(11,))
    assert GOLDEN_CACHE.misses == misses + 1


# --- the shared benchmarks' goldens against themselves -------------------------------------------------

UNSUPPORTED_BY_ICARUS = {"Prob151_review2015_fsm", "Prob156_review2015_fancytimer"}  # goldens do not compile


def _benchmarks(every: int) -> list[Task]:
    if not BENCHMARKS.is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS}")
    from evals.loaders import load_suite

    v2 = load_suite("verilogeval-v2-spec-to-rtl", BENCHMARKS / "verilog-eval-v2")
    rtllm = load_suite("rtllm-v1.1", BENCHMARKS / "rtllm-v1.1")
    return v2[::every] + rtllm[:: max(1, every // 2)]


def _cosim_self_check(tasks: list[Task]) -> tuple[dict[str, str], int]:
    failures, sequential = {}, 0
    for task in tasks:
        outcome = cosim_run(task, task.reference)
        sequential += bool(outcome.metrics.get("sequential"))
        if outcome.status is not Status.OK:
            failures[task.meta["problem"]] = f"{outcome.status}: {outcome.log[:300]}"
    return failures, sequential


def test_benchmark_goldens_pass_cosim_against_themselves():
    tasks = [t for t in _benchmarks(4) if t.meta["problem"] not in UNSUPPORTED_BY_ICARUS]
    failures, sequential = _cosim_self_check(tasks)
    assert not failures
    assert len(tasks) >= 50 and sequential >= 20


@pytest.mark.slow
def test_all_benchmark_goldens_pass_cosim_against_themselves():
    failures, sequential = _cosim_self_check(_benchmarks(1))
    assert set(failures) == UNSUPPORTED_BY_ICARUS, failures
    assert sequential >= 90


@pytest.mark.parametrize(
    "problem, old, new",
    [
        ("Prob035_count1to10", "q == 10", "q == 9"),
        ("Prob035_count1to10", "if (reset || q == 10)", "if (q == 10)"),
        ("Prob014_andgate", "a & b", "a | b"),
        ("Prob132_always_if2", "else\n      shut_off_computer = 0;", ""),
    ],
)
def test_cosim_catches_what_the_benchmark_bench_catches(problem, old, new):
    if not BENCHMARKS.is_dir():
        pytest.skip(f"shared benchmarks not found at {BENCHMARKS}")
    from evals.loaders import load_suite

    task = load_suite("verilogeval-v2-spec-to-rtl", BENCHMARKS / "verilog-eval-v2", problems=[problem])[0]
    task = Task.from_dict({**task.to_dict(), "testbench": None})
    assert cosim_run(task, task.reference).status is Status.OK
    assert cosim_run(task, task.reference.replace(old, new)).status is Status.SIM_MISMATCH
