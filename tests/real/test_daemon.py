"""A real containerd daemon: started healthy, isolated, and stopped on every path."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from unpacksim.real.daemon import Daemon, DaemonConfig, DaemonError, live_daemons
from unpacksim.real.harness import Harness, HarnessError

pytestmark = pytest.mark.real

HOST_PATHS = (Path("/var/lib/containerd"), Path("/run/containerd"), Path("/opt/containerd"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone once /proc says so.
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "State:\tZ" not in status.read_text()


def test_daemon_serves_then_leaves_nothing_behind(harness_binary: Path) -> None:
    before = {p: p.exists() for p in HOST_PATHS}
    with Daemon() as daemon:
        pid, directory = daemon.pid, daemon.directory
        assert pid is not None and directory is not None and daemon in live_daemons()
        version = Harness(daemon.address, binary=harness_binary).version()
        assert version["serving"] is True and version["version"].startswith("1.6.")
        assert (daemon.root / "io.containerd.content.v1.content").is_dir()
    assert not pid_alive(pid) and not directory.exists()
    assert daemon not in live_daemons()
    assert {p: p.exists() for p in HOST_PATHS} == before  # the host's paths are untouched


def test_daemon_stops_when_the_block_raises() -> None:
    with pytest.raises(RuntimeError, match="boom"), Daemon() as daemon:
        pid = daemon.pid
        raise RuntimeError("boom")
    assert pid is not None and not pid_alive(pid)
    with pytest.raises(DaemonError, match=r"not running \(stopped\)"):
        daemon.check_running()


def test_watchdog_stops_a_daemon_by_itself(harness_binary: Path) -> None:
    with Daemon(DaemonConfig(max_lifetime=1.0)) as daemon:
        assert daemon.wait(timeout=15), "the watchdog did not stop the daemon"
        assert "watchdog" in daemon.stop_reason
        with pytest.raises(HarnessError):
            Harness(daemon.address, binary=harness_binary, timeout=1).version()


_HOLDER = """
import sys
from unpacksim.real.daemon import Daemon
d = Daemon().start()
print(d.pid, d.directory, flush=True)
sys.stdin.read()  # wait for the signal
"""


def _holder() -> tuple[subprocess.Popen[str], int, Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    pid, directory = proc.stdout.readline().split()
    return proc, int(pid), Path(directory)


def _reap(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.communicate(timeout=20)  # closes the pipes


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_process_stops_its_daemon_and_cleans_up(signum: int) -> None:
    proc, pid, directory = _holder()
    try:
        assert pid_alive(pid) and directory.exists()
        proc.send_signal(signum)
        proc.wait(timeout=20)
    finally:
        _reap(proc)
    assert not pid_alive(pid)
    assert not directory.exists()


def test_a_killed_process_takes_its_daemon_with_it() -> None:
    proc, pid, directory = _holder()
    pidfd = os.pidfd_open(pid)  # readable once the daemon has exited
    try:
        proc.kill()  # no cleanup can run: PR_SET_PDEATHSIG must end the daemon
        proc.wait(timeout=20)
        readable, _, _ = select.select([pidfd], [], [], 20)
    finally:
        _reap(proc)
        os.close(pidfd)
        shutil.rmtree(directory, ignore_errors=True)
    assert readable, f"containerd {pid} outlived its killed parent"
