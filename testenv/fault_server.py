#!/usr/bin/env python3
"""An HTTP/1.1 origin that misbehaves on purpose, for wanfs robustness tests (stdlib only).

Serves files from ROOT; the first path segment picks a behaviour applied to the rest:

  /ok/<file>                      correct 200 / 206 / 416, HEAD
  /close-mid-body/<file>?times=K  promise N bytes, send about N/2, close (first K requests)
  /error-then-ok/<file>?status=500&times=K    that status K times, then normal
  /retry-after/<file>?status=429&seconds=1&times=K   status + Retry-After K times, then normal
  /wrong-range/<file>             206 whose Content-Range (and bytes) are shifted by +1
  /short/<file>                   Content-Length N, sends N-10 bytes, closes (always)
  /ignore-range/<file>            200 + whole file even for Range requests
  /slow/<file>?bps=1000           trickles the body at that rate
  /hang/<file>                    reads the request, never answers, until the client closes
  /freeze/<file>?after=N          a correct answer that stops after N body bytes (default: half
                                  the range) and then sends nothing, until the client closes
  /corrupt/<file>?offset=X        one byte flipped (xor 0xff) at X (default size//2)
  /hostile/<file>?kind=K          a response with absurd numbers in its headers (then the body):
                                  range-overflow, range-negative, range-past-total, total-mismatch,
                                  length-negative, length-huge, length-duplicate, range-duplicate,
                                  retry-after-absurd (503 with Retry-After: ?value=, default 1e400)
  /redirect/<file>?target=B64     302 to the base64url-encoded URL B64 (file://, gopher://, ...)
  /chaos/<file>?corrupt=P&reset=P&error=P&seed=N
                                  per request, at random: flip a byte of the range (P corrupt),
                                  cut the body half-way (P reset), answer 503 (P error), else
                                  serve it right; counted in /_stats as "faults"

  Options can also be given in the first segment: /error-then-ok;status=500;times=2/<file>.

  GET  /_stats   {"/<behaviour>/<file>": {"requests": n, "bytes": m}}  (bytes = body bytes sent)
  POST /_reset   clears the counters and the "times" state

The "times" state is per (behaviour, file): K is read from each request's query, and a request
misbehaves while fewer than K requests of that pair have misbehaved since the last reset.
Only single ranges are honoured (bytes=a-b, a-, -n); anything else gets the whole file.

Usage: fault_server.py --root DIR [--port 18096]
"""

import argparse
import base64
import json
import random
import os
import re
import select
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
CHUNK = 64 * 1024
BEHAVIOURS = {"ok", "close-mid-body", "error-then-ok", "retry-after", "wrong-range", "short",
              "ignore-range", "slow", "hang", "freeze", "corrupt", "hostile", "redirect", "chaos"}


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.stats = {}
            self.faults = {}

    def count_request(self, key):
        with self.lock:
            self.stats.setdefault(key, {"requests": 0, "bytes": 0})["requests"] += 1

    def add_bytes(self, key, n):
        with self.lock:
            self.stats.setdefault(key, {"requests": 0, "bytes": 0})["bytes"] += n

    def take_fault(self, key, times):
        """True if this request should misbehave (and counts it)."""
        with self.lock:
            done = self.faults.get(key, 0)
            if done < times:
                self.faults[key] = done + 1
                return True
            return False

    def add_fault(self, key, kind):
        with self.lock:
            entry = self.stats.setdefault(key, {"requests": 0, "bytes": 0})
            faults = entry.setdefault("faults", {})
            faults[kind] = faults.get(kind, 0) + 1

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.stats))


def parse_range(header, size):
    if not header:
        return None
    m = re.match(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wan-fault-server/1"

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    # ---------------------------------------------------------------- plumbing
    def do_GET(self):
        self.dispatch()

    def do_HEAD(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = urllib.parse.unquote(url.path)
        try:
            if path == "/_stats" and self.command == "GET":
                return self.simple(200, json.dumps(self.server.state.snapshot()).encode(), "application/json")
            if path == "/_reset" and self.command == "POST":
                self.drain_body()
                self.server.state.reset()
                return self.simple(200, b'{"reset": true}', "application/json")
            if path == "/_health":
                return self.simple(200, b'{"ok": true}', "application/json")
            parts = [p for p in path.split("/") if p]
            if parts and ";" in parts[0]:
                # Options may also ride in the behaviour segment ("/slow;bps=2000/<file>"),
                # for clients that treat the path as opaque and cannot add a query.
                behaviour, *options = parts[0].split(";")
                for option in options:
                    key, _, value = option.partition("=")
                    self.query.setdefault(key, value)
                parts[0] = behaviour
            if len(parts) < 2 or parts[0] not in BEHAVIOURS or self.command == "POST":
                return self.simple(404, b"unknown behaviour or path\n")
            if any(p in (".", "..") for p in parts[1:]):
                return self.simple(400, b"bad path\n")
            self.key = "/" + "/".join(parts)
            self.server.state.count_request(self.key)
            full = os.path.join(self.server.root, *parts[1:])
            if not os.path.isfile(full):
                return self.simple(404, b"no such file\n")
            getattr(self, "b_" + parts[0].replace("-", "_"))(full)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def drain_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)

    def simple(self, code, body, ctype="text/plain", headers=None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def times(self):
        try:
            return int(self.query.get("times", "1"))
        except ValueError:
            return 1

    def fault_now(self, behaviour):
        return self.server.state.take_fault(self.key, self.times())

    def plan(self, size):
        """(code, start, end, headers) for a correct answer, or None after sending a 416."""
        rng = parse_range(self.headers.get("Range"), size)
        h = {"Accept-Ranges": "bytes", "ETag": '"%x-%x"' % (size, int(self.mtime))}
        if rng == "unsatisfiable":
            h["Content-Range"] = "bytes */%d" % size
            self.simple(416, b"", headers=h)
            return None
        if rng is None:
            return 200, 0, size - 1, h
        h["Content-Range"] = "bytes %d-%d/%d" % (rng[0], rng[1], size)
        return 206, rng[0], rng[1], h

    def headers_out(self, code, length, h):
        self.send_response(code)
        for k, v in h.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def body(self, full, start, count, bps=None, flip_at=None):
        """Send count bytes of the file from start; returns bytes sent."""
        sent = 0
        with open(full, "rb") as f:
            f.seek(start)
            while sent < count:
                step = min(CHUNK, count - sent)
                if bps:
                    step = max(1, min(step, bps // 10))
                b = f.read(step)
                if not b:
                    break
                if flip_at is not None and start + sent <= flip_at < start + sent + len(b):
                    i = flip_at - (start + sent)
                    b = b[:i] + bytes([b[i] ^ 0xFF]) + b[i + 1:]
                self.wfile.write(b)
                self.wfile.flush()
                sent += len(b)
                self.server.state.add_bytes(self.key, len(b))
                if bps:
                    time.sleep(len(b) / float(bps))
        return sent

    def promise(self, full):
        """Send the headers of a correct answer; (start, length) of the body promised, or None
        after a 416."""
        size = os.path.getsize(full)
        self.mtime = os.path.getmtime(full)
        p = self.plan(size)
        if p is None:
            return None
        code, start, end, h = p
        length = end - start + 1 if size else 0
        self.headers_out(code, length, h)
        return start, length

    def normal(self, full, **kw):
        promised = self.promise(full)
        if promised and self.command != "HEAD":
            self.body(full, promised[0], promised[1], **kw)

    def cut(self):
        """Close the connection abruptly (the client sees a short body / reset)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---------------------------------------------------------------- behaviours
    def b_ok(self, full):
        self.normal(full)

    def b_close_mid_body(self, full):
        if self.command == "HEAD" or not self.fault_now("close-mid-body"):
            return self.normal(full)
        self.half_then_cut(full)

    def half_then_cut(self, full):
        """Promise the range, send about half of it, close the connection."""
        promised = self.promise(full)
        if promised is None:
            return
        start, length = promised
        self.body(full, start, length // 2)
        self.cut()

    def b_error_then_ok(self, full):
        if not self.fault_now("error-then-ok"):
            return self.normal(full)
        status = int(self.query.get("status", "500"))
        self.drain_body()
        self.simple(status, b'{"error": "injected %d"}\n' % status, "application/json")

    def b_retry_after(self, full):
        if not self.fault_now("retry-after"):
            return self.normal(full)
        status = int(self.query.get("status", "429"))
        seconds = self.query.get("seconds", "1")
        self.simple(status, b'{"error": "injected %d, retry later"}\n' % status, "application/json",
                    headers={"Retry-After": seconds})

    def b_wrong_range(self, full):
        size = os.path.getsize(full)
        self.mtime = os.path.getmtime(full)
        rng = parse_range(self.headers.get("Range"), size)
        if rng is None or rng == "unsatisfiable":
            rng = (0, size - 1)
        start, end = rng[0] + 1, min(rng[1] + 1, size - 1)
        if start > end:  # nothing left to shift into: still a lying 206 of zero bytes
            start, end = size - 1, size - 1
        h = {"Accept-Ranges": "bytes", "Content-Range": "bytes %d-%d/%d" % (start, end, size)}
        self.headers_out(206, end - start + 1, h)
        if self.command != "HEAD":
            self.body(full, start, end - start + 1)

    def b_short(self, full):
        size = os.path.getsize(full)
        self.mtime = os.path.getmtime(full)
        p = self.plan(size)
        if p is None:
            return
        code, start, end, h = p
        length = end - start + 1
        self.headers_out(code, length, h)
        if self.command == "HEAD":
            return
        self.body(full, start, max(0, length - 10))
        self.cut()

    def b_ignore_range(self, full):
        size = os.path.getsize(full)
        self.headers_out(200, size, {})
        if self.command != "HEAD":
            self.body(full, 0, size)

    def b_slow(self, full):
        try:
            bps = max(1, int(self.query.get("bps", "1000")))
        except ValueError:
            bps = 1000
        self.normal(full, bps=bps)

    def b_freeze(self, full):
        promised = self.promise(full)
        if promised is None or self.command == "HEAD":
            return
        start, length = promised
        try:
            after = min(length, max(0, int(self.query.get("after", str(length // 2)))))
        except ValueError:
            after = length // 2
        self.body(full, start, after)
        self.wait_for_close()

    def b_hang(self, full):
        self.wait_for_close()

    def wait_for_close(self):
        # Never answer: wait until the client closes (recv returns b"") or the server stops.
        self.close_connection = True
        sock = self.connection
        while not self.server.stopping:
            r, _, _ = select.select([sock], [], [], 0.5)
            if r:
                try:
                    if not sock.recv(65536):
                        return
                except OSError:
                    return

    def b_corrupt(self, full):
        size = os.path.getsize(full)
        try:
            off = int(self.query.get("offset", str(size // 2)))
        except ValueError:
            off = size // 2
        self.normal(full, flip_at=off)


    def b_hostile(self, full):
        size = os.path.getsize(full)
        self.mtime = os.path.getmtime(full)
        kind = self.query.get("kind", "range-overflow")
        rng = parse_range(self.headers.get("Range"), size)
        start, end = (0, size - 1) if rng in (None, "unsatisfiable") else rng
        length = end - start + 1
        if kind == "retry-after-absurd":
            self.drain_body()
            return self.simple(503, b"", headers={"Retry-After": self.query.get("value", "1e400")})
        headers = [("Accept-Ranges", "bytes")]
        content_range = "bytes %d-%d/%d" % (start, end, size)
        content_length = str(length)
        if kind == "range-overflow":
            content_range = "bytes 0-9223372036854775807/*"
        elif kind == "range-negative":
            content_range = "bytes -5-%d/%d" % (end, size)
        elif kind == "range-past-total":
            content_range = "bytes %d-%d/%d" % (start, end, max(0, end - 1))
        elif kind == "total-mismatch":
            content_range = "bytes %d-%d/%d" % (start, end, size + 1)
        elif kind == "length-negative":
            content_length = "-1"
        elif kind == "length-huge":
            content_length = "99999999999999999999999"
        headers.append(("Content-Range", content_range))
        headers.append(("Content-Length", content_length))
        if kind == "length-duplicate":
            headers.append(("Content-Length", str(length + 1000)))
        if kind == "range-duplicate":
            headers.append(("Content-Range", "bytes %d-%d/%d" % (start + 1, end, size)))
        self.send_response(206)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if self.command != "HEAD":
            self.body(full, start, length)
        self.cut()

    def b_redirect(self, full):
        target = self.query.get("target", "")
        try:
            location = base64.urlsafe_b64decode(target + "=" * (-len(target) % 4)).decode()
        except Exception:
            return self.simple(400, b"bad target\n")
        self.simple(302, b"", headers={"Location": location})

    def b_chaos(self, full):
        if self.command == "HEAD":
            return self.normal(full)
        def p(name):
            try:
                return float(self.query.get(name, "0"))
            except ValueError:
                return 0.0
        roll = self.server.random.random()
        corrupt, reset, error = p("corrupt"), p("reset"), p("error")
        size = os.path.getsize(full)
        if roll < error:
            self.server.state.add_fault(self.key, "error")
            self.drain_body()
            return self.simple(503, b'{"error": "injected 503"}\n', "application/json")
        if roll < error + reset:
            self.server.state.add_fault(self.key, "reset")
            return self.half_then_cut(full)
        if roll < error + reset + corrupt:
            self.server.state.add_fault(self.key, "corrupt")
            rng = parse_range(self.headers.get("Range"), size)
            start, end = (0, size - 1) if rng in (None, "unsatisfiable") else rng
            return self.normal(full, flip_at=self.server.random.randint(start, max(start, end)))
        self.normal(full)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    stopping = False


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, default=18096)
    a = p.parse_args()
    s = Server((HOST, a.port), Handler)
    s.root = os.path.abspath(a.root)
    s.state = State()
    s.random = random.Random(os.environ.get("WAN_FAULT_SEED", "7"))
    print("fault server on http://%s:%d root %s" % (HOST, a.port, s.root), flush=True)
    try:
        s.serve_forever()
    except KeyboardInterrupt:
        s.stopping = True


if __name__ == "__main__":
    sys.exit(main())
