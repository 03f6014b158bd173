"""The execution-test runner, both ways: the reference middle passes; an empty or wrong middle,
an endless loop, a network connection and a runaway allocation fail, in a separate process."""

import os

import pytest

from training.evaluate.runner import NETWORK_MESSAGE, RunLimits, program_for, run_program

PROMPT = "from __future__ import annotations\n\n\ndef add(a: int, b: int) -> int:\n"
REFERENCE = "    return a + b\n"
SUFFIX = "\n\nassert add(1, 1) == 2\n"
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def run(middle: str, **limits):
    return run_program(program_for(PROMPT, middle, SUFFIX, TEST, "add"), RunLimits(**limits))


def test_the_reference_passes():
    outcome = run(REFERENCE)
    assert outcome.passed and outcome.status == "passed" and outcome.returncode == 0, \
        outcome.stderr


@pytest.mark.parametrize("middle", ["", "    return a - b\n", "    return a +\n"])
def test_an_empty_or_wrong_middle_fails(middle):
    outcome = run(middle)
    assert not outcome.passed and outcome.status == "failed" and outcome.returncode != 0


def test_an_endless_loop_times_out():
    outcome = run("    while True:\n        pass\n", timeout_s=1.0)
    assert outcome.status == "timeout" and outcome.returncode is None
    assert outcome.seconds < 5


@pytest.mark.parametrize("attempt", [
    "import socket\n    socket.create_connection(('127.0.0.1', 9), timeout=1)\n",
    "import socket\n    socket.socket(socket.AF_INET).connect(('127.0.0.1', 9))\n",
    "import _socket\n    _socket.socket()\n",
    "import urllib.request\n    urllib.request.urlopen('http://127.0.0.1:9/', timeout=1)\n",
])
def test_a_network_connection_fails(attempt):
    outcome = run("    " + attempt + "    return a + b\n")
    assert outcome.status == "failed"
    assert NETWORK_MESSAGE in outcome.stderr


def test_memory_is_limited():
    outcome = run("    blob = bytearray(3 * 1024 ** 3)\n    return a + b\n", memory_mb=512)
    assert outcome.status == "failed" and "MemoryError" in outcome.stderr


def test_a_fresh_directory_and_a_bare_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ASTDIFFUSE_SECRET", "do-not-leak")
    monkeypatch.chdir(tmp_path)
    middle = ("    import os, sys\n"
              "    assert not any('proxy' in k.lower() for k in os.environ), os.environ\n"
              "    assert 'ASTDIFFUSE_SECRET' not in os.environ\n"
              "    assert set(os.listdir('.')) <= {'program.py', 'stdout', 'stderr',\n"
              "                                    'written.txt'}\n"
              "    assert sys.flags.isolated\n"
              "    open('written.txt', 'w').write('x')\n"
              "    return a + b\n")
    outcome = run(middle)
    assert outcome.passed, outcome.stderr
    assert not (tmp_path / "written.txt").exists() and os.listdir(tmp_path) == []
