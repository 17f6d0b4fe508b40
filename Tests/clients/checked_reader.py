#!/usr/bin/env python3
"""Reads a file through the mount in 1 MiB preads and checks every byte against the original.

  checked_reader.py MOUNTED ORIGINAL
      reads the first half, prints "half" and waits for a line on stdin, reads the second
      half, then the first half again; prints one JSON line:
      {"reads": n, "eio": n, "wrong": n, "zeros": n, "first_wrong": offset|null}

A read that fails with EIO counts as "eio" (allowed: the caller decides); a read that returns
bytes other than the original's counts as "wrong" (never allowed), "zeros" if they were all zero.
"""
import errno
import json
import os
import sys

MIB = 1 << 20


def main():
    mounted, original = sys.argv[1], sys.argv[2]
    size = os.path.getsize(original)
    half = (size // 2) // MIB * MIB
    fd = os.open(mounted, os.O_RDONLY)
    ref = os.open(original, os.O_RDONLY)
    stats = {"reads": 0, "eio": 0, "wrong": 0, "zeros": 0, "first_wrong": None}

    def read(start, end):
        offset = start
        while offset < end:
            want = min(MIB, end - offset)
            stats["reads"] += 1
            got = b""
            try:
                # A read may come back short (the kernel splits it into max_read requests and
                # one of them failed): what did come must be right; the rest is read again.
                while len(got) < want:
                    piece = os.pread(fd, want - len(got), offset + len(got))
                    if not piece:
                        break
                    got += piece
                failed = False
            except OSError as e:
                if e.errno != errno.EIO:
                    raise
                stats["eio"] += 1
                failed = True
            expected = os.pread(ref, want, offset)
            # Wrong: bytes that differ from the original, or an end of file where it has more.
            if got != expected[:len(got)] or (not failed and len(got) != len(expected)):
                stats["wrong"] += 1
                if not got.strip(b"\0"):
                    stats["zeros"] += 1
                if stats["first_wrong"] is None:
                    stats["first_wrong"] = offset
            offset += want

    read(0, half)
    print("half", flush=True)
    sys.stdin.readline()
    read(half, size)
    read(0, half)
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main()
