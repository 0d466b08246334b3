"""Real Slurm: a one-node cluster started here runs jobs submitted through `python -m launch slurm|sweep`.

The fixture starts munge, slurmctld and slurmd (Debian's slurm-wlm 22.05, installed by `make setup`) from
a config in a temporary directory: one node with the machine's real memory, its own ports, state and logs.
Every job goes through the same path users take: `python -m launch ...` → sbatch → `launch/train.slurm`
→ reward server as an `srun` step on the node, trainer as another step (tiny policy, CPU, no vLLM).
The cluster and everything it started are torn down by the fixture's finalizer, also on failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "tests" / "data" / "grpo_tasks.jsonl"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "squeue", "scancel")
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED"}

pytestmark = pytest.mark.slow

if os.geteuid() != 0:
    pytest.skip("slurmd must run as root to start jobs (CI runs as root)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def processes_matching(job_id: str, needles: list[str]) -> list[str]:
    """Command lines of live processes of ``job_id`` (by environment) or naming any of ``needles``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = (proc / "status").read_text()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if "State:\tZ" in status:
            continue
        if f"SLURM_JOB_ID={job_id}".encode() in environ or any(n in cmdline for n in needles):
            found.append(f"{proc.name}: {cmdline.strip()}")
    return found


@dataclass
class Cluster:
    """A running one-node cluster: its directory, node name and the environment that points at it."""

    root: Path
    node: str
    cpus: int
    env: dict[str, str]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)

    def launch(self, *args: str) -> str:
        """``python -m launch ARGS`` from the repository; returns the submitted job id."""
        proc = subprocess.run(
            [sys.executable, "-m", "launch", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        match = re.search(r"Submitted batch job (\d+)", proc.stdout)
        assert proc.returncode == 0 and match, proc.stdout + proc.stderr
        return match.group(1)

    def jobs(self, job_id: str) -> list[dict[str, str]]:
        """``scontrol show job`` records of ``job_id`` (one per array task)."""
        out = self.run("scontrol", "-o", "show", "job", job_id).stdout
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if line.strip()]

    def wait(self, job_id: str, timeout: float = 600) -> list[dict[str, str]]:
        """Wait until every task of ``job_id`` has ended and left the queue (no COMPLETING)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.jobs(job_id)
            queued = self.run("squeue", "-h", "-j", job_id).stdout.strip()
            if records and all(r.get("JobState") in FINAL for r in records) and not queued:
                return records
            time.sleep(2)
        raise AssertionError(f"job {job_id} still running after {timeout:.0f} s: {self.jobs(job_id)}")

    def wait_for(self, path: Path, job_id: str, timeout: float = 300) -> None:
        """Wait until ``path`` exists while ``job_id`` runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_size:
                return
            if all(r.get("JobState") in FINAL for r in self.jobs(job_id)):
                raise AssertionError(f"job {job_id} ended before {path} appeared: {self.jobs(job_id)}")
            time.sleep(1)
        raise AssertionError(f"{path} did not appear within {timeout:.0f} s")

    def recipe(self, name: str, **overrides) -> Path:
        """The tiny GRPO recipe made small (2 steps, short SFT warm start, no pass@1 eval)."""
        recipe = yaml.safe_load((REPO / "configs" / "grpo" / "tiny_cpu.yaml").read_text())
        recipe.update(
            train_tasks=str(TASKS),
            sft_warm_start_steps=2,
            max_steps=2,
            per_device_train_batch_size=4,
            num_generations=2,
            max_completion_length=32,
            eval_pass_at_1=False,
            report_to="none",
            save_strategy="no",
            output_dir=str(self.root / "runs" / name),
        )
        recipe.update(overrides)
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        return path

    def cluster_file(self) -> tuple[Path, int]:
        """A cluster file for this node (CPU only, fresh ports); returns it and the reward port."""
        reward_port = _free_port()
        path = self.root / f"cluster-{reward_port}.yaml"
        values = {
            "train_nodes": 1,
            "gpus_per_node": 0,
            "reward_replicas": 1,
            "reward_workers": 2,
            "reward_port": reward_port,
            "main_port": _free_port(),
            "accelerate_config": "configs/accelerate/cpu.yaml",
            "cpus_per_task": self.cpus,
            "time": "00:15:00",
            "job_name": "rtlf-test",
        }
        path.write_text(yaml.safe_dump(values))
        return path, reward_port


def _slurm_conf(root: Path, node: str, cpus: int, memory_mb: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""\
ClusterName=rtlftest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
# No cgroups in a container: processes are tracked by parentage, tasks are not bound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
# SIGTERM → SIGKILL grace on cancel (30 s by default); the job script's trap needs well under a second.
KillWait=5
MinJobAge=900
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=test Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _node_name() -> str:
    """This host's short name when it resolves (job URLs use node names), else ``localhost``."""
    name = socket.gethostname().split(".")[0]
    try:
        socket.gethostbyname(name)
    except OSError:
        return "localhost"
    return name


def _real_memory_mb(path: str) -> int:
    out = subprocess.run(
        [shutil.which("slurmd", path=path) or "slurmd", "-C"], capture_output=True, text=True, timeout=60
    ).stdout
    match = re.search(r"RealMemory=(\d+)", out)
    assert match, f"slurmd -C printed no RealMemory: {out!r}"
    return int(match.group(1))


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in reversed(procs):
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_leftovers(marker: bytes) -> None:
    """SIGKILL every process whose environment names this cluster's config (job steps, slurmstepd)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # the daemons live in sbin
    missing = [tool for tool in DAEMONS if shutil.which(tool, path=path) is None]
    if missing:
        pytest.fail(f"Slurm tools missing ({', '.join(missing)}): run `make setup` (Debian slurm-wlm, munge)")
    root = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool", "runs", "cache"):
        (root / sub).mkdir()
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    node, cpus = _node_name(), min(2, os.cpu_count() or 1)
    conf = root / "slurm.conf"
    conf.write_text(_slurm_conf(root, node, cpus, _real_memory_mb(path)))
    env = {
        **os.environ,
        "PATH": path,
        "SLURM_CONF": str(conf),
        "PYTHON": sys.executable,
        "RTLFORGE_CACHE": str(root / "cache"),
        "RTLFORGE_REWARD_CACHE": str(root / "cache" / "reward-cache.sqlite"),
        "WANDB_MODE": "disabled",
    }
    procs: list[subprocess.Popen] = []

    def start(name: str, argv: list[str]) -> None:
        with open(root / f"{name}.out", "wb") as log:
            procs.append(subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL))

    try:
        # --force: munged refuses a socket directory that is not world-searchable (pytest's base is 0700).
        munge = [f"--socket={root}/munge/munge.sock", f"--key-file={key}", f"--pid-file={root}/munge/pid"]
        munge += [f"--log-file={root}/munge/munged.log", f"--seed-file={root}/munge/seed"]
        start("munged", ["munged", "-F", "--force", *munge])
        _wait(lambda: (root / "munge" / "munge.sock").exists(), 30, "munged socket", root / "munged.out")
        start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(conf)])
        start("slurmd", ["slurmd", "-D", "-f", str(conf), "-N", node])
        cl = Cluster(root, node, cpus, env)

        def idle() -> bool:
            return cl.run("sinfo", "-h", "-n", node, "-o", "%T").stdout.strip() == "idle"

        _wait(idle, 60, f"node {node} idle", root / "slurmd.log", root / "slurmctld.log")
        yield cl
    finally:
        if procs:
            subprocess.run(
                ["scancel", "--full", "--partition=test"], env=env, capture_output=True, timeout=60
            )
            deadline = time.monotonic() + 30
            while (
                time.monotonic() < deadline
                and subprocess.run(
                    ["squeue", "-h"], env=env, capture_output=True, text=True, timeout=60
                ).stdout.strip()
            ):
                time.sleep(1)
        _stop(procs)
        _kill_leftovers(f"SLURM_CONF={conf}".encode())


def _wait(ready, timeout: float, what: str, *logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not ready after {timeout:.0f} s\n" + "\n".join(_tail(p) for p in logs))


def _job_log(run_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(run_dir.glob("slurm-*.out")))


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "slurm_job.json").read_text())


def _assert_no_processes(job_id: str, needles: list[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (left := processes_matching(job_id, needles)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, f"processes of job {job_id} outlived it: {left}"


# ------------------------------------------------------------------------------------------- tests
def test_grpo_job_completes_and_stops_its_reward_server(cluster: Cluster) -> None:
    recipe = cluster.recipe("grpo")
    cluster_file, reward_port = cluster.cluster_file()
    started = time.monotonic()
    job = cluster.launch("slurm", "--algo", "grpo", "--config", str(recipe), "--cluster", str(cluster_file))
    (record,) = cluster.wait(job)
    run_dir = cluster.root / "runs" / "grpo"
    log = _job_log(run_dir)
    print(f"GRPO job {job}: {time.monotonic() - started:.0f} s")
    assert record["JobState"] == "COMPLETED" and record["ExitCode"] == "0:0", log[-3000:]
    assert f"reward server listening on http://0.0.0.0:{reward_port}" in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["scored_items"] > 0 and summary["infra_errors"] == 0
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in m for m in metrics)
    resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
    assert resolved["reward_urls"] == [f"http://{cluster.node}:{reward_port}"]
    assert _state(run_dir)["state"] == "COMPLETED" and _state(run_dir)["job_id"] == job
    _assert_no_processes(job, [f"--port {reward_port}", str(run_dir)])


def test_sweep_runs_as_a_job_array(cluster: Cluster) -> None:
    cluster_file, _ = cluster.cluster_file()
    sweep = cluster.root / "sweep.yaml"
    rates = [1.0e-4, 3.0e-4]
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "lr",
                "algo": "grpo",
                "base": str(cluster.recipe("sweep-base")),
                "output_root": str(cluster.root / "sweeps"),
                "cluster": str(cluster_file),
                "grid": {"learning_rate": rates},
            }
        )
    )
    started = time.monotonic()
    job = cluster.launch("sweep", "--sweep", str(sweep))
    records = cluster.wait(job, timeout=900)
    print(f"sweep array {job}: {time.monotonic() - started:.0f} s for {len(records)} tasks")
    assert sorted(r.get("ArrayTaskId") for r in records) == ["0", "1"]
    for index, rate in enumerate(rates):
        run_dir = cluster.root / "sweeps" / "lr" / f"{index:03d}"
        record = next(r for r in records if r.get("ArrayTaskId") == str(index))
        assert record["JobState"] == "COMPLETED", _job_log(run_dir)[-3000:]
        assert (run_dir / f"slurm-{job}_{index}.out").exists()
        resolved = yaml.safe_load((run_dir / "resolved_config.yaml").read_text())
        assert resolved["learning_rate"] == rate and resolved["output_dir"] == str(run_dir)
        assert resolved["run_name"] == f"lr-{index:03d}"
        assert (run_dir / "summary.json").exists() and (run_dir / "metrics.jsonl").exists()
        state = _state(run_dir)
        assert state["state"] == "COMPLETED" and state["array_task_id"] == str(index)


def test_scancel_leaves_no_process_and_marks_the_run(cluster: Cluster) -> None:
    recipe = cluster.recipe("cancel", max_steps=10_000)
    cluster_file, reward_port = cluster.cluster_file()
    run_dir = cluster.root / "runs" / "cancel"
    job = cluster.launch("slurm", "--algo", "grpo", "--config", str(recipe), "--cluster", str(cluster_file))
    cluster.wait_for(run_dir / "resolved_config.yaml", job)  # the trainer is up, next to its reward server
    needles = [f"--port {reward_port}", str(run_dir)]
    running = processes_matching(job, needles)
    assert any("rewards.server" in p for p in running) and any("train/grpo.py" in p for p in running)
    started = time.monotonic()
    assert cluster.run("scancel", job).returncode == 0
    (record,) = cluster.wait(job)
    print(f"scancel of job {job}: gone after {time.monotonic() - started:.0f} s")
    assert record["JobState"] == "CANCELLED"
    state = _state(run_dir)
    assert state["state"] == "CANCELLED" and state["exit_code"] == 143, state
    _assert_no_processes(job, needles)


def test_killed_reward_step_stops_the_trainer_with_infra_error(cluster: Cluster) -> None:
    recipe = cluster.recipe("infra", max_steps=10_000, reward_retries=1)
    cluster_file, reward_port = cluster.cluster_file()
    run_dir = cluster.root / "runs" / "infra"
    job = cluster.launch("slurm", "--algo", "grpo", "--config", str(recipe), "--cluster", str(cluster_file))
    cluster.wait_for(run_dir / "metrics.jsonl", job)  # training steps are being scored
    steps = cluster.run("squeue", "-h", "-s", "-j", job, "-o", "%i %j").stdout.split("\n")
    reward_step = [line.split()[0] for line in steps if line.strip() and line.split()[1].startswith("python")]
    assert len(reward_step) == 1, steps
    started = time.monotonic()
    assert cluster.run("scancel", "--signal=KILL", reward_step[0]).returncode == 0
    (record,) = cluster.wait(job)
    print(f"job {job}: trainer stopped {time.monotonic() - started:.0f} s after the reward step was killed")
    log = _job_log(run_dir)
    assert record["JobState"] == "FAILED" and record["ExitCode"] != "0:0", log[-3000:]
    assert "reward scoring failed (INFRA_ERROR)" in log and "fail_on_infra_rate" in log, log[-3000:]
    assert _state(run_dir)["state"] == "FAILED"
    _assert_no_processes(job, [f"--port {reward_port}", str(run_dir)])
