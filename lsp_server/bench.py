"""Latency and memory benchmark of the Language Server, end to end over stdio.

    python -m lsp_server.bench [--model DIR] [--device D] [--runs N] [--file PATH]
                               [--lines A:B] [--keep-anchors] [--json] ...

Starts the real server process (`python -m lsp_server`, this interpreter) and plays the editor
with pygls' `LanguageClient`: `initialize` with the `astdiffuse` settings in
`initializationOptions` (and the same section as the answer to `workspace/configuration`),
`initialized`, `textDocument/didOpen` of --file, then `workspace/executeCommand
astdiffuse.diffuseBlock` on the range --lines selects (1-based, inclusive, as in `python -m
engine spans`), one request at a time:

1. apply (`apply: true`): the time from sending the command to receiving the server's
   `workspace/applyEdit` request - what the user waits for until the buffer changes. The
   first run is cold: with `loadModel: "lazy"` (the default) it includes the model load. Then
   --runs warm runs (p50 / p95). The client answers `applied: true` but keeps its buffer as it
   was (it sends no didChange), so every run infills the same text.
2. preview (`apply: false`): the time from sending the command to its answer (every
   candidate). A first run, then --runs warm runs; the model is already loaded by then.

A run whose answer is "no valid infill" (no candidate parses and keeps the node kinds) sends no
applyEdit: it is timed to the error answer, counted (`no_valid_infill`) and kept in the
percentiles, and its reason recorded. Any other error stops the benchmark (a model that does
not load, a bad range): the JSON still comes out, with `error`, and the exit status is 1.
Each request has a timeout (--timeout; on expiry `$/cancelRequest` is sent and the benchmark
stops), and the server is always shut down (shutdown + exit, killed if it does not go).

Memory: the server process's peak resident set, `VmHWM` of /proc/PID/status just before
shutdown (Linux), else the largest child's `ru_maxrss` after it exited.

Prints JSON with --json (keys: apply, preview, memory, startup_ms, model_load_s, model,
model_reported, device, device_reported, settings, file, lines, keep_anchors, mode, runs,
threads, machine, server_log, error), else a short summary. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from lsprotocol import types
from lsprotocol.converters import get_converter
from pygls.exceptions import JsonRpcException
from pygls.lsp.client import LanguageClient

from . import __version__

ROOT = Path(__file__).resolve().parent.parent
COMMAND = "astdiffuse.diffuseBlock"
NO_VALID_INFILL = "noValidInfill"
TIMEOUT = "timeout"
SHUTDOWN_TIMEOUT_S = 15.0
CONVERTER = get_converter()


def default_model_dir() -> Path:
    """`engine.infill.DEFAULT_MODEL_DIR` without importing torch into the benchmark's process."""
    spec = importlib.util.find_spec("engine")
    base = Path(spec.origin).parent if spec and spec.origin else ROOT / "engine"
    return base / "default_model"


# -- the selection ----------------------------------------------------------------------------

def line_range(text: str, spec: str) -> dict:
    """--lines A:B (1-based, inclusive; 'A' alone: one line) -> an LSP Range in UTF-16 units,
    from the start of line A to the end of line B (its newline excluded)."""
    first, _, last = spec.partition(":")
    try:
        start = int(first)
        end = int(last) if last else start
    except ValueError:
        raise ValueError(f"--lines {spec!r}: expected A:B, two 1-based line numbers") from None
    lines = text.split("\n")
    if start < 1 or end < start or end > len(lines):
        raise ValueError(f"--lines {spec}: the file has {len(lines)} lines; A:B needs "
                         "1 <= A <= B <= that")
    width = len(lines[end - 1].encode("utf-16-le")) // 2
    return {"start": {"line": start - 1, "character": 0},
            "end": {"line": end - 1, "character": width}}


# -- statistics -------------------------------------------------------------------------------

def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100), linear between the closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summarize(runs: list[dict]) -> dict:
    """Warm runs -> counts of each outcome and the latency percentiles over all timed runs
    (a "no valid infill" is timed too: the user waited that long for it)."""
    timed = [run["latency_ms"] for run in runs if run.get("latency_ms") is not None]
    engine = [run["engine_ms"] for run in runs if run.get("engine_ms") is not None]
    errors: dict[str, int] = {}
    messages: dict[str, int] = {}  # why runs failed (no valid infill included), how often
    for run in runs:
        if run["outcome"] == "error":
            errors[run["reason"]] = errors.get(run["reason"], 0) + 1
        if run["outcome"] != "ok":
            message = run.get("message") or run["reason"]
            messages[message] = messages.get(message, 0) + 1
    return {
        "runs": len(runs),
        "ok": sum(run["outcome"] == "ok" for run in runs),
        "no_valid_infill": sum(run["outcome"] == NO_VALID_INFILL for run in runs),
        "errors": errors,
        "failure_messages": messages,
        "p50_ms": _ms(percentile(timed, 50)),
        "p95_ms": _ms(percentile(timed, 95)),
        "mean_ms": _ms(sum(timed) / len(timed)) if timed else None,
        "min_ms": _ms(min(timed)) if timed else None,
        "max_ms": _ms(max(timed)) if timed else None,
        "engine_p50_ms": _ms(percentile(engine, 50)),
        "latencies_ms": [_ms(value) for value in timed],
    }


# -- memory -----------------------------------------------------------------------------------

def proc_status_kib(pid: int, field: str) -> int | None:
    """A `VmHWM:`-style field of /proc/PID/status in KiB, or None (not Linux, process gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def children_maxrss_kib() -> int | None:
    """The largest waited-for child's peak RSS (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if not peak:
        return None
    return peak // 1024 if sys.platform == "darwin" else peak


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# -- the editor ---------------------------------------------------------------------------------

class BenchClient:
    """A LanguageClient that answers what the server asks (configuration, progress tokens,
    registration, applyEdit) and timestamps the applyEdit request of the run in flight."""

    def __init__(self, section: dict):
        self.section = section
        self.client = LanguageClient("astdiffuse-bench", __version__)
        self.apply_received: float | None = None  # perf_counter of the last applyEdit
        self.apply_edits = 0
        self.messages: list[str] = []
        self._requests = 0
        client = self.client

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def apply_edit(params):
            self.apply_received = time.perf_counter()
            self.apply_edits += 1
            return types.ApplyWorkspaceEditResult(applied=True)

        @client.feature(types.WORKSPACE_CONFIGURATION)
        def configuration(params):
            return [self.section for _ in params.items]

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(params):
            return None

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create_progress(params):
            return None

        @client.feature(types.PROGRESS)
        def progress(params):
            pass

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show_message(params):
            self.messages.append(params.message)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log_message(params):
            pass

        @client.feature("astdiffuse/trajectory")
        def trajectory(params):
            pass

    @property
    def process(self):
        return self.client._server  # asyncio.subprocess.Process (pygls keeps it there)

    @staticmethod
    def capabilities() -> types.ClientCapabilities:
        """What an editor sends: UTF-16, progress, configuration, versioned edits, resolve."""
        raw = {
            "general": {"positionEncodings": ["utf-16"]},
            "window": {"workDoneProgress": True},
            "workspace": {"applyEdit": True, "configuration": True,
                          "workspaceEdit": {"documentChanges": True},
                          "didChangeConfiguration": {"dynamicRegistration": True}},
            "textDocument": {"codeAction": {
                "codeActionLiteralSupport": {"codeActionKind": {"valueSet": [
                    "refactor", "refactor.rewrite", "quickfix"]}},
                "resolveSupport": {"properties": ["edit"]}},
                "synchronization": {"dynamicRegistration": False}},
        }
        return CONVERTER.structure(raw, types.ClientCapabilities)

    async def run_command(self, arguments: dict, apply: bool, timeout: float) -> dict:
        """One diffuseBlock request -> a run record: outcome (ok | noValidInfill | error),
        latency_ms (to the applyEdit for apply, to the answer otherwise), response_ms, the
        server's own engine time, and the error's reason and message when there is one."""
        self._requests += 1
        msg_id = f"bench-{self._requests}"
        self.apply_received = None
        params = types.ExecuteCommandParams(command=COMMAND, arguments=[{**arguments,
                                                                         "apply": apply}])
        began = time.perf_counter()
        future = self.client.protocol.send_request_async(types.WORKSPACE_EXECUTE_COMMAND,
                                                         params, msg_id=msg_id)
        record: dict[str, Any] = {"outcome": "ok"}
        try:
            # shielded: pygls resolves the request's future when the (late) answer comes,
            # which must not find it cancelled
            result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            future.add_done_callback(lambda late: late.cancelled() or late.exception())
            self.client.cancel_request(types.CancelParams(id=msg_id))
            return {"outcome": "error", "reason": TIMEOUT, "latency_ms": None,
                    "response_ms": None,
                    "message": f"no answer in {timeout:g} s (sent $/cancelRequest)"}
        except JsonRpcException as err:
            data = err.data if isinstance(err.data, dict) else {}
            reason = data.get("reason") or f"code {err.code}"
            record = {"outcome": NO_VALID_INFILL if reason == NO_VALID_INFILL else "error",
                      "reason": reason, "code": err.code, "message": err.message}
            result = None
        answered = time.perf_counter()
        record["response_ms"] = round((answered - began) * 1000, 2)
        if apply and record["outcome"] == "ok":
            if self.apply_received is None:
                record.update(outcome="error", reason="noApplyEdit",
                              message="the command succeeded without a workspace/applyEdit")
                record["latency_ms"] = None
            else:
                record["latency_ms"] = round((self.apply_received - began) * 1000, 2)
        else:
            record["latency_ms"] = record["response_ms"]
        if isinstance(result, dict):
            record.update(engine_ms=result.get("totalMs"), steps=result.get("steps"),
                          model=result.get("model"), device=result.get("device"),
                          candidates=len(result.get("candidates") or []))
        return record


# -- the benchmark ------------------------------------------------------------------------------

def settings_section(args: argparse.Namespace) -> dict:
    section: dict[str, Any] = {"model": str(Path(args.model).expanduser().resolve())
                               if args.model else None,
                               "device": args.device, "loadModel": args.load_model}
    if args.steps is not None:
        section["steps"] = args.steps
    if args.temperature is not None:
        section["temperature"] = args.temperature
    if args.candidates is not None:
        section["candidates"] = args.candidates
    return section


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def benchmark(args: argparse.Namespace, log_file: Path) -> dict:
    path = Path(args.file).expanduser().resolve()
    text = path.read_text(encoding="utf-8")
    rng = line_range(text, args.lines)
    uri = path.as_uri()
    section = settings_section(args)
    bench = BenchClient(section)
    client = bench.client
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    report: dict[str, Any] = {"settings": section, "error": None}
    timeout = args.timeout
    began = time.perf_counter()
    await client.start_io(sys.executable, "-m", "lsp_server", "--log-file", str(log_file),
                          env=env, cwd=str(ROOT))
    pid = bench.process.pid
    try:
        await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=bench.capabilities(), process_id=os.getpid(),
            initialization_options={"astdiffuse": section}, root_uri=path.parent.as_uri())),
            timeout)
        client.initialized(types.InitializedParams())
        report["startup_ms"] = round((time.perf_counter() - began) * 1000, 2)
        report["memory"] = {"rss_after_initialize_mib": _mib(proc_status_kib(pid, "VmRSS"))}
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=args.language or "",
                                                 version=1, text=text)))
        arguments: dict[str, Any] = {"uri": uri, "ranges": [rng], "mode": args.mode,
                                     "keepAnchors": args.keep_anchors}
        if args.candidates is not None:
            arguments["candidates"] = args.candidates
        for mode, apply in (("apply", True), ("preview", False)):
            label = "cold" if apply else "first"
            runs: list[dict] = []
            for number in range(args.runs + 1):
                record = await bench.run_command(arguments, apply, timeout)
                _progress(f"{mode} {label if number == 0 else f'warm {number}/{args.runs}'}: "
                          f"{record['outcome']} {record['latency_ms']} ms"
                          + (f" ({record['reason']})" if record.get("reason") else ""))
                runs.append(record)
                if record["outcome"] == "error":
                    report["error"] = {"mode": mode, "run": number, "reason": record["reason"],
                                       "message": record.get("message")}
                    break
            report[mode] = {"first": runs[0], "first_includes_model_load":
                            apply and args.load_model == "lazy",
                            "warm": summarize(runs[1:])}
            for record in runs:  # what the server says it ran (a successful answer)
                for key in ("model", "device"):
                    if report.get(f"{key}_reported") is None and record.get(key):
                        report[f"{key}_reported"] = record[key]
            if report["error"]:
                break
        report["memory"]["peak_rss_mib"] = _mib(proc_status_kib(pid, "VmHWM"))
        report["memory"]["rss_at_end_mib"] = _mib(proc_status_kib(pid, "VmRSS"))
        report["memory"]["source"] = "VmHWM" if report["memory"]["peak_rss_mib"] else None
    finally:
        report["server_exit"] = await shut_down(bench)
    if not report["memory"].get("peak_rss_mib"):
        report["memory"].update(peak_rss_mib=_mib(children_maxrss_kib()),
                                source="ru_maxrss (children)")
    report["shown_messages"] = bench.messages[-5:]
    return report


async def shut_down(bench: BenchClient) -> int | None:
    """shutdown + exit, then wait; kill the server (ours) if it does not go. Its exit status."""
    client, process = bench.client, bench.process
    if process is None:
        return None
    try:
        if process.returncode is None:
            await asyncio.wait_for(client.shutdown_async(None), SHUTDOWN_TIMEOUT_S)
            client.exit(None)
            await asyncio.wait_for(process.wait(), SHUTDOWN_TIMEOUT_S)
    except (asyncio.TimeoutError, JsonRpcException, ConnectionError, RuntimeError) as err:
        _progress(f"the server did not shut down cleanly ({type(err).__name__}: {err}); "
                  "killing it")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        try:
            await asyncio.wait_for(client.stop(), SHUTDOWN_TIMEOUT_S)
        except Exception as err:  # noqa: BLE001 - the process is gone either way
            _progress(f"stopping the client: {type(err).__name__}: {err}")
    return process.returncode


def model_load_seconds(log_text: str) -> float | None:
    """The server log's "model ... loaded on DEVICE in X s" (engine_host), if it loaded."""
    found = re.findall(r"model .* loaded on \S+ in ([0-9.]+) s", log_text)
    return float(found[0]) if found else None


def machine() -> dict:
    info = {"processor": platform.processor() or platform.machine(),
            "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}
    for package in ("torch", "pygls"):
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            info[package] = None
    return info


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() \
        else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lsp_server.bench",
        description="Time \"Diffuse this block\" end to end against the real Language Server "
                    "over stdio (apply: time to workspace/applyEdit; preview: time to the "
                    "answer), cold and warm, and its peak memory.")
    parser.add_argument("--model", metavar="DIR",
                        help="model directory (default: none, the shipped default model "
                             f"{default_model_dir()})")
    parser.add_argument("--device", default="auto",
                        help="the device setting: auto, cpu, cuda, cuda:N (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5,
                        help="warm runs per mode after the first (default: %(default)s)")
    parser.add_argument("--file", default=str(ROOT / "examples" / "sample.py"),
                        help="the document to open (default: examples/sample.py)")
    parser.add_argument("--lines", default="21:23", metavar="A:B",
                        help="the selection, 1-based inclusive lines (default: %(default)s)")
    parser.add_argument("--language", help="the document's languageId (default: none, the "
                                           "server goes by the file extension)")
    parser.add_argument("--mode", choices=("node", "block"), default="node",
                        help="the command's mode (default: %(default)s)")
    parser.add_argument("--keep-anchors", action="store_true",
                        help="keep keywords and identifiers (the \"keep structure\" action)")
    parser.add_argument("--candidates", type=int, help="candidates (default: the setting, 3)")
    parser.add_argument("--steps", type=int, help="the steps setting (default: the engine's)")
    parser.add_argument("--temperature", type=float, help="the temperature setting")
    parser.add_argument("--load-model", choices=("lazy", "start"), default="lazy",
                        help="the loadModel setting (default: %(default)s: the first apply "
                             "run includes the model load)")
    parser.add_argument("--threads", type=int,
                        help="OMP_NUM_THREADS / MKL_NUM_THREADS for the server (default: "
                             "inherited)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds per request, initialize included (default: %(default)s)")
    parser.add_argument("--log-file", help="keep the server log here (default: a temporary "
                                           "file, removed)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def print_summary(report: dict) -> None:
    print(f"model {report['model']} on {report['device_reported'] or report['device']}, "
          f"{report['machine']['processor']} ({report['machine']['cpu_count']} CPUs)")
    for mode in ("apply", "preview"):
        if mode not in report:
            continue
        first, warm = report[mode]["first"], report[mode]["warm"]
        print(f"{mode:8} first {first['latency_ms']} ms ({first['outcome']}); warm x"
              f"{warm['runs']}: p50 {warm['p50_ms']} ms, p95 {warm['p95_ms']} ms, "
              f"ok {warm['ok']}, no valid infill {warm['no_valid_infill']}")
    memory = report["memory"]
    print(f"peak RSS {memory.get('peak_rss_mib')} MiB ({memory.get('source')}); startup "
          f"{report.get('startup_ms')} ms; model load {report.get('model_load_s')} s")
    if report["error"]:
        print(f"error: {report['error']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if not Path(args.file).expanduser().is_file():
        parser.error(f"--file {args.file}: no such file")
    try:
        line_range(Path(args.file).expanduser().read_text(encoding="utf-8"), args.lines)
    except (ValueError, UnicodeDecodeError) as err:
        parser.error(str(err))
    with tempfile.TemporaryDirectory(prefix="astdiffuse-bench-") as scratch:
        log_file = Path(args.log_file) if args.log_file else Path(scratch) / "server.log"
        try:
            report = asyncio.run(benchmark(args, log_file))
        except Exception as err:  # noqa: BLE001 - reported with the log's tail
            log = log_file.read_text(encoding="utf-8", errors="replace") \
                if log_file.is_file() else ""
            print(f"benchmark failed: {type(err).__name__}: {err}\n{log[-3000:]}",
                  file=sys.stderr)
            return 1
        log_text = log_file.read_text(encoding="utf-8", errors="replace") \
            if log_file.is_file() else ""
    report = {
        "model": str(Path(args.model).expanduser().resolve()) if args.model
        else str(default_model_dir()),
        "model_is_default": not args.model,
        "model_reported": report.pop("model_reported", None),
        "device": args.device,
        "device_reported": report.pop("device_reported", None),
        "file": str(Path(args.file).expanduser().resolve()), "lines": args.lines,
        "mode": args.mode, "keep_anchors": args.keep_anchors, "runs": args.runs,
        "threads": args.threads, "model_load_s": model_load_seconds(log_text),
        **report,
        "server_log": args.log_file,
        "machine": machine(),
    }
    device = report["device_reported"] or args.device
    if str(device).startswith("cuda"):
        report["machine"]["gpu"] = gpu_name()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_summary(report)
    return 1 if report["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
