#!/usr/bin/env python3
"""What systemd does for wanfs-mount@.service, in one process: a notification socket
(NOTIFY_SOCKET), the descriptor store (FDSTORE=1), and Restart= after a kill -9 of the daemon,
passing the stored descriptor back (LISTEN_FDS, LISTEN_FDNAMES). A reader streams a file of the
mount across the crash.

    fake_systemd.py MOUNT_WANFS ROOT MOUNTPOINT OPTIONS FILE

Prints one JSON line: {"ready", "stored", "restarted_ready", "sha256", "error", "removed"}.
"""
import array
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

binary, root, mountpoint, options, target = sys.argv[1:6]
folder = tempfile.mkdtemp(prefix="wan-fake-systemd-")
address = os.path.join(folder, "notify")
notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
notify.bind(address)
notify.settimeout(30)
stored = []
seen = []


def receive_until(word, deadline=30):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            data, ancillary, _, _ = notify.recvmsg(4096, socket.CMSG_SPACE(4 * 4))
        except socket.timeout:
            break
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                stored.extend(fds)
        text = data.decode()
        seen.append(text)
        if word in text:
            return True
    return False


environment = dict(os.environ, NOTIFY_SOCKET=address)
daemon = subprocess.Popen([binary, root, mountpoint, "-f", "-o", options], env=environment,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ready = receive_until("READY=1")
has_store = receive_until("FDSTORE=1") if not any("FDSTORE=1" in s for s in seen) else True

# The reader is a process of its own: a file of the mount open in this one would be closed by
# the fork that starts the next daemon, and its FLUSH would wait for that very daemon.
READER = """
import hashlib, json, sys, time
digest, total = hashlib.sha256(), 0
try:
    with open(sys.argv[1], "rb", buffering=0) as handle:
        while True:
            block = handle.read(1 << 20)
            if not block:
                break
            digest.update(block)
            total += len(block)
            if total <= 8 << 20:
                time.sleep(0.1)
    print(json.dumps(dict(sha256=digest.hexdigest(), error=None)))
except OSError as error:
    print(json.dumps(dict(sha256=None, error=str(error))))
"""
reader = subprocess.Popen([sys.executable, "-c", READER, target], stdout=subprocess.PIPE, text=True)
time.sleep(1)
daemon.send_signal(signal.SIGKILL)
daemon.wait()
# Restart=: the stored descriptor comes back as descriptor 3.
restarted_ready = False
if stored:
    fd = stored[0]
    # The shell puts it on descriptor 3, where the daemon finds it (LISTEN_FDS counts from 3).
    move = "" if fd == 3 else f"exec 3<&{fd} {fd}<&-; "
    command = move + 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=wanfs-fuse exec "$0" "$@"'
    daemon = subprocess.Popen(["/bin/sh", "-c", command, binary, root, mountpoint, "-f", "-o", options], env=environment,
                              pass_fds=(fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    restarted_ready = receive_until("READY=1")
try:
    result = json.loads(reader.communicate(timeout=120)[0].strip().splitlines()[-1])
except (subprocess.TimeoutExpired, IndexError, ValueError) as error:
    reader.kill()
    result = dict(sha256=None, error=f"reader: {error}")
subprocess.run(["umount", mountpoint])
removed = receive_until("FDSTOREREMOVE=1", deadline=20)
try:
    daemon.wait(20)
except subprocess.TimeoutExpired:
    daemon.kill()
print(json.dumps(dict(ready=ready, stored=bool(stored) and has_store, restarted_ready=restarted_ready, removed=removed,
                     exit=daemon.returncode, **result)), flush=True)
