"""Shared fixtures, the order of the suite (slow corpus sweeps last) and reported figures."""

import pytest

from .paths import EXAMPLES

FIGURES: list[tuple[str, object]] = []


@pytest.fixture
def sample_py() -> bytes:
    return (EXAMPLES / "sample.py").read_bytes()


@pytest.fixture
def report_figure():
    """Record a figure (not a threshold) to print in the summary at the end of the run."""

    def report(name: str, value: object) -> None:
        FIGURES.append((name, value))

    return report


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A tiny checkpoint in each published layout (dream, diffucoder, dreamon, open-dcoder,
    coda, llada), built once per test module that asks for them."""
    from engine.benchmarks.published_layouts import LAYOUT_MAKERS, make_checkpoint

    root = tmp_path_factory.mktemp("published-layouts")
    return {name: make_checkpoint(name, root / name) for name in LAYOUT_MAKERS}


@pytest.fixture
def torch_one_thread():
    """Tiny models run fastest on one thread; more only adds contention on a 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "e2e: end to end against a real server process; runs after the unit tests")


def pytest_collection_modifyitems(items):
    # Unit tests first, then end-to-end tests, then the slow sweeps over large corpora.
    items.sort(key=lambda item: (item.get_closest_marker("slow") is not None,
                                 item.get_closest_marker("e2e") is not None))


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("figures")
        for name, value in FIGURES:
            terminalreporter.write_line(f"{name}: {value}")
