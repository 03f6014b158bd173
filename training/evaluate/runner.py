"""Runs a task's execution test on a completion in a separate, limited Python process, never in
the evaluating one: `python -I` in a fresh temporary directory, with a timeout and no network.

Isolation, in layers (none is a sandbox for hostile code; run untrusted models' output on a
machine or container without network and secrets):
- a subprocess `python -I -X utf8` (no PYTHON* variables, no user site, no current directory on
  sys.path) started in its own session, with a fresh temporary directory as cwd, HOME and TMPDIR
  and a minimal environment (PATH and locale only: no proxies, no credentials);
- resource limits set in the child before it runs (`preexec_fn`): address space (memory), CPU
  seconds, size of files written, no core dumps;
- a guard that runs before the program and makes `socket.socket` (and the helpers that open
  connections or resolve names) raise OSError; it runs the program with `runpy`, so a
  `from __future__` import at the program's top still works;
- a wall-clock timeout, after which the whole process group is killed.
"""

from __future__ import annotations

import functools
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MEMORY_MB = 1024  # address space: plenty for test programs, stops runaway allocations
DEFAULT_FILE_MB = 16  # largest file (stdout / stderr included) the program may write
OUTPUT_TAIL = 2000  # characters of the program's stderr kept in the outcome

NETWORK_MESSAGE = "network access is disabled for evaluated programs"
# Installed before the program runs; then the program runs as __main__ from its own file.
GUARD = f'''\
import socket as _socket_module, _socket, runpy, sys
def _refuse(*args, **kwargs):
    raise OSError({NETWORK_MESSAGE!r})
class _NoSocket(_socket_module.socket):
    def __init__(self, *args, **kwargs):
        _refuse()
for _module in (_socket_module, _socket):
    for _name in ("socket", "SocketType"):
        setattr(_module, _name, _NoSocket)
    for _name in ("create_connection", "create_server", "socketpair", "fromfd", "getaddrinfo",
                  "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        if hasattr(_module, _name):
            setattr(_module, _name, _refuse)
del _module, _name, _socket_module, _socket
_path = sys.argv[1]
sys.argv = [_path]
runpy.run_path(_path, run_name="__main__")
'''


@dataclass(frozen=True)
class RunLimits:
    """What one test run may use."""

    timeout_s: float = DEFAULT_TIMEOUT_S  # wall clock; the process group is killed after it
    memory_mb: int = DEFAULT_MEMORY_MB  # RLIMIT_AS
    file_mb: int = DEFAULT_FILE_MB  # RLIMIT_FSIZE


@dataclass(frozen=True)
class RunOutcome:
    """How a test program ended."""

    status: str  # passed | failed | timeout
    returncode: int | None  # None after a timeout
    seconds: float
    stderr: str  # the tail of its standard error (the traceback of a failure)

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def program_for(prompt: str, completion: str, suffix: str, test: str,
                entry_point: str) -> str:
    """The program a completion is judged by, as the HumanEval-Infilling harness builds it."""
    return prompt + completion + suffix + "\n" + test + "\n" + f"check({entry_point})\n"


def run_program(program: str, limits: RunLimits = RunLimits()) -> RunOutcome:
    """Run `program` in a fresh, limited subprocess; passed when it exits with status 0."""
    with tempfile.TemporaryDirectory(prefix="astdiffuse-eval-") as tmp:
        work = Path(tmp)
        (work / "program.py").write_text(program, encoding="utf-8")
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": tmp,
               "TMPDIR": tmp}
        began = time.monotonic()
        with open(work / "stdout", "wb") as out, open(work / "stderr", "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-I", "-X", "utf8", "-c", GUARD, "program.py"], cwd=tmp,
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True, close_fds=True,
                preexec_fn=functools.partial(_limit, limits))
            try:
                returncode: int | None = process.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                returncode = None
        seconds = time.monotonic() - began
        stderr = (work / "stderr").read_bytes()[-4 * OUTPUT_TAIL:].decode("utf-8", "replace")
    if returncode is None:
        status = "timeout"
    else:
        status = "passed" if returncode == 0 else "failed"
    return RunOutcome(status, returncode, round(seconds, 3), stderr[-OUTPUT_TAIL:])


def _limit(limits: RunLimits) -> None:
    """In the child, before exec: hard limits, so the program cannot raise them again."""
    cpu = int(limits.timeout_s) + 2  # CPU time never exceeds wall time; this catches spinners
    for which, value in ((resource.RLIMIT_AS, limits.memory_mb * 1024 * 1024),
                         (resource.RLIMIT_CPU, cpu),
                         (resource.RLIMIT_FSIZE, limits.file_mb * 1024 * 1024),
                         (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the program and anything it started
    except ProcessLookupError:
        pass
    process.wait()
