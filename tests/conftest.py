"""Shared fixtures."""

import pytest

from .paths import EXAMPLES


@pytest.fixture
def sample_py() -> bytes:
    return (EXAMPLES / "sample.py").read_bytes()
