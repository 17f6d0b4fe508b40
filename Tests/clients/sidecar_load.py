#!/usr/bin/env python3
"""Load on the sidecar: the probe's latency idle, then under load.

usage: sidecar_load.py BASE_URL SECONDS CLIENTS PATH [PATH ...]

Phase 1 (idle): 200 GETs of /health/models one after the other. Phase 2: CLIENTS threads, each
on its own keep-alive connection, GET the PATHs round robin for SECONDS while a prober GETs
/health/models every 50 ms. Latencies are timed inside this process (time.perf_counter around
one request on an open connection). Prints one JSON object: idle and loaded p50/p99 (ms),
responses by status, requests per second. Only for 127.0.0.1.
"""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse


def percentile(values, p):
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def get(conn, path):
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def main():
    base, seconds, clients, paths = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    url = urlparse(base)
    assert url.hostname == "127.0.0.1", "loopback only"

    # A heavy request may wait long behind the others (64 clients on a small machine): the
    # question is whether every answer is a 200, so the client waits up to two minutes for it.
    def connect():
        return http.client.HTTPConnection(url.hostname, url.port, timeout=120)

    probe = connect()
    idle = []
    for _ in range(200):
        started = time.perf_counter()
        assert get(probe, "/health/models") == 200
        idle.append((time.perf_counter() - started) * 1000)

    statuses, lock, stop = {}, threading.Lock(), threading.Event()
    loaded, requests = [], [0]

    def client(index):
        conn = connect()
        i = index
        while not stop.is_set():
            path = paths[i % len(paths)]
            i += 1
            try:
                status = get(conn, path)
            except Exception as error:  # a refused or reset connection is an answer too
                status = type(error).__name__
                conn.close()
                conn = connect()
            with lock:
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                requests[0] += 1

    def prober():
        nonlocal probe
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = get(probe, "/health/models")
            except Exception as error:
                status = type(error).__name__
                probe.close()
                probe = connect()
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                loaded.append(elapsed)
                statuses["probe " + str(status)] = statuses.get("probe " + str(status), 0) + 1
            time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    threads.append(threading.Thread(target=prober, daemon=True))
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=150)
    elapsed = time.perf_counter() - began
    print(json.dumps({
        "idle_p50_ms": percentile(idle, 50), "idle_p99_ms": percentile(idle, 99),
        "loaded_p50_ms": percentile(loaded, 50), "loaded_p99_ms": percentile(loaded, 99),
        "probes_under_load": len(loaded), "statuses": statuses,
        "requests": requests[0], "requests_per_second": requests[0] / elapsed, "seconds": elapsed, "clients": clients,
    }))


if __name__ == "__main__":
    main()
