"""Whether a process still runs, and when it started (ingest marks, metrics of workers)."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Windows API numbers (winnt.h, winbase.h, winerror.h) for asking whether a process runs.
SYNCHRONIZE = 0x00100000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
WAIT_TIMEOUT = 258  # WaitForSingleObject: the process has not ended
# The signals that end a process without running its `finally` blocks: a supervisor's stop
# (systemd, Kubernetes, `timeout`) and a closed terminal. Ctrl-C raises KeyboardInterrupt.
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


def end_as_signal(signum: int) -> None:
    """End this process as signal ``signum`` would have, with its default action (a shell
    then reports 128 + signum: 143 for SIGTERM), after a handler did what had to come first."""
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


@contextlib.contextmanager
def removed_if_stopped(path: Path | str) -> Iterator[None]:
    """While the block runs, a SIGTERM or SIGHUP removes ``path`` (a file or folder being
    written: a partial export, a copy of stdin, a model's cache file) before the process ends
    as that signal: it ended at once and left it behind. Only a signal that would end the
    process at once is taken: one it ignores (`nohup`) stays ignored, and one it handles (the
    server's graceful stop, training's stop after a step) is left to that handler."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def remove_then_end(signum: int, frame: Any) -> None:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)
        end_as_signal(signum)

    previous: dict[int, Any] = {}
    for name in STOP_SIGNALS:
        signum = getattr(signal, name, None)  # Windows has no SIGHUP
        if signum is not None and signal.getsignal(signum) is signal.SIG_DFL:
            previous[signum] = signal.signal(signum, remove_then_end)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (under any user)."""
    if os.name == "nt":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except PermissionError:
        return True  # it exists, under another user
    except OSError:
        return False
    return True


def _windows_process_alive(pid: int) -> bool:
    """Asked through a process handle: on Windows ``os.kill(pid, 0)`` sends CTRL_C_EVENT to a
    console process group (it could stop a server scraping its workers' liveness)."""
    winapi: Any = importlib.import_module("_winapi")  # imported by name: Windows has it only
    try:
        handle = winapi.OpenProcess(SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    except PermissionError:  # ERROR_ACCESS_DENIED: it runs, under another user
        return True
    except OSError:  # ERROR_INVALID_PARAMETER: no process has that id
        return False
    try:
        return bool(winapi.WaitForSingleObject(handle, 0) == WAIT_TIMEOUT)
    finally:
        winapi.CloseHandle(handle)


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux; None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from its last ")".
    fields = stat.rsplit(")", 1)[-1].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None
