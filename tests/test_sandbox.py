"""Adversarial tests of rewards.sandbox: one escape attempt or resource attack per test."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rewards.sandbox import Job, Limits, SandboxError, run_job
from rewards.tools import IVERILOG, VERILATOR, VVP

PY = "/usr/bin/python3"
REPO_FILE = Path(__file__).resolve()
SMALL = Limits(cpu_s=5.0, wall_s=30.0, memory_mb=512, max_procs=32)


@pytest.fixture(autouse=True)
def default_job_root(monkeypatch):
    """Jobs use the default job root (/tmp/rtlforge-jobs): its parents are searchable by the sandbox uid."""
    monkeypatch.delenv("RTLFORGE_JOB_DIR", raising=False)
    monkeypatch.delenv("RTLFORGE_KEEP_JOBS", raising=False)


def _job_root() -> Path:
    return Path(tempfile.gettempdir()) / "rtlforge-jobs"


def _py(code: str, limits: Limits = SMALL, **kwargs) -> Job:
    return Job(argv=(PY, "-c", code), limits=limits, **kwargs)


def _sh(script: str, limits: Limits = SMALL, **kwargs) -> Job:
    return Job(argv=("/bin/sh", "-c", script), limits=limits, **kwargs)


def _procs_with(marker: str) -> list[int]:
    """Host pids whose command line contains ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


def _wait_gone(marker: str, timeout_s: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while (left := _procs_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


CONNECT = """
import socket, sys
try:
    socket.create_connection(("{host}", {port}), timeout=3).close()
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


@pytest.fixture
def loopback_server():
    """A TCP server on the host's loopback that records whether anyone connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    hits = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join()
    server.close()


def test_host_loopback_server_unreachable(loopback_server):
    port, hits = loopback_server
    unsandboxed = run_job(_py(CONNECT.format(host="127.0.0.1", port=port)), sandbox=False)
    assert "CONNECTED" in unsandboxed.stdout and hits  # the server is reachable from the host
    hits.clear()
    result = run_job(_py(CONNECT.format(host="127.0.0.1", port=port)))
    assert "BLOCKED" in result.stdout, result.tail()
    assert not hits


def test_outside_address_unreachable():
    result = run_job(_py(CONNECT.format(host="1.1.1.1", port=53)))
    assert "BLOCKED" in result.stdout, result.tail()


def test_only_loopback_interface():
    result = run_job(_sh("cat /proc/net/dev"))
    interfaces = {line.split(":")[0].strip() for line in result.stdout.splitlines() if ":" in line}
    assert interfaces == {"lo"}


@pytest.mark.parametrize(
    "target",
    ["/usr/rtlf-probe", "/work/rtlf-probe", "/root/rtlf-probe", "/etc/rtlf-probe", "/job/../rtlf-probe"],
)
def test_no_write_outside_job_dir(target):
    result = run_job(_sh(f"echo x > {target} && echo WROTE"))
    host = Path(target.replace("/job/../", "/"))
    assert not host.exists()
    if "WROTE" in result.stdout:  # the sandbox's own root is a throwaway tmpfs
        assert target in ("/job/../rtlf-probe", "/etc/rtlf-probe")


def test_host_tmp_not_visible(tmp_path):
    marker = tmp_path / "host-secret.txt"
    marker.write_text("secret")
    script = f"cat {marker}; ls /tmp; echo inside > /tmp/rtlf-inside-{uuid.uuid4().hex}"
    result = run_job(_sh(script))
    assert "secret" not in result.stdout
    assert not any(p.name.startswith("rtlf-inside-") for p in Path("/tmp").iterdir())


def test_job_dir_is_writable_and_read_back():
    result = run_job(_sh("echo payload > out.txt", outputs=("out.txt",)))
    assert result.returncode == 0
    assert result.outputs == {"out.txt": b"payload\n"}


def test_job_files_land_in_the_job_dir_and_none_escapes_it():
    result = run_job(_sh("cat a.txt sub/b.txt", files=(("a.txt", "one\n"), ("sub/b.txt", "two\n"))))
    assert result.returncode == 0 and result.stdout == "one\ntwo\n"
    for name in ("../escaped.txt", "sub/../../escaped.txt", "/tmp/escaped.txt", ".."):
        with pytest.raises(SandboxError):
            run_job(_sh("true", files=((name, "x"),)))
    assert not Path(tempfile.gettempdir(), "escaped.txt").exists()


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "/root", str(REPO_FILE), "/work/shared"])
def test_host_files_not_readable(path):
    result = run_job(_sh(f"cat {path} || ls {path} || echo MISSING"))
    assert "MISSING" in result.stdout
    assert "root:" not in result.stdout and "def test_" not in result.stdout


def test_runs_unprivileged():
    result = run_job(_sh("cat /proc/self/status"))
    caps = {
        line.split(":")[0]: line.split(":")[1].strip() for line in result.stdout.splitlines() if ":" in line
    }
    assert int(caps["CapEff"], 16) == 0
    assert int(caps["CapPrm"], 16) == 0


def test_host_processes_not_visible():
    result = run_job(_sh("ls /proc | grep -c '^[0-9]'"))
    assert int(result.stdout.strip()) < 10


def test_infinite_loop_stopped_by_cpu_limit():
    limits = Limits(cpu_s=1.0, wall_s=60.0)
    start = time.monotonic()
    result = run_job(_py("while True: pass", limits=limits))
    assert result.cpu_limit and not result.wall_timeout
    assert result.timed_out
    assert result.cpu_s >= 0.8
    assert time.monotonic() - start < 15


def test_cpu_time_is_measured():
    result = run_job(_py("import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"))
    assert result.returncode == 0
    assert 0.45 <= result.cpu_s < 3.0


def test_memory_bomb_stopped():
    limits = Limits(cpu_s=10.0, wall_s=60.0, memory_mb=256)
    result = run_job(
        _py("blocks = []\nwhile True: blocks.append(bytearray(64 * 1024 * 1024))", limits=limits)
    )
    assert result.returncode != 0
    assert result.memory_limit


def test_memory_bomb_in_c_stopped():
    source = (
        "#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc(1<<26);"
        "if(!p)return 42;memset(p,1,1<<26);}}\n"
    )
    limits = Limits(cpu_s=20.0, wall_s=60.0, memory_mb=256)
    result = run_job(_sh("cc -O0 -o bomb bomb.c && ./bomb", limits=limits, files=(("bomb.c", source),)))
    assert result.returncode == 42  # malloc failed: the address-space limit held


def test_output_flood_capped():
    limits = Limits(cpu_s=10.0, wall_s=60.0, max_output_bytes=100_000)
    start = time.monotonic()
    result = run_job(_sh("yes flood", limits=limits))
    assert result.output_truncated
    assert len(result.stdout) + len(result.stderr) <= 100_000 + 65536
    assert time.monotonic() - start < 15


def test_fork_bomb_contained():
    marker = f"rtlf-forkbomb-{uuid.uuid4().hex}"
    bomb = f"""
import os, time
# {marker}
children = 0
for _ in range(10000):
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    except OSError:
        break
print("forked", children, flush=True)
"""
    limits = Limits(cpu_s=10.0, wall_s=30.0, max_procs=16)
    start = time.monotonic()
    result = run_job(_py(bomb, limits=limits))
    assert time.monotonic() - start < 25
    forked = int(result.stdout.split()[1])
    assert forked < 16
    assert _wait_gone(marker) == []


def test_parallel_cpu_jobs_no_false_timeouts():
    job = _py(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\nprint('done')",
        limits=Limits(cpu_s=5.0, wall_s=120.0),
    )
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run_job, [job] * 8))
    for result in results:
        assert result.returncode == 0 and result.stdout.strip() == "done", result.tail()
        assert not result.timed_out


def test_file_size_limit():
    limits = Limits(cpu_s=10.0, wall_s=60.0, max_file_mb=1)
    result = run_job(
        _sh("head -c 10000000 /dev/zero > big.bin; echo rc=$?", limits=limits, outputs=("big.bin",))
    )
    assert "rc=0" not in result.stdout
    assert len(result.outputs.get("big.bin", b"")) <= 1024 * 1024


def test_planted_symlink_not_followed():
    script = "ln -s /etc/shadow out.txt; ln -s /etc linkdir; mkfifo fifo.txt"
    result = run_job(_sh(script, outputs=("out.txt", "linkdir/passwd", "linkdir/shadow", "fifo.txt")))
    assert result.returncode == 0, result.tail()
    assert result.outputs == {}


def test_job_dir_removed_afterwards():
    name = f"rtlf-leftover-{uuid.uuid4().hex}.txt"
    result = run_job(_sh(f"echo x > {name}; pwd"))
    assert result.stdout.strip() == "/job"
    assert not list(_job_root().glob(f"*/{name}"))


def test_unreachable_job_root_is_a_clear_error(tmp_path, monkeypatch):
    from rewards.sandbox import SandboxError

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    monkeypatch.setenv("RTLFORGE_JOB_DIR", str(private))
    if os.geteuid() != 0:
        pytest.skip("only root drops to an unprivileged uid")
    with pytest.raises(SandboxError, match=r"RTLFORGE_JOB_DIR.*o\+x"):
        run_job(_sh("true"))


def test_job_file_names_cannot_escape():
    from rewards.sandbox import SandboxError

    with pytest.raises(SandboxError, match="escapes"):
        run_job(_sh("true", files=(("../evil.txt", "x"),)))


def test_wall_timeout_kills_process_tree():
    marker = f"rtlf-sleeper-{uuid.uuid4().hex}"
    script = (
        f"{PY} -c 'import time; time.sleep(1000)' {marker} & {PY} -c 'import time; time.sleep(1000)' {marker}"
    )
    start = time.monotonic()
    result = run_job(_sh(script, limits=Limits(cpu_s=5.0, wall_s=1.0)))
    assert result.wall_timeout and result.timed_out
    assert time.monotonic() - start < 10
    assert _wait_gone(marker) == []


def test_background_process_gone_after_job_exits():
    marker = f"rtlf-orphan-{uuid.uuid4().hex}"
    script = f"({PY} -c 'import time; time.sleep(1000)' {marker} &) ; echo started"
    result = run_job(_sh(script))
    assert result.returncode == 0 and "started" in result.stdout
    assert _wait_gone(marker) == []


def test_killed_by_signal_is_reported():
    result = run_job(_sh("kill -SEGV $$"))
    assert result.signal == signal.SIGSEGV


# --- the EDA tools inside the sandbox --------------------------------------------------------


def test_verilator_lint_runs_in_sandbox():
    verilator = VERILATOR.binary()
    good = "module top(input a, output y); assign y = ~a; endmodule\n"
    bad = "module top(input a, output y); assign y = ~a endmodule\n"
    ok = run_job(
        Job(
            argv=(verilator, "--lint-only", "-Wall", "top.v"),
            files=(("top.v", good),),
            ro_binds=VERILATOR.ro_binds(),
        )
    )
    assert ok.returncode == 0, ok.tail()
    broken = run_job(
        Job(
            argv=(verilator, "--lint-only", "-Wall", "top.v"),
            files=(("top.v", bad),),
            ro_binds=VERILATOR.ro_binds(),
        )
    )
    assert broken.returncode != 0 and "%Error" in broken.stderr


def test_icarus_fopen_cannot_touch_host():
    host_target = f"/tmp/rtlf-escape-{uuid.uuid4().hex}"
    sibling = f"rtlf-escape-{uuid.uuid4().hex}.txt"
    source = f"""
module top;
  integer f1, f2, f3;
  initial begin
    f1 = $fopen("{host_target}", "w");
    if (f1) begin $fdisplay(f1, "escaped"); $fclose(f1); end
    f2 = $fopen("../{sibling}", "w");
    if (f2) begin $fdisplay(f2, "escaped"); $fclose(f2); end
    f3 = $fopen("/etc/passwd", "r");
    $display("read_passwd=%0d", f3 != 0);
  end
endmodule
"""
    script = f"{IVERILOG.binary()} -o sim.vvp top.v && {VVP.binary()} -n sim.vvp"
    result = run_job(
        _sh(
            script, files=(("top.v", source),), ro_binds=tuple(set(IVERILOG.ro_binds()) | set(VVP.ro_binds()))
        )
    )
    assert result.returncode == 0, result.tail()
    assert "read_passwd=0" in result.stdout
    assert not Path(host_target).exists()
    assert not (_job_root() / sibling).exists()
    assert not (_job_root().parent / sibling).exists()
