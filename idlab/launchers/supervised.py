"""Start a command that dies with its parent: `python -m idlab.launchers.supervised PARENT_PID COMMAND [ARG…]`.

`idlab serve` starts the API and the worker through this, so that even when serve
itself is killed (SIGKILL: no chance to clean up) they receive SIGTERM and stop —
no orphan keeps the port or a run. On Linux the kernel does it (PR_SET_PDEATHSIG,
kept across exec); elsewhere the command just runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))


def main(argv: list[str]) -> None:
    parent, command = int(argv[0]), argv[1:]
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was told to watch it
        sys.exit(1)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
