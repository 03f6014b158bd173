"""Throughput of the remote engine under concurrent clients, with dynamic batching and without.

    python -m engine.serve.bench [--model DIR] [--device cpu] [--clients 1,4,16]
                                 [--max-batch 16,1] [--requests 2] [--json]

For each --max-batch value a real `python -m engine.serve` process is started on loopback
(`--max-batch 1` turns batching off: requests run one after another). For each --clients count,
that many threads each open their own `RemoteEngine` and send --requests infills one after the
other: single statements of the stdlib's TEST split (the spans `engine.bench` uses), default
options with candidates=1. One warm-up request per server is not counted. Reports per run:
wall time, requests per second, latency p50/p95 (send to result, queueing included), and the
server's batch counters (how many batches ran, the mean and largest batch). JSON with --json
(`runs`, `batching_gain`: requests/s with batching over without, per client count).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ..bench import select_spans, stdlib_test_files
from ..infill import DEFAULT_MODEL_DIR, ByteRange, InfillOptions, InfillRequest
from .client import RemoteEngine

ROOT = Path(__file__).resolve().parents[2]


def start_server(model: str, device: str, max_batch: int, threads: int | None
                 ) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.serve", "--port", "0", "--model", model, "--device",
         device, "--max-batch", str(max_batch), "--max-queued", "1024",
         "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if "listening on" not in line:
        process.kill()
        raise RuntimeError(f"engine.serve did not start (it printed {line!r})")
    port = int(line.split()[2].rsplit(":", 1)[1])
    return process, port


def run_clients(port: int, requests: list[InfillRequest], clients: int, per_client: int
                ) -> tuple[float, list[float]]:
    """Wall seconds for `clients` threads sending `per_client` requests each, and every
    request's latency in ms."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        remote = RemoteEngine(f"astdiffuse://127.0.0.1:{port}", connect_timeout=30)
        try:
            remote.connect()
            start.wait()
            for k in range(per_client):
                request = requests[(index * per_client + k) % len(requests)]
                began = time.perf_counter()
                remote.infill(request)
                with lock:
                    latencies.append((time.perf_counter() - began) * 1000)
        except BaseException as err:  # noqa: BLE001 - reported after the run
            errors.append(err)
        finally:
            remote.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed: {errors[0]!r}")
    return wall, latencies


def in_process(engine, spans, count: int) -> dict:
    """Seconds for `count` requests (the first spans) one by one and as one batch, after a
    warm-up request; repair off, so only the shared forward passes differ."""
    requests = [InfillRequest(Path(s.path).read_text(encoding="utf-8"), "python",
                              [ByteRange(s.cursor, s.cursor)],
                              options=InfillOptions(candidates=1, repair_rounds=0))
                for s in spans[:count]]
    engine.infill(requests[0])
    began = time.perf_counter()
    for request in requests:
        engine.infill(request)
    alone = time.perf_counter() - began
    began = time.perf_counter()
    engine.infill_many(requests)
    batched = time.perf_counter() - began
    return {"requests": len(requests), "one_by_one_s": round(alone, 3),
            "batched_s": round(batched, 3), "batched_over_one_by_one": round(batched / alone, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.serve.bench",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", default="1,4,16", help="client counts (default 1,4,16)")
    parser.add_argument("--max-batch", default="16,1",
                        help="server --max-batch values (default 16,1: batching on, off)")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--spans", type=int, default=16, help="distinct spans to cycle through")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="the server's CPU threads")
    parser.add_argument("--in-process", type=int, default=0, metavar="N",
                        help="instead: in this process, N requests through infill_many as one "
                             "batch against the same N one by one (no server, no repair)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    client_counts = [int(n) for n in args.clients.split(",")]
    batch_sizes = [int(n) for n in args.max_batch.split(",")]

    from ..infill import InfillEngine  # for its tokenizer: the spans need a canvas budget

    local = InfillEngine.load(args.model, device="cpu")
    budget = min(InfillOptions().context_tokens, local.max_tokens or 10 ** 9)
    spans = select_spans(stdlib_test_files(), local, args.spans, args.seed, budget)
    if args.in_process:
        report = in_process(local, spans, args.in_process)
        print(json.dumps(report, indent=1))
        return 0
    del local
    requests = []
    for span in spans:
        text = Path(span.path).read_text(encoding="utf-8")
        requests.append(InfillRequest(text, "python", [ByteRange(span.cursor, span.cursor)],
                                      options=InfillOptions(candidates=1)))
    runs = []
    for max_batch in batch_sizes:
        process, port = start_server(args.model, args.device, max_batch, args.threads)
        try:
            probe = RemoteEngine(f"astdiffuse://127.0.0.1:{port}", connect_timeout=30)
            probe.infill(requests[0])  # warm-up, not counted
            for clients in client_counts:
                before = probe.info()
                print(f"serve.bench: max_batch {max_batch}, {clients} client(s)",
                      file=sys.stderr, flush=True)
                wall, latencies = run_clients(port, requests, clients, args.requests)
                after = probe.info()
                batches = after["batches"] - before["batches"]
                served = after["requests"] - before["requests"]
                runs.append({
                    "max_batch": max_batch, "clients": clients, "requests": len(latencies),
                    "wall_s": round(wall, 2),
                    "throughput_rps": round(len(latencies) / wall, 3),
                    "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 1),
                                   "p95": round(float(np.percentile(latencies, 95)), 1)},
                    "batches": batches, "mean_batch": round(served / max(1, batches), 2),
                    "largest_batch_so_far": after["largest_batch"]})
            probe.close()
        finally:
            process.terminate()
            process.wait(timeout=30)
    gain = {}
    for clients in client_counts:
        rates = {r["max_batch"]: r["throughput_rps"] for r in runs if r["clients"] == clients}
        if len(rates) > 1 and min(rates) == 1 and rates[1] > 0:
            gain[str(clients)] = round(rates[max(rates)] / rates[1], 2)
    report = {"runs": runs, "batching_gain": gain, "model": args.model,
              "device": args.device, "spans": len(requests),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
                         f"{platform.processor() or platform.platform()}"}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print("| max batch | clients | requests | req/s | p50 ms | p95 ms | mean batch |")
        print("|---|---|---|---|---|---|---|")
        for r in runs:
            print(f"| {r['max_batch']} | {r['clients']} | {r['requests']} | "
                  f"{r['throughput_rps']} | {r['latency_ms']['p50']} | "
                  f"{r['latency_ms']['p95']} | {r['mean_batch']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
