"""The HTML report in headless Chromium: no console error, and a screenshot that is not blank.

Chromium is driven over the DevTools protocol on ``--remote-debugging-pipe`` (fd 3 carries
commands to the browser, fd 4 carries replies and events back; each message is JSON ending in a
NUL byte), with the standard library only.  Every wait is bounded, and the browser's process
group is killed on every path.  Two control pages prove the checks can fail: one logs a console
error, one is blank.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from unpacksim.reports.records import Finding
from unpacksim.reports.render_html import render_html

pytestmark = pytest.mark.browser

WAIT = 30.0  # seconds, for any one reply or event
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
    "--window-size=1280,900",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    advice = "install it: apt-get install -y --no-install-recommends chromium"
    if os.environ.get("CI"):
        pytest.fail(f"headless Chromium is required in CI and was not found on PATH; {advice}")
    pytest.skip(f"headless Chromium not found on PATH; {advice}")


class DevTools:
    """One browser over the DevTools pipe: commands, events, and a page session."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.from_browser], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise ConnectionError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, page: bool = True
    ) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + WAIT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first page event ``method`` (kept or still to come)."""
        deadline = time.monotonic() + WAIT
        while True:
            for event in self.events:
                if event.get("method") == method and event.get("sessionId") == self.session:
                    return event
            self.events.append(self._read_message(deadline))

    def open_page(self) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, page=False)["targetId"]
        attach = {"targetId": target, "flatten": True}
        self.session = self.call("Target.attachToTarget", attach, page=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def load(self, url: str) -> list[str]:
        """Navigate to ``url``, wait for it to load, return the console errors it produced."""
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")
        self.call("Runtime.evaluate", {"expression": "0"})  # flush late events
        return [e for e in map(_console_error, self.events) if e]

    def screenshot(self, clip: dict[str, float] | None = None) -> bytes:
        params: dict[str, Any] = {"format": "png"}
        if clip:
            params["clip"] = clip | {"scale": 1}
        return base64.b64decode(self.call("Page.captureScreenshot", params)["data"])

    def evaluate(self, expression: str) -> Any:
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})[
            "result"
        ].get("value")


def _console_error(event: dict[str, Any]) -> str:
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(
            str(a.get("value", a.get("description"))) for a in params["args"]
        )
    if method == "Runtime.exceptionThrown":
        return "exception: " + str(params["exceptionDetails"].get("text"))
    if method == "Log.entryAdded" and params["entry"].get("level") == "error":
        return f"log ({params['entry'].get('source')}): {params['entry'].get('text')}"
    return ""


def _high_fd(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or more, so moving it to 3 or 4 clobbers nothing."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    binary = _chromium()
    cmd_read, cmd_write = map(_high_fd, os.pipe())
    res_read, res_write = map(_high_fd, os.pipe())

    def child_fds() -> None:
        os.dup2(cmd_read, 3)
        os.dup2(res_write, 4)

    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(3, 4),
        preexec_fn=child_fds,
        start_new_session=True,
    )
    os.close(cmd_read)
    os.close(res_write)
    tools = DevTools(proc, cmd_write, res_read)
    try:
        yield tools
    finally:
        try:
            tools.call("Browser.close", page=False)
            proc.wait(timeout=10)
        except Exception:  # the browser is stuck or gone: the group is killed below
            pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        os.close(cmd_write)
        os.close(res_read)


# --- PNG -------------------------------------------------------------------------------------


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _unfilter(kind: int, line: bytes, prior: bytes, bpp: int) -> bytes:
    if kind == 0:
        return line
    out = bytearray(line)
    for i in range(len(out)):
        left = out[i - bpp] if i >= bpp else 0
        up = prior[i]
        corner = prior[i - bpp] if i >= bpp else 0
        pred = (0, left, up, (left + up) // 2, _paeth(left, up, corner))[kind]
        out[i] = (out[i] + pred) & 0xFF
    return bytes(out)


def png_has_two_colours(png: bytes) -> bool:
    """Decode an 8-bit RGB(A) PNG row by row; True at the first pixel unlike the first."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, header, idat = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, "unexpected PNG layout"
    bpp = 4 if colour == 6 else 3
    stride = width * bpp
    data = zlib.decompress(idat)
    prior, first = bytes(stride), b""
    for row in range(height):
        start = row * (stride + 1)
        line = _unfilter(data[start], data[start + 1 : start + 1 + stride], prior, bpp)
        first = first or line[:bpp]
        if line != first * width:
            return True
        prior = line
    return False


# --- the test --------------------------------------------------------------------------------

_ERROR_PAGE = "<!DOCTYPE html><title>control</title><script>console.error('control error')</script>"
_BLANK_PAGE = "<!DOCTYPE html><title>blank</title><body style='background:#fff'></body>"


def test_html_report_loads_cleanly_and_draws(finding: Finding, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(render_html(finding), encoding="utf-8")
    (tmp_path / "error.html").write_text(_ERROR_PAGE, encoding="utf-8")
    (tmp_path / "blank.html").write_text(_BLANK_PAGE, encoding="utf-8")
    with chromium(tmp_path / "profile") as browser:
        browser.open_page()
        # The controls: the checks below can fail.
        assert browser.load((tmp_path / "error.html").as_uri()) == ["console: control error"]
        assert browser.load((tmp_path / "blank.html").as_uri()) == []
        assert not png_has_two_colours(
            browser.screenshot({"x": 0, "y": 0, "width": 160, "height": 120})
        )

        errors = browser.load(report.as_uri())
        assert errors == [], f"the report logged errors: {errors}"
        assert (
            browser.evaluate("document.title")
            == f"unpacksim finding {finding.id}: {finding.property.name}"
        )
        assert browser.evaluate("document.querySelectorAll('svg').length") == 3
        assert browser.evaluate("document.querySelectorAll('script').length") == 0
        assert png_has_two_colours(browser.screenshot())
