"""What the real tier needs from the machine, and a plain sentence for what is missing.

The tier runs containerd 1.6.20 from Debian (package ``containerd``) as root and builds its
pull harness with Debian's Go (``golang-go``) against Debian's containerd sources
(``golang-github-containerd-containerd-dev`` under ``/usr/share/gocode``).  No other download
is involved.  :func:`missing` lists what is absent; tests skip with :func:`skip_reason`
locally and fail with it in CI (see ``tests/real/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "APT_PACKAGES",
    "GOPATH",
    "Missing",
    "containerd_binary",
    "go_binary",
    "missing",
    "skip_reason",
]

#: Debian's Go source tree; ``GOPATH`` for the harness build.
GOPATH = Path("/usr/share/gocode")
#: The containerd client sources the harness links (``golang-github-containerd-containerd-dev``).
CONTAINERD_SOURCES = GOPATH / "src" / "github.com" / "containerd" / "containerd"
#: What ``.ci/run`` installs.
APT_PACKAGES = ("containerd", "golang-go", "golang-github-containerd-containerd-dev")

_INSTALL = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)


@dataclass(frozen=True)
class Missing:
    """One missing prerequisite: what it is and how to get it."""

    what: str
    remedy: str

    def __str__(self) -> str:
        return f"{self.what} ({self.remedy})"


def containerd_binary() -> str | None:
    """The ``containerd`` executable on PATH (or ``$UNPACKSIM_CONTAINERD``), if any."""
    return os.environ.get("UNPACKSIM_CONTAINERD") or shutil.which("containerd")


def go_binary() -> str | None:
    """The ``go`` executable on PATH (or ``$UNPACKSIM_GO``), if any."""
    return os.environ.get("UNPACKSIM_GO") or shutil.which("go")


def missing() -> list[Missing]:
    """Every prerequisite of the real tier that this machine lacks (empty: all present)."""
    out: list[Missing] = []
    if os.geteuid() != 0:
        out.append(Missing("root", "containerd needs root: run the tier as root, e.g. in CI"))
    if containerd_binary() is None:
        out.append(Missing("the containerd binary", f"install it: {_INSTALL}"))
    if go_binary() is None:
        out.append(Missing("the go toolchain", f"install it: {_INSTALL}"))
    if not (CONTAINERD_SOURCES / "client.go").is_file():
        out.append(Missing(f"the containerd Go sources at {CONTAINERD_SOURCES}", _INSTALL))
    return out


def skip_reason() -> str | None:
    """One sentence naming what is missing, or None when the tier can run."""
    absent = missing()
    if not absent:
        return None
    return "the real-containerd tier needs: " + "; ".join(str(m) for m in absent)
