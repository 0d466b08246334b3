"""A fault of the scoring host is never a candidate's verdict.

Each fault is injected into the reward server's own private mount namespace (``unshare -m``, then
``nsenter`` + bind mounts), so the host is never touched: a ``/dev/null`` that lost its write bit
(mode 0755, what ``iverilog -o /dev/null`` as root leaves), a read-only ``/dev/null``, a full and a
read-only ``/tmp`` (the job root), an Icarus and a Yosys that exit with an environment error, and a
liberty that disappears. While a fault lasts every result is the right verdict or ``INFRA_ERROR``
with reward null, and ``/healthz`` is 503; once it is gone ``/healthz`` is 200 and verdicts are exact.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from rewards.config import RewardConfig
from rewards.health import HEALTH, environment_message
from rewards.score import score
from rewards.tasks import load_task_index
from rewards.tools import LIBERTY_DEFAULT
from rewards.types import Status, Task

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "grpo_tasks.jsonl"
COUNTER = (REPO / "tests" / "data" / "sim" / "counter10.v").read_text()
COUNTER_TASK = {
    "id": "seq/counter10",
    "prompt": "A decade counter with enable and synchronous reset.",
    "top_module": "TopModule",
    "reference": COUNTER,
    "meta": {"clock": "clk", "reset": "reset"},
}
TASKS: dict[str, Task] = {**load_task_index([TINY]), "seq/counter10": Task.from_dict(COUNTER_TASK)}
CONFIG = {"seeds": [1], "comb_vectors": 32, "seq_cycles": 40, "midrun_resets": 1}
AND2, OR2 = TASKS["tiny/and2"].reference, TASKS["tiny/or2"].reference

# (task id, completion, verdict on a healthy host); a "// round" comment makes each round's items new
# (the result cache would answer repeats without running a tool).
ITEMS = [
    ("tiny/and2", AND2, Status.OK),
    ("tiny/or2", OR2.replace("|", "&"), Status.SIM_MISMATCH),
    ("tiny/and2", AND2.replace(";", "", 1), Status.SYNTAX_ERROR),
    ("seq/counter10", COUNTER, Status.OK),
    ("seq/counter10", COUNTER.replace("4'd9", "4'd10"), Status.SIM_MISMATCH),
]
FAKE_TOOL = "#!/bin/sh\necho \"{name}: cannot open output file 'out': No space left on device\" >&2\nexit 1\n"
LIBERTY_DIR = os.path.dirname(LIBERTY_DEFAULT)

# name -> (shell run in the server's mount namespace to inject the fault, shell to remove it);
# {d} is a scratch directory.
FAULTS = {
    "/dev/null mode 0755": (
        "mknod {d}/null c 1 3 && chmod 0755 {d}/null && mount --bind {d}/null /dev/null",
        "umount /dev/null",
    ),
    "/dev/null read-only": (
        ": > {d}/null.ro && chmod 0444 {d}/null.ro && mount --bind -o ro {d}/null.ro /dev/null",
        "umount /dev/null",
    ),
    "/tmp full": (
        "mount -t tmpfs -o size=512k tmpfs /tmp && (dd if=/dev/zero of=/tmp/fill bs=64k status=none || true)",
        "umount /tmp",
    ),
    "/tmp read-only": ("mount --bind /tmp /tmp && mount -o remount,bind,ro /tmp", "umount /tmp"),
    "iverilog exits with an environment error": (
        "mount --bind {d}/fake-iverilog /usr/bin/iverilog",
        "umount /usr/bin/iverilog",
    ),
    "yosys exits with an environment error": (
        "mount --bind {d}/fake-yosys /usr/bin/yosys",
        "umount /usr/bin/yosys",
    ),
    "liberty disappears": (f"mount -t tmpfs tmpfs {LIBERTY_DIR}", f"umount {LIBERTY_DIR}"),
}

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not (shutil.which("unshare") and shutil.which("nsenter")),
    reason="fault injection needs root, unshare and nsenter (a private mount namespace)",
)


@pytest.fixture(scope="module")
def isolated_server(tmp_path_factory):
    """A reward server alone in a private mount namespace: (url, pid, scratch dir)."""
    root = tmp_path_factory.mktemp("faults")
    tasks = root / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in TASKS.values()))
    config = root / "reward.json"
    config.write_text(json.dumps(RewardConfig(**CONFIG).to_dict()))
    for name in ("iverilog", "yosys"):
        fake = root / f"fake-{name}"
        fake.write_text(FAKE_TOOL.format(name=name))
        fake.chmod(0o755)
    log_path = root / "server.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    argv = ["unshare", "-m", "--propagation", "private", sys.executable, "-m", "rewards.server"]
    argv += [
        "--port",
        "0",
        "--cache",
        "none",
        "--workers",
        "2",
        "--tasks",
        str(tasks),
        "--config",
        str(config),
    ]
    with log_path.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        url = _wait_url(process, log_path)
        yield url, process.pid, root
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_url(process: subprocess.Popen, log_path: Path) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log_path.read_text()
        for line in log_path.read_text().splitlines():
            if " listening on " in line:
                return line.split(" listening on ")[1].split()[0]
        time.sleep(0.2)
    raise AssertionError(f"server did not start: {log_path.read_text()[-2000:]}")


def _in_namespace(pid: int, script: str) -> None:
    proc = subprocess.run(
        ["nsenter", "-t", str(pid), "-m", "--", "sh", "-c", script], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{script}: {proc.stderr}"


def _score_round(url: str, tag: str) -> list[dict]:
    items = [
        {"task_id": t, "completion": c.replace("endmodule", f"// round {tag}\nendmodule")}
        for t, c, _ in ITEMS
    ]
    response = httpx.post(url + "/score", json={"items": items}, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def _healthz(url: str, want: int, within_s: float = 15.0) -> dict:
    deadline = time.monotonic() + within_s
    while True:
        response = httpx.get(url + "/healthz", timeout=60)
        if response.status_code == want or time.monotonic() > deadline:
            assert response.status_code == want, response.text
            return response.json()
        time.sleep(0.5)


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=60).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


@needs_root
def test_faults_give_infra_error_and_unhealthy_never_a_wrong_verdict(isolated_server):
    url, pid, scratch = isolated_server
    assert _healthz(url, 200)["environment"]["healthy"]
    assert [r["status"] for r in _score_round(url, "healthy")] == [s.value for _, _, s in ITEMS]
    for index, (name, (inject, remove)) in enumerate(FAULTS.items()):
        faults_before = _metric(url, "rtlforge_environment_faults_total")
        _in_namespace(pid, inject.format(d=scratch))
        try:
            results = _score_round(url, f"fault{index}")
            for result, (task_id, _, verdict) in zip(results, ITEMS, strict=True):
                assert result["status"] in (verdict.value, "INFRA_ERROR"), (name, task_id, result)
                if result["status"] == "INFRA_ERROR":
                    assert result["reward"] is None, (name, result)
            assert any(r["status"] == "INFRA_ERROR" for r in results), (name, results)
            health = _healthz(url, 503)
            assert health["status"] == "unhealthy" and health["environment"]["reason"], (name, health)
            assert _metric(url, "rtlforge_healthy") == 0.0
            assert _metric(url, "rtlforge_environment_faults_total") > faults_before, name
            print(
                f"\n{name}: {[r['status'] for r in results]}\n  healthz: {health['environment']['reason'][:240]}"
            )
        finally:
            _in_namespace(pid, remove)
        assert _healthz(url, 200)["environment"]["healthy"], name
    after = _score_round(url, "after")
    assert [r["status"] for r in after] == [s.value for _, _, s in ITEMS], after


ENVIRONMENT_MESSAGES = {
    "%Error: Cannot write /dev/null": "system path",
    "ERROR: Can't open output file `/dev/null' for writing: Permission denied": "system path",
    "iverilog: sim.vvp: No space left on device": "disk is full",
    "touch: cannot touch 'x': Read-only file system": "read-only",
    "/usr/share/qflow/tech/osu018/osu018_stdcells.lib: Permission denied": "permission denied outside",
    "Out of memory: Killed process 4242 (vvp)": "OOM killer",
    "/usr/bin/yosys: error while loading shared libraries: libffi.so.8: cannot open shared object file": "tool",
    "bwrap: Can't mount tmpfs on /newroot/tmp: No such device": "sandbox",
}
DESIGN_MESSAGES = [
    "%Error: candidate.sv:3:1: syntax error, unexpected endmodule",
    "candidate.sv:4: error: Unable to bind wire/reg/memory `q' in `TopModule'",
    # Verilator quotes the source: a comment there is the candidate's text, not a tool's message.
    "%Error: candidate.sv:2:20: syntax error\n    2 |   assign y = a & b // Cannot write /dev/null\n      |                    ^",
    "/job/candidate.sv: Permission denied",
]


@pytest.mark.parametrize("text", sorted(ENVIRONMENT_MESSAGES))
def test_messages_about_the_host_are_recognised(text):
    found = environment_message(text)
    assert found is not None and ENVIRONMENT_MESSAGES[text].lower() in found.lower(), found


@pytest.mark.parametrize("text", DESIGN_MESSAGES)
def test_messages_about_the_design_are_not(text):
    assert environment_message(text) is None


def test_candidate_text_that_imitates_a_host_fault_keeps_its_verdict():
    """A syntax error next to a comment that reads like a host fault is still the candidate's."""
    code = AND2.replace(
        "assign y = a & b;", "assign y = a & b // No space left on device: cannot write /dev/null"
    )
    result = score(TASKS["tiny/and2"], code, RewardConfig(**CONFIG, ppa_enabled=False))
    assert result.status is Status.SYNTAX_ERROR and result.reward is not None, result
    assert HEALTH.healthy, HEALTH.reason


@needs_root
def test_evals_report_a_golden_failing_here_as_infra(tmp_path):
    """Under an Icarus that cannot write its output, golden samples are INFRA, counted, never failed."""
    bench = REPO.parent / "shared" / "benchmarks" / "verilog-eval-v2" / "dataset_spec-to-rtl"
    problems = ["Prob004_vector2", "Prob005_notgate"]
    records = []
    for problem in problems:
        golden = (bench / f"{problem}_ref.sv").read_text().replace("RefModule", "TopModule")
        records += [
            {"task_id": problem, "completion": golden},
            {"task_id": problem, "completion": golden.replace("endmodule", "wire broken = ;\nendmodule")},
        ]
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    fake = tmp_path / "fake-iverilog"
    fake.write_text(FAKE_TOOL.format(name="iverilog"))
    fake.chmod(0o755)
    out = tmp_path / "out"
    evals = [sys.executable, "-m", "evals", "run", "--suite", "verilogeval-v2-spec-to-rtl"]
    evals += ["--data", str(REPO.parent / "shared" / "benchmarks"), "--samples", str(samples)]
    evals += ["--problems", ",".join(problems), "--no-ppa", "--out", str(out)]
    script = f'mount --bind {fake} /usr/bin/iverilog && exec "$@"'
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *evals],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    graded = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [g["status"] for g in graded] == ["INFRA_ERROR", "SYNTAX_ERROR"] * 2, graded
    assert all(g["reward"] is None for g in graded if g["status"] == "INFRA_ERROR")
    suite = json.loads((out / "summary.json").read_text())["suites"]["verilogeval-v2-spec-to-rtl"]
    assert suite["infra_errors"] == 2 and suite["status_counts"]["INFRA_ERROR"] == 2, suite
