"""Daemon configuration and lifecycle failures, with stand-in binaries (no root needed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from unpacksim.real.daemon import (
    DISABLED_PLUGINS,
    Daemon,
    DaemonConfig,
    DaemonError,
    live_daemons,
    render_config,
)
from unpacksim.real.prereqs import APT_PACKAGES, missing, skip_reason


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return str(path)


def test_config_keeps_every_path_inside_the_directory(tmp_path: Path) -> None:
    config = tomllib.loads(render_config(tmp_path))
    inside = [
        config["root"],
        config["state"],
        config["grpc"]["address"],
        config["ttrpc"]["address"],
        config["plugins"]["io.containerd.internal.v1.opt"]["path"],
    ]
    assert all(p.startswith(str(tmp_path) + "/") for p in inside), inside
    assert config["debug"]["address"] == "" and config["metrics"]["address"] == ""
    assert config["plugin_dir"] == ""
    assert "io.containerd.grpc.v1.cri" in config["disabled_plugins"]
    assert config["disabled_plugins"] == list(DISABLED_PLUGINS)


def test_manual_gc_never_schedules_by_itself(tmp_path: Path) -> None:
    manual = tomllib.loads(render_config(tmp_path, gc="manual"))
    gc = manual["plugins"]["io.containerd.gc.v1.scheduler"]
    assert gc["startup_delay"] == "100000h" and gc["pause_threshold"] < 1e-6
    assert gc["deletion_threshold"] == 0 and gc["mutation_threshold"] == 0
    default = tomllib.loads(render_config(tmp_path, gc="default"))
    assert "io.containerd.gc.v1.scheduler" not in default["plugins"]


@pytest.mark.parametrize(
    "kwargs", [{"gc": "sometimes"}, {"start_timeout": 0}, {"max_lifetime": -1}]
)
def test_bad_daemon_config_is_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="DaemonConfig"):
        DaemonConfig(**kwargs)  # type: ignore[arg-type]


def test_a_daemon_that_exits_while_starting_is_reported_and_cleaned_up(tmp_path: Path) -> None:
    binary = script(tmp_path, "exits", 'echo "level=fatal msg=boom"; exit 3')
    daemon = Daemon(DaemonConfig(binary=binary))
    with pytest.raises(DaemonError, match=r"exited with status 3(.|\n)*boom"):
        daemon.start()
    assert daemon.directory is not None and not daemon.directory.exists()
    assert daemon not in live_daemons()


def test_a_daemon_that_never_becomes_healthy_is_killed(tmp_path: Path) -> None:
    binary = script(tmp_path, "hangs", "exec sleep 30")
    daemon = Daemon(DaemonConfig(binary=binary, start_timeout=0.3))
    with pytest.raises(DaemonError, match=r"did not become healthy within 0\.3s"):
        daemon.start()
    assert not daemon.running and daemon.wait(timeout=5)
    assert daemon.directory is not None and not daemon.directory.exists()


def test_a_too_deep_directory_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 90)
    deep.mkdir()
    daemon = Daemon(DaemonConfig(binary="/bin/true", base_dir=str(deep)))
    with pytest.raises(DaemonError, match="too deep for a unix socket"):
        daemon.start()


def test_a_daemon_cannot_start_twice_and_paths_need_a_start(tmp_path: Path) -> None:
    daemon = Daemon(DaemonConfig(binary="/bin/true"))
    with pytest.raises(DaemonError, match="has not been started"):
        _ = daemon.address
    with pytest.raises(DaemonError):
        daemon.start()  # /bin/true exits at once
    with pytest.raises(DaemonError, match="already started"):
        daemon.start()


def test_missing_prerequisites_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("UNPACKSIM_CONTAINERD", raising=False)
    monkeypatch.delenv("UNPACKSIM_GO", raising=False)
    what = {m.what for m in missing()}
    assert {"the containerd binary", "the go toolchain"} <= what
    reason = skip_reason()
    assert reason is not None and "apt-get install" in reason
    assert all(p in reason for p in APT_PACKAGES)
    if os.geteuid() != 0:
        assert "root" in reason


def _pytest_without_tools(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    target = Path(__file__).with_name("test_daemon.py")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UNPACKSIM_")}
    environ.update(PATH=str(tmp_path), **env)  # no containerd, no go on PATH
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "real", "-rs", "-q",
         f"{target}::test_daemon_stops_when_the_block_raises"],
        capture_output=True, text=True, env=environ, timeout=120, check=False,
    )  # fmt: skip


def test_the_tier_skips_without_its_tools_and_says_why(tmp_path: Path) -> None:
    done = _pytest_without_tools(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    assert "the real-containerd tier needs: the containerd binary" in done.stdout
    assert "apt-get install" in done.stdout


def test_the_tier_fails_without_its_tools_when_required(tmp_path: Path) -> None:
    done = _pytest_without_tools(tmp_path, UNPACKSIM_REQUIRE_REAL="1")
    assert done.returncode != 0
    assert "the real-containerd tier needs" in done.stdout + done.stderr
    assert "UNPACKSIM_REQUIRE_REAL" in done.stdout + done.stderr
