"""SIGTERM and SIGHUP end a run the way Ctrl-C does: an exception unwinds the stack, so every
`except BaseException` / `finally` on the way runs (the hidden `.NAME.partial-PID` build
directory is removed, encoders are closed), and the CLI prints one line and exits 128+signum."""

from __future__ import annotations

import signal
import threading
from types import FrameType

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A termination signal arrived. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way (a verify guard, a loader's fallback) can swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signame = signal.Signals(signum).name
        super().__init__(f"terminated by {self.signame}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal."""
        return 128 + self.signum


def _raise_terminated(signum: int, _frame: FrameType | None) -> None:
    # One unwinding per run: a second signal while the first one cleans up gets the default
    # action (the sender insists), instead of a second exception inside the cleanup.
    for sig in TERMINATING:
        signal.signal(sig, signal.SIG_DFL)
    raise Terminated(signum)


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into `Terminated` in the main thread. A signal the process was
    started with ignored (`nohup` ignores SIGHUP) stays ignored."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in TERMINATING:
        if signal.getsignal(sig) != signal.SIG_IGN:
            signal.signal(sig, _raise_terminated)
