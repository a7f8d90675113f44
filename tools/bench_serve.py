"""Load generator for `portarun serve`: requests/s and p50/p99 latency at several concurrencies,
with dynamic batching on and off. Loopback only; every level is bounded in requests and seconds.

    python tools/bench_serve.py                          # builtin:mlp on onnxruntime:cpu
    python tools/bench_serve.py --model builtin:cnn --concurrency 1,8,32 --requests 400 --json out.json

It starts a local Ray (num_cpus = this machine's cores), deploys the model once per batching
mode, and drives it from client threads that share the machine with the server: on a small
machine the numbers include that contention (the report carries `uptime`'s load average).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.request

import numpy as np

import portarun
from portarun.plugin import atomic_write_text


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _body(executable: portarun.Executable, dims: dict[str, int]) -> bytes:
    feeds = portarun.random_feeds(executable.inputs, seed=0, dims=dims)
    from portarun.serve.oip import datatype_of

    return json.dumps({"inputs": [{"name": n, "shape": list(a.shape), "datatype": datatype_of(a.dtype),
                                   "data": a.ravel().tolist()} for n, a in feeds.items()]}).encode()


def _drive(url: str, body: bytes, concurrency: int, requests: int, max_seconds: float) -> dict:
    """``requests`` POSTs from ``concurrency`` threads, stopping early after ``max_seconds``."""
    latencies: list[float] = []
    batch_sizes: list[int] = []
    errors = [0]
    lock = threading.Lock()
    remaining = [requests]
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0 or time.monotonic() > deadline:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            try:
                request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    reply = json.loads(response.read())
            except OSError:
                with lock:
                    errors[0] += 1
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                batch_sizes.append(reply.get("parameters", {}).get("portarun_batch_size", 1))

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    ms = np.array(latencies) * 1e3
    return {"concurrency": concurrency, "requests": len(latencies), "errors": errors[0], "seconds": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 1) if wall else 0.0,
            "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
            "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
            "mean_batch": round(float(np.mean(batch_sizes)), 2) if batch_sizes else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:mlp")
    parser.add_argument("-t", "--target", default="onnxruntime:cpu")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=300, help="requests per level (bounded)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="time cap per level")
    parser.add_argument("--max-batch-size", type=int, default=16, help="batch size when batching is on")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE")
    parser.add_argument("--json", dest="json_path", help="write the results to this JSON file")
    args = parser.parse_args()
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    dims.setdefault("batch", 1)
    with portarun.compile(args.model, args.target) as executable:
        body = _body(executable, dims)
    rows = []
    for mode, batch in (("off", 1), ("on", args.max_batch_size)):
        handle = portarun.serve(args.model, args.target, port=_free_port(), max_batch_size=batch,
                                batch_wait_ms=args.batch_wait_ms if batch > 1 else 0.0)
        url = f"{handle.url}/v2/models/{handle.name}/infer"
        try:
            _drive(url, body, 4, 20, 10.0)  # warm-up: connections, the replica's first runs
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                row = {"batching": mode, "max_batch_size": batch,
                       **_drive(url, body, concurrency, args.requests, args.max_seconds)}
                row["load_average"] = [round(x, 2) for x in os.getloadavg()]
                rows.append(row)
                print(f"batching {mode:3}  c={concurrency:3}  {row['requests_per_s']:8.1f} req/s  "
                      f"p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  mean batch {row['mean_batch']}  "
                      f"errors {row['errors']}  load {row['load_average']}", flush=True)
        finally:
            handle.shutdown()
    ray.shutdown()
    if args.json_path:
        report = {"model": args.model, "target": args.target, "cpus": os.cpu_count(), "rows": rows}
        atomic_write_text(args.json_path, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
