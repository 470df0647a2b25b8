"""Child processes of `prunescape serve` that end when it ends, even when it is killed with SIGKILL
(and so runs no clean-up): its private redis-server and its worker.

On Linux the kernel does this: a process that set PR_SET_PDEATHSIG is sent that signal when its
parent dies. The setting is cleared by fork, so it is set in the child itself, between fork and
exec, by a few lines of Python that then exec the real command (the setting survives exec). Not a
`preexec_fn`: serve starts a new worker from its reconciler thread while uvicorn's threads run, and
Python code between fork and exec in a threaded process can deadlock. The signal is sent when the
*thread* that started the child ends: serve starts them from its main thread, or from the
reconciler thread, which lives as long as the service.

Elsewhere (macOS) the command runs as given; serve still stops its children on SIGINT / SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
# argv: parent pid, signal number, command...
LAUNCHER = (
    "import ctypes, os, sys\n"
    "parent, sig = int(sys.argv[1]), int(sys.argv[2])\n"
    f"if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, sig) != 0:\n"
    "    sys.exit('prctl(PR_SET_PDEATHSIG) failed: %s' % os.strerror(ctypes.get_errno()))\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(0)  # the parent died before the signal was armed: do not start at all\n"
    "os.execvp(sys.argv[3], sys.argv[3:])\n"
)


def dying_with_parent(command: Sequence[str], sig: signal.Signals = signal.SIGTERM) -> list[str]:
    """`command` wrapped so that the process gets `sig` when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return list(command)
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, str(os.getpid()), str(int(sig)), *command]
