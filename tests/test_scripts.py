"""The shell scripts under scripts/ at least parse (their DRY run is in docs/gpu.md; it takes
minutes, so the suite does not run it)."""

import subprocess

import pytest

from .paths import ROOT

SCRIPTS = sorted((ROOT / "scripts").glob("*.sh"))


def test_there_are_scripts():
    assert {p.name for p in SCRIPTS} >= {"device_checks.sh", "device_wheels.sh"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_the_script_parses(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
