"""`python -m lsp_server.bench` against the real server with the tiny overfitted model of
tests/lsp_support.py (keep-anchors on a statement it knows: a valid edit, so the applyEdit path
is timed), one warm run per mode; and its statistics on their own."""

import json
import os
import subprocess
import sys

import pytest

from lsp_server.bench import NO_VALID_INFILL, line_range, percentile, summarize

from .lsp_support import BUFFER, TOTAL_LINE, model_directory
from .paths import ROOT


@pytest.fixture(scope="module")
def model_dir(request, tmp_path_factory):
    return model_directory(request, tmp_path_factory)


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


@pytest.mark.e2e
def test_bench_json_on_the_tiny_model(model_dir, tmp_path):
    document = tmp_path / "prices.py"
    document.write_text(BUFFER, encoding="utf-8")
    line = TOTAL_LINE + 1  # 1-based: `return price + count`
    out = subprocess.run(
        [sys.executable, "-m", "lsp_server.bench", "--model", str(model_dir), "--device", "cpu",
         "--runs", "1", "--file", str(document), "--lines", f"{line}:{line}", "--keep-anchors",
         "--threads", "1", "--timeout", "60", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert {"apply", "preview", "memory", "model", "device", "machine", "startup_ms",
            "model_load_s", "error"} <= set(report)
    assert report["error"] is None and report["server_exit"] == 0
    assert report["model"] == str(model_dir) and report["device"] == "cpu"
    assert report["device_reported"] == "cpu"
    assert report["machine"]["cpu_count"] >= 1 and "processor" in report["machine"]
    assert positive(report["startup_ms"]) and positive(report["model_load_s"])
    assert positive(report["memory"]["peak_rss_mib"]) and report["memory"]["source"]
    for mode in ("apply", "preview"):
        first, warm = report[mode]["first"], report[mode]["warm"]
        assert first["outcome"] == "ok", first  # keep-anchors puts the trained operator back
        assert positive(first["latency_ms"]) and positive(first["response_ms"])
        assert warm["runs"] == 1 and warm["ok"] + warm["no_valid_infill"] == 1
        assert positive(warm["p50_ms"]) and positive(warm["p95_ms"])
        assert warm["p50_ms"] <= warm["p95_ms"]
    assert report["apply"]["first_includes_model_load"] is True
    # the applyEdit comes before the command's answer
    assert report["apply"]["first"]["latency_ms"] <= report["apply"]["first"]["response_ms"]


def test_statistics_count_no_valid_infill_and_time_it():
    runs = [{"outcome": "ok", "latency_ms": 10.0, "engine_ms": 8.0},
            {"outcome": NO_VALID_INFILL, "reason": NO_VALID_INFILL, "latency_ms": 30.0,
             "message": "no valid infill: none of 3 candidates parses"},
            {"outcome": "ok", "latency_ms": 20.0, "engine_ms": 9.0}]
    summary = summarize(runs)
    assert summary["ok"] == 2 and summary["no_valid_infill"] == 1 and summary["errors"] == {}
    assert summary["p50_ms"] == 20.0 and summary["p95_ms"] == pytest.approx(29.0)
    assert summary["failure_messages"] == {"no valid infill: none of 3 candidates parses": 1}
    assert percentile([], 50) is None and percentile([5.0], 95) == 5.0
    assert line_range("a = 1\nb = '\U0001F600'\n", "1:2") == {
        "start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 8}}
    with pytest.raises(ValueError):
        line_range("a = 1\n", "3:4")
