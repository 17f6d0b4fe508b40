#!/usr/bin/env python3
"""Small listeners for the trust tests, on 127.0.0.1 (a port the kernel picks; printed first).

  recorder.py tcp LOG          accepts connections, appends one line per connection to LOG,
                               closes them (stands in for gopher://, dict://, ftp:// servers)
  recorder.py http LOG         answers every request 200 "[]" and appends its method, path and
                               headers to LOG as one JSON line
  recorder.py hf-tree LOG NEXT answers GET .../tree/... with one file entry and
                               `Link: <NEXT>; rel="next"`, logging each request as `http` does

Stops when its stdin closes (the test process ended) or after 10 minutes.
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def log(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def serve_tcp(path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    print(sock.getsockname()[1], flush=True)

    def loop():
        while True:
            conn, _ = sock.accept()
            log(path, {"connection": time.time()})
            conn.close()

    threading.Thread(target=loop, daemon=True).start()


def serve_http(path, next_link=None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            log(path, {"method": "GET", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
            body = b"[]"
            extra = {}
            if next_link and "/tree/" in self.path:
                body = json.dumps([{"type": "file", "path": "a.bin", "size": 1, "oid": "x"}]).encode()
                extra["Link"] = '<%s>; rel="next"' % next_link
            self.send_response(200)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def main():
    mode, path = sys.argv[1], sys.argv[2]
    if mode == "tcp":
        serve_tcp(path)
    elif mode == "http":
        serve_http(path)
    elif mode == "hf-tree":
        serve_http(path, next_link=sys.argv[3])
    else:
        sys.exit("unknown mode " + mode)
    deadline = time.time() + 600
    while time.time() < deadline:
        if not sys.stdin.read(1):
            return
    

if __name__ == "__main__":
    main()
