"""Load generator: POST one body over keep-alive connections to 127.0.0.1, bounded
in time and count, and print what was answered as one JSON line.

Run as its own process (``python bench/load_client.py ...``) so that its CPU is not
the server's. Every request a thread sends is read to the end before the thread
stops, so "answered" is exactly what the server handled: the prediction log must
then hold exactly that many rows. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/predict")
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    parser.add_argument("--content-type", default="application/json")
    args = parser.parse_args()
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    headers = {"Content-Type": args.content_type}

    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    budget = [args.max_requests]
    deadline = time.monotonic() + args.seconds

    def take() -> bool:
        with lock:
            if budget[0] <= 0 or time.monotonic() >= deadline:
                return False
            budget[0] -= 1
            return True

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=120)
        mine: list[float] = []
        seen: Counter[int] = Counter()
        try:
            while take():
                start = time.perf_counter()
                connection.request("POST", args.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                mine.append(time.perf_counter() - start)
                seen[response.status] += 1
        except (OSError, http.client.HTTPException) as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()
            with lock:
                latencies.extend(mine)
                statuses.update(seen)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    result = {
        "answered": len(latencies),
        "statuses": {str(code): n for code, n in statuses.items()},
        "failures": failures[:5],
        "seconds": elapsed,
        "ended_at": time.time(),
        "p50_ms": latencies[len(latencies) // 2] * 1e3 if latencies else None,
        "p99_ms": latencies[max(int(len(latencies) * 0.99) - 1, 0)] * 1e3 if latencies else None,
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
