#!/usr/bin/env python3
"""A reader for the chaos test: reads files through the mount until a deadline and checks
every byte it gets against the original.

  chaos_reader.py MODE SECONDS SEED MOUNTED=ORIGINAL [MOUNTED=ORIGINAL ...]

MODE: seq     whole files in 1 MiB reads (a new open each pass)
      mmap    mmap of a file, slices touched in the order a safetensors load walks them
              (header, then each tensor); .safetensors files are also loaded with
              safetensors.safe_open now and then and compared tensor by tensor
      random  random ranges (4 KiB to 4 MiB) with pread

Prints one JSON line at the end: reads, bytes (checked), eio, unavailable (mount gone:
killed on purpose, being remounted), wrong (bytes other than the original's: never allowed),
loads (safetensors loads compared).
"""
import errno
import json
import mmap
import os
import random
import struct
import sys
import time

MIB = 1 << 20
GONE = {errno.ENOTCONN, errno.ENOENT, errno.ECONNABORTED, errno.ENXIO, errno.ESTALE, errno.EBADF}


class Stats:
    def __init__(self):
        self.s = {"reads": 0, "bytes": 0, "eio": 0, "unavailable": 0, "wrong": 0, "loads": 0, "first_wrong": None}

    def check(self, name, offset, got, expected):
        self.s["reads"] += 1
        if got != expected[:len(got)]:
            self.s["wrong"] += 1
            if self.s["first_wrong"] is None:
                self.s["first_wrong"] = "%s@%d" % (name, offset)
        else:
            self.s["bytes"] += len(got)

    def failed(self, e):
        if e.errno == errno.EIO:
            self.s["eio"] += 1
        elif e.errno in GONE or (e.errno is None and isinstance(e, (FileNotFoundError, ConnectionError))):
            # safetensors raises FileNotFoundError without an errno for a mount being remounted
            self.s["unavailable"] += 1
            time.sleep(0.3)
        else:
            raise e


def original_bytes(path, offset, count):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(count)


def read_seq(mounted, original, stats, rng, deadline):
    size = os.path.getsize(original)
    fd = os.open(mounted, os.O_RDONLY)
    try:
        offset = 0
        while offset < size and time.time() < deadline:
            got = os.pread(fd, MIB, offset)
            stats.check(mounted, offset, got, original_bytes(original, offset, MIB))
            if not got:
                break
            offset += len(got)
    finally:
        os.close(fd)


def safetensors_offsets(original):
    with open(original, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    base = 8 + n
    spans = [(0, base)]
    for key, value in header.items():
        if key != "__metadata__":
            start, end = value["data_offsets"]
            spans.append((base + start, base + end))
    return spans


def read_mmap(mounted, original, stats, rng, deadline):
    """One mmap pass in a child process: a page fault the mount answers with EIO is SIGBUS,
    which ends a process (as it would end a pipeline's); the parent counts it as EIO."""
    seed = rng.randint(0, 1 << 30)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        child = Stats()
        try:
            try:
                mmap_pass(mounted, original, child, random.Random(seed), deadline)
            except OSError as e:
                try:
                    child.failed(e)
                except OSError:
                    sys.stderr.write("chaos_reader mmap: %s: %r\n" % (mounted, e))
                    child.s["unexpected"] = child.s.get("unexpected", 0) + 1
            except Exception as e:
                if "Input/output error" in str(e) or "os error 5" in str(e):
                    child.s["eio"] += 1
                else:
                    sys.stderr.write("chaos_reader mmap: %s: %r\n" % (mounted, e))
                    child.s["unavailable"] += 1
            os.write(w, json.dumps(child.s).encode())
        finally:
            os._exit(0)   # never back into the parent's loop, whatever happened
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == 7:   # SIGBUS: a fault got EIO
        stats.s["eio"] += 1
        return
    if not data:
        stats.s["unavailable"] += 1
        return
    for key, value in json.loads(data).items():
        if key == "first_wrong":
            stats.s[key] = stats.s[key] or value
        else:
            stats.s[key] = stats.s.get(key, 0) + value


def mmap_pass(mounted, original, stats, rng, deadline):
    size = os.path.getsize(original)
    if size == 0:
        return
    spans = safetensors_offsets(original) if original.endswith(".safetensors") else \
        [(o, min(size, o + 4 * MIB)) for o in range(0, size, 4 * MIB)]
    fd = os.open(mounted, os.O_RDONLY)
    try:
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(fd)
    try:
        for start, end in spans:
            if time.time() >= deadline:
                break
            # A page fault that cannot be served is SIGBUS; touching through a copy makes it an
            # exception we can count: read the slice with m[...] (errors surface as OSError/ValueError).
            got = m[start:end]
            stats.check(mounted, start, got, original_bytes(original, start, end - start))
    finally:
        m.close()
    if original.endswith(".safetensors") and rng.random() < 0.3:
        from safetensors import safe_open
        with safe_open(mounted, framework="numpy") as a, safe_open(original, framework="numpy") as b:
            for key in b.keys():
                if (a.get_tensor(key) != b.get_tensor(key)).any():
                    stats.s["wrong"] += 1
                    stats.s["first_wrong"] = stats.s["first_wrong"] or "%s tensor %s" % (mounted, key)
        stats.s["loads"] += 1


def read_random(mounted, original, stats, rng, deadline):
    size = os.path.getsize(original)
    if size == 0:
        return
    fd = os.open(mounted, os.O_RDONLY)
    try:
        for _ in range(16):
            if time.time() >= deadline:
                break
            count = rng.randint(4096, 4 * MIB)
            offset = rng.randint(0, max(0, size - 1))
            got = os.pread(fd, count, offset)
            stats.check(mounted, offset, got, original_bytes(original, offset, count))
    finally:
        os.close(fd)


def main():
    mode, seconds, seed = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    pairs = [p.split("=", 1) for p in sys.argv[4:]]
    readers = {"seq": read_seq, "mmap": read_mmap, "random": read_random}[mode]
    rng = random.Random(seed)
    stats = Stats()
    deadline = time.time() + seconds
    while time.time() < deadline:
        mounted, original = rng.choice(pairs)
        try:
            readers(mounted, original, stats, rng, deadline)
        except OSError as e:
            stats.failed(e)
        except (ValueError, BufferError) as e:   # an mmap of a file the mount could not serve
            stats.s["unavailable"] += 1
            time.sleep(0.3)
        except Exception as e:   # safetensors raises its own errors for unreadable files
            if "Input/output error" in str(e) or "os error 5" in str(e):
                stats.s["eio"] += 1
            elif "No such file" in str(e) or "not connected" in str(e):
                stats.s["unavailable"] += 1
                time.sleep(0.3)
            else:
                raise
    print(json.dumps(stats.s), flush=True)


if __name__ == "__main__":
    main()
