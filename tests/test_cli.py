from __future__ import annotations

import subprocess
import sys

from unpacksim import __version__


def test_console_script_reports_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "unpacksim.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == f"unpacksim {__version__}"
