"""A containerd daemon of our own: its root, state and sockets in a temporary directory.

:class:`Daemon` writes a ``config.toml`` (version 2) that points every path containerd
would otherwise take from the host (``/var/lib/containerd``, ``/run/containerd``, the opt
plugin's ``/opt/containerd``) into its directory, disables CRI (``io.containerd.grpc.v1.cri``)
and the snapshotters this tier does not use, starts ``containerd --config``, and waits, for a
bounded time, until the daemon logs that it booted and its socket accepts connections.

Never leave a daemon running: :meth:`Daemon.stop` (SIGTERM, a bounded wait, then SIGKILL of
the process group, then unmounting anything left under the directory and removing it) runs
from the context manager on every path, from ``atexit``, from SIGTERM and SIGINT handlers
installed on first start, and from a watchdog timer after ``max_lifetime`` seconds.  The
daemon also gets ``PR_SET_PDEATHSIG`` so the kernel kills it if the thread that started it
dies without cleaning up.

Garbage collection: ``gc="manual"`` (the default) configures the GC scheduler
(``gc/scheduler/scheduler.go``) so that it never collects by itself: ``startup_delay`` far in
the future keeps deletions from scheduling a collection, and a tiny ``pause_threshold`` keeps
the interval after a collection longer than any run.  Collections then happen only when a
client asks for one synchronously (``SynchronousDelete`` of a lease or an image), which makes
the state read back deterministic.  ``gc="default"`` keeps containerd's defaults.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Literal

from unpacksim.real.prereqs import containerd_binary

__all__ = ["Daemon", "DaemonConfig", "DaemonError", "live_daemons", "render_config"]

#: Plugins the tier never needs; CRI would also reach for the host's CNI and /run paths.
DISABLED_PLUGINS = (
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
)
_BOOTED = "containerd successfully booted"
_SOCKET_MAX = 100  # sun_path is 108 bytes; keep room for ".ttrpc"
_PR_SET_PDEATHSIG = 1


class DaemonError(RuntimeError):
    """The daemon could not be started, did not become healthy, or is not running."""


@dataclass(frozen=True)
class DaemonConfig:
    """How to run the daemon.

    Attributes:
        gc: ``"manual"``: collections only on request (deterministic); ``"default"``:
            containerd's scheduler defaults.
        start_timeout: seconds to wait for the daemon to become healthy.
        stop_timeout: seconds to wait after SIGTERM before SIGKILL.
        max_lifetime: seconds after which a watchdog stops the daemon whatever happens.
        log_level: containerd's ``[debug] level``.
        binary: the containerd executable; None finds it on PATH.
        base_dir: where to create the temporary directory; None uses the system's.
        keep_dir: leave the directory (logs, root) behind after stopping, for debugging.
    """

    gc: Literal["manual", "default"] = "manual"
    start_timeout: float = 20.0
    stop_timeout: float = 10.0
    max_lifetime: float = 900.0
    log_level: str = "info"
    binary: str | None = None
    base_dir: str | None = None
    keep_dir: bool = False

    def __post_init__(self) -> None:
        if self.gc not in ("manual", "default"):
            raise ValueError(f"DaemonConfig.gc must be 'manual' or 'default', got {self.gc!r}")
        for name in ("start_timeout", "stop_timeout", "max_lifetime"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DaemonConfig.{name} must be positive seconds")


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(directory: Path, *, gc: str = "manual", log_level: str = "info") -> str:
    """The ``config.toml`` of a daemon living entirely in ``directory``."""
    d = directory
    disabled = ", ".join(_toml_str(p) for p in DISABLED_PLUGINS)
    lines = [
        "version = 2",
        f"root = {_toml_str(str(d / 'root'))}",
        f"state = {_toml_str(str(d / 'state'))}",
        'plugin_dir = ""',
        f"disabled_plugins = [{disabled}]",
        "[grpc]",
        f"  address = {_toml_str(str(d / 'containerd.sock'))}",
        "[ttrpc]",
        f"  address = {_toml_str(str(d / 'containerd.sock.ttrpc'))}",
        "[debug]",
        '  address = ""',
        f"  level = {_toml_str(log_level)}",
        "[metrics]",
        '  address = ""',
        "[plugins]",
        '  [plugins."io.containerd.internal.v1.opt"]',
        f"    path = {_toml_str(str(d / 'opt'))}",
    ]
    if gc == "manual":
        lines += [
            '  [plugins."io.containerd.gc.v1.scheduler"]',
            "    pause_threshold = 1e-9",
            '    startup_delay = "100000h"',
            "    deletion_threshold = 0",
            "    mutation_threshold = 0",
        ]
    return "\n".join(lines) + "\n"


# --- the live set: what atexit and the signal handlers stop ----------------------------------

_LIVE: dict[int, Daemon] = {}
_LIVE_LOCK = threading.RLock()
_HANDLERS_INSTALLED = False
_PREVIOUS: dict[int, object] = {}


def live_daemons() -> list[Daemon]:
    """The daemons started in this process and not yet stopped, oldest first."""
    with _LIVE_LOCK:
        return list(_LIVE.values())


def _stop_all() -> None:
    for daemon in reversed(live_daemons()):
        daemon.stop()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _stop_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:  # SIG_DFL, or a handler Python did not install (None)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread; atexit still runs
    for signum in (signal.SIGTERM, signal.SIGINT):
        _PREVIOUS[signum] = signal.getsignal(signum)
        signal.signal(signum, _on_signal)


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGKILL when we are orphaned.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below ``directory``, deepest first (``/proc/self/mountinfo``)."""
    prefix = str(directory)
    found: list[str] = []
    with contextlib.suppress(OSError), open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=len, reverse=True)


def _unmount(point: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.umount2(point.encode(), 2)  # MNT_DETACH: lazy, never blocks


class Daemon:
    """A containerd daemon in a temporary directory (a context manager).

    ``with Daemon() as d:`` starts it and waits until it is healthy; ``d.address`` is its gRPC
    socket.  Leaving the block stops it and removes the directory, on every path.
    """

    def __init__(self, config: DaemonConfig | None = None) -> None:
        self.config = config if config is not None else DaemonConfig()
        self.directory: Path | None = None
        self.stop_reason = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()
        self._watchdog: threading.Timer | None = None

    # -- paths ---------------------------------------------------------------------------------

    def _path(self, name: str) -> Path:
        if self.directory is None:
            raise DaemonError("the daemon has not been started: use `with Daemon() as d:`")
        return self.directory / name

    @property
    def address(self) -> str:
        """The daemon's gRPC socket."""
        return str(self._path("containerd.sock"))

    @property
    def root(self) -> Path:
        """containerd's ``root`` (content, snapshots, metadata.db)."""
        return self._path("root")

    @property
    def log_path(self) -> Path:
        return self._path("containerd.log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the daemon's log ("" if there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, DaemonError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- start ---------------------------------------------------------------------------------

    def start(self) -> Daemon:
        """Start the daemon and wait until it is healthy.

        Raises:
            DaemonError: no containerd binary, the daemon exited, or it did not become
                healthy within ``start_timeout`` (the message carries the log's tail).
        """
        with self._lock:
            if self._proc is not None:
                raise DaemonError("this Daemon was already started; create a new one")
            binary = self.config.binary or containerd_binary()
            if binary is None:
                raise DaemonError("no containerd binary: apt-get install containerd")
            self.directory = self._make_directory()
            _install_handlers()
            try:
                self._spawn(binary)
                self._wait_healthy()
            except BaseException:
                self.stop()
                raise
        return self

    def _make_directory(self) -> Path:
        base = self.config.base_dir or tempfile.gettempdir()
        directory = Path(tempfile.mkdtemp(prefix="unpacksim-ctrd-", dir=base))
        if len(str(directory / "containerd.sock.ttrpc")) > _SOCKET_MAX:
            shutil.rmtree(directory, ignore_errors=True)
            raise DaemonError(
                f"the daemon directory {directory} is too deep for a unix socket path "
                f"(at most {_SOCKET_MAX} bytes): pass DaemonConfig(base_dir='/tmp')"
            )
        return directory

    def _spawn(self, binary: str) -> None:
        config = self._path("config.toml")
        config.write_text(
            render_config(self._path(""), gc=self.config.gc, log_level=self.config.log_level)
        )
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [binary, "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        with _LIVE_LOCK:
            _LIVE[self._proc.pid] = self
        self._watchdog = threading.Timer(self.config.max_lifetime, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.config.start_timeout
        while True:
            try:
                code = self._proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if self._booted() and self._accepts():
                    return
                if time.monotonic() >= deadline:
                    raise DaemonError(
                        f"containerd did not become healthy within "
                        f"{self.config.start_timeout}s; log tail:\n{self.log_tail()}"
                    ) from None
                continue
            raise DaemonError(
                f"containerd exited with status {code} while starting; log tail:\n{self.log_tail()}"
            )

    def _booted(self) -> bool:
        try:
            return _BOOTED in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            try:
                s.connect(self.address)
            except OSError:
                return False
        return True

    # -- stop ----------------------------------------------------------------------------------

    def _expire(self) -> None:
        self.stop(reason=f"the watchdog stopped it after {self.config.max_lifetime}s")

    def stop(self, reason: str = "stopped") -> None:
        """Stop the daemon and remove its directory; safe to call again, from any thread."""
        with self._lock:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            proc = self._proc
            if proc is not None and not self.stop_reason:
                self.stop_reason = reason
                self._terminate(proc)
                with _LIVE_LOCK:
                    _LIVE.pop(proc.pid, None)
            if self.directory is not None and self.directory.exists():
                for point in _mounts_under(self.directory):
                    _unmount(point)
                if not self.config.keep_dir:
                    shutil.rmtree(self.directory, ignore_errors=True)

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=self.config.stop_timeout)
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5.0)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the daemon process to end; True if it has."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def check_running(self) -> None:
        """Raise :class:`DaemonError` naming why, if the daemon is not running."""
        if not self.running:
            why = self.stop_reason or "it exited"
            raise DaemonError(f"the containerd daemon is not running ({why})")

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
