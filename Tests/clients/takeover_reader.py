#!/usr/bin/env python3
"""Readers that keep a file of the mount open across a change of daemon.

    takeover_reader.py stream PATH   open; "open"; read it in 1 MiB reads (slowly at first)
    takeover_reader.py mmap PATH     open and mmap; "open"; touch it page by page in order
    takeover_reader.py held PATH     open; "open"; wait for a line on stdin; read it whole
    takeover_reader.py probe PATH S  open and close PATH for S seconds; the slowest open

Each prints "open" once its file is open, then one JSON line: {"sha256", "bytes", "error"}
(probe: {"opens", "slowest_ms", "error"}). An error is the errno's name, or null.
"""
import errno
import hashlib
import json
import mmap
import os
import sys
import time


def report(**values):
    print(json.dumps(values), flush=True)


def stream(path):
    fd = os.open(path, os.O_RDONLY)
    print("open", flush=True)
    digest, total, count = hashlib.sha256(), 0, 0
    try:
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            digest.update(block)
            total += len(block)
            count += 1
            if count <= 8:
                time.sleep(0.1)  # still reading when the daemon changes
    except OSError as error:
        return report(sha256=None, bytes=total, error=errno.errorcode.get(error.errno, str(error.errno)))
    report(sha256=digest.hexdigest(), bytes=total, error=None)


def mapped(path):
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    view = mmap.mmap(fd, size, prot=mmap.PROT_READ)
    print("open", flush=True)
    digest, step = hashlib.sha256(), 1 << 20
    try:
        for offset in range(0, size, step):
            digest.update(view[offset:min(size, offset + step)])
            if offset < 8 * step:
                time.sleep(0.1)
    except OSError as error:  # a failed page fault is SIGBUS, which ends the process
        return report(sha256=None, bytes=offset, error=errno.errorcode.get(error.errno, str(error.errno)))
    report(sha256=digest.hexdigest(), bytes=size, error=None)


def held(path):
    fd = os.open(path, os.O_RDONLY)
    print("open", flush=True)
    sys.stdin.readline()
    digest, total = hashlib.sha256(), 0
    try:
        while True:
            block = os.pread(fd, 1 << 20, total)
            if not block:
                break
            digest.update(block)
            total += len(block)
    except OSError as error:
        return report(sha256=None, bytes=total, error=errno.errorcode.get(error.errno, str(error.errno)))
    report(sha256=digest.hexdigest(), bytes=total, error=None)


def probe(path, seconds):
    print("open", flush=True)
    end = time.monotonic() + seconds
    opens, slowest = 0, 0.0
    try:
        while time.monotonic() < end:
            started = time.monotonic()
            fd = os.open(path, os.O_RDONLY)
            os.close(fd)
            slowest = max(slowest, time.monotonic() - started)
            opens += 1
            time.sleep(0.001)
    except OSError as error:
        return report(opens=opens, slowest_ms=slowest * 1000, error=errno.errorcode.get(error.errno, str(error.errno)))
    report(opens=opens, slowest_ms=slowest * 1000, error=None)


if __name__ == "__main__":
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "stream":
        stream(target)
    elif mode == "mmap":
        mapped(target)
    elif mode == "held":
        held(target)
    elif mode == "probe":
        probe(target, float(sys.argv[3]))
    else:
        sys.exit(f"unknown mode {mode}")
