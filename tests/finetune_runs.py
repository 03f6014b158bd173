"""Helpers of the end-to-end finetune tests: a small source tree, a shard cache built once
in-process, and `python -m training.finetune` run as one process or under torchrun."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STDLIB = Path(sysconfig.get_paths()["stdlib"])
SOURCES = ["bisect.py", "heapq.py", "colorsys.py", "fnmatch.py", "shlex.py", "textwrap.py",
           "queue.py", "sched.py", "stat.py", "glob.py", "keyword.py", "numbers.py"]
QUIET = ["--threads", "1", "--no-progress", "--no-plot"]


def copy_sources(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        if (STDLIB / name).is_file():
            shutil.copy(STDLIB / name, root / name)
    return root


def build_cache(out: Path) -> tuple[Path, Path]:
    """(shard cache, tokenizer) of the smoke recipe on the source tree, built in this process
    (no model, no training): what later runs pass as --data and --tokenizer."""
    from training.finetune.args import DataArgs
    from training.finetune.data import prepare_data

    sources = copy_sources(out / "src")
    data = prepare_data(DataArgs(data=str(sources), vocab_size=1024, seq_len=64, max_files=40),
                        out, None, progress=False)
    return data.cache_dir, data.tokenizer_dir


def _check(result: subprocess.CompletedProcess, check: bool) -> subprocess.CompletedProcess:
    if check and result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}\n{result.stderr[-4000:]}")
    return result


def finetune(*args: str, timeout: float = 240, check: bool = True) -> subprocess.CompletedProcess:
    """One process: python -m training.finetune ARGS."""
    command = [sys.executable, "-m", "training.finetune", *QUIET, *args]
    return _check(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                 timeout=timeout), check)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*args: str, processes: int = 2, timeout: float = 300,
             check: bool = True) -> subprocess.CompletedProcess:
    """`processes` processes on this CPU (gloo): torch.distributed.run -m training.finetune."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "training.finetune", *QUIET, *args]
    return _check(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                 timeout=timeout), check)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    """The summary a run prints last (rank 0's under torchrun)."""
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"steps"')]
    return json.loads(lines[-1])


def records(path: Path, kind: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]
