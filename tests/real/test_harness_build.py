"""Building and caching the Go harness, with a stand-in ``go`` (no toolchain needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unpacksim.real.harness import (
    Harness,
    HarnessError,
    OpReport,
    PullRequest,
    build_harness,
    harness_source,
)

FAKE_GO = """#!/bin/sh
# A stand-in for `go`: `go version` prints a version; `go build -o OUT main.go` records the
# environment it was given and writes OUT.
if [ "$1" = version ]; then echo "go version go0.0 fake"; exit 0; fi
echo "$GO111MODULE $GOPATH $CGO_ENABLED $GOPROXY" >> "$FAKE_GO_LOG"
if [ -n "$FAKE_GO_FAIL" ]; then echo "cannot find package" >&2; exit 1; fi
printf '#!/bin/sh\\necho "{\\\\"ok\\\\": true}"\\n' > "$3"
chmod +x "$3"
"""


@pytest.fixture
def fake_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    go = tmp_path / "go"
    go.write_text(FAKE_GO)
    go.chmod(0o755)
    log = tmp_path / "go.log"
    monkeypatch.setenv("UNPACKSIM_GO", str(go))
    monkeypatch.setenv("UNPACKSIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_GO_LOG", str(log))
    monkeypatch.delenv("FAKE_GO_FAIL", raising=False)
    return log


def test_the_go_source_ships_with_the_package() -> None:
    source = harness_source().decode()
    assert source.startswith("// Command harness")
    assert "images.ChildGCLabelsFilterLayers" in source and "client.Pull" in source


def test_build_uses_debian_sources_and_is_cached(fake_go: Path) -> None:
    first = build_harness()
    second = build_harness()
    assert first == second and first.is_file()
    assert fake_go.read_text().splitlines() == ["off /usr/share/gocode 0 off"]  # built once
    build_harness(rebuild=True)
    assert len(fake_go.read_text().splitlines()) == 2


def test_a_failed_build_names_the_missing_package(
    fake_go: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_GO_FAIL", "1")
    with pytest.raises(HarnessError, match=r"golang-github-containerd-containerd-dev(.|\n)*"
                       r"cannot find package"):  # fmt: skip
        build_harness()


def test_harness_reports_a_process_that_fails(tmp_path: Path) -> None:
    binary = tmp_path / "harness"
    binary.write_text("#!/bin/sh\necho 'harness: connect: refused' >&2\nexit 3\n")
    binary.chmod(0o755)
    harness = Harness("/nonexistent.sock", binary=binary, timeout=5)
    with pytest.raises(HarnessError, match=r"exit 3.*connect: refused"):
        harness.version()


def test_pull_needs_requests_and_reports_decode() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Harness("/x.sock", binary=Path("/bin/true")).pull([])
    assert OpReport.from_json({"ok": True}) == OpReport(True)
    failed = OpReport.from_json({"ok": False, "class": "NotFound", "error": "x: not found"})
    assert failed == OpReport(False, "NotFound", "x: not found")
    assert PullRequest("r", discard=True).to_json()["discard"] is True
