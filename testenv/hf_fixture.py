#!/usr/bin/env python3
"""A small Hugging Face Hub look-alike for wanfs tests (stdlib only).

Two HTTP servers in one process, both on 127.0.0.1:
  hub (default :18092)  resolve + API routes, like huggingface.co
  cdn (default :18093)  serves LFS bytes behind signed-looking URLs, like the Hub's CDN

Repositories live on disk:
  ROOT/{org}/{repo}/{revision}/{path...}   the files of one revision (a branch name)
  ROOT/{org}/{repo}/refs/{revision}         40-hex commit sha of that revision (optional:
                                            without it the sha is sha1("{org}/{repo}@{revision}"))
  ROOT/{org}/{repo}/gated                   marker file: the repo is gated (token needed)
  ROOT/datasets/{org}/{repo}/...            the same for dataset repos (/datasets/... URLs)

Behaviour (what huggingface_hub expects, see utils/_http.py hf_raise_for_status):
  * files smaller than WAN_HF_LFS_THRESHOLD (default 1 MiB) are "regular": resolve answers 200
    with ETag "<git blob sha1>", X-Repo-Commit, Content-Length, Range (206/416).
  * larger files are "LFS": resolve answers 302 to the cdn with X-Linked-Size,
    X-Linked-Etag "<sha256>", ETag, X-Repo-Commit. The cdn serves bytes with Range (206/416),
    answers 400 to any request carrying Authorization, 403 to a bad or expired signature.
  * gated repo: no token -> 401 X-Error-Code: GatedRepo; a token other than the good one ->
    403 X-Error-Code: GatedRepo; WAN_HF_TOKEN (default hf_wan_test_token) -> OK.
    Repo metadata and tree listings of gated repos stay public, as on the Hub.
  * token "hf_wan_invalid_token" on any repo -> 401 X-Error-Message: Invalid credentials in
    Authorization header (what the Hub answers to an unknown token).
  * missing repo -> 401 RepoNotFound; missing revision -> 404 RevisionNotFound;
    missing file -> 404 EntryNotFound.
  * GET /api/{models|datasets}/{org}/{repo}/tree/{rev}[/{path}]?recursive=&limit=&cursor=
    paginated with Link: <...>; rel="next" (page size WAN_HF_PAGE_SIZE, default 50, or ?limit).
  * GET /api/{models|datasets}/{org}/{repo}[/revision/{rev}] -> model info with siblings.
  * POST /api/.../paths-info/{rev} (form or JSON "paths") -> entries like the tree.
Every request is logged as one JSON line to LOG (server, method, path, range, auth, status, bytes).

Usage:
  hf_fixture.py serve --root DIR --log FILE [--hub-port 18092] [--cdn-port 18093]
  hf_fixture.py make-sample DIR      write config.json + weights.bin (deterministic) into DIR
"""

import argparse
import base64
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = "127.0.0.1"
GOOD_TOKEN = os.environ.get("WAN_HF_TOKEN", "hf_wan_test_token")
INVALID_TOKEN = "hf_wan_invalid_token"
LFS_THRESHOLD = int(os.environ.get("WAN_HF_LFS_THRESHOLD", str(1024 * 1024)))
PAGE_SIZE = int(os.environ.get("WAN_HF_PAGE_SIZE", "50"))
SIGN_KEY = b"wan-test-cdn-signing-key"
URL_TTL = int(os.environ.get("WAN_HF_URL_TTL", "3600"))
CHUNK = 256 * 1024
HEX40 = re.compile(r"^[0-9a-f]{40}$")


# ---------------------------------------------------------------- sample data

def sample_files():
    """The sample repo wan-test/tiny-model: identical for olah and this fixture."""
    config = b'{"model_type": "wan-test", "hidden_size": 8, "num_layers": 1}\n'
    out = bytearray()
    i = 0
    while len(out) < 3 * 1024 * 1024:
        out += hashlib.sha256(b"wan-test-weights:%d" % i).digest()
        i += 1
    return {"config.json": config, "weights.bin": bytes(out[: 3 * 1024 * 1024])}


def make_sample(directory):
    os.makedirs(directory, exist_ok=True)
    for name, data in sample_files().items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


# ---------------------------------------------------------------- repo model

_hash_cache = {}
_hash_lock = threading.Lock()


def file_hashes(path):
    """(git blob sha1, sha256) of a file, cached by (path, size, mtime)."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    g = hashlib.sha1(b"blob %d\0" % st.st_size)
    s = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            g.update(b)
            s.update(b)
    val = (g.hexdigest(), s.hexdigest())
    with _hash_lock:
        _hash_cache[key] = val
    return val


def lfs_pointer(sha256, size):
    return "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (sha256, size)


class Repo:
    def __init__(self, root, repo_type, org, name):
        base = root if repo_type == "models" else os.path.join(root, repo_type)
        self.repo_id = "%s/%s" % (org, name)
        self.repo_type = repo_type
        self.dir = os.path.join(base, org, name)

    def exists(self):
        return bool(org_ok(self.repo_id)) and os.path.isdir(self.dir)

    @property
    def gated(self):
        return os.path.exists(os.path.join(self.dir, "gated"))

    def revisions(self):
        out = {}
        for entry in sorted(os.listdir(self.dir)):
            p = os.path.join(self.dir, entry)
            if entry in ("refs",) or not os.path.isdir(p):
                continue
            out[entry] = self.commit_of(entry)
        return out

    def commit_of(self, rev):
        ref = os.path.join(self.dir, "refs", rev)
        if os.path.isfile(ref):
            with open(ref) as f:
                return f.read().strip().lower()
        return hashlib.sha1(("%s@%s" % (self.repo_id, rev)).encode()).hexdigest()

    def resolve(self, revision):
        """revision (branch or commit sha) -> (revision dir name, commit) or None."""
        revision = urllib.parse.unquote(revision)
        if "/" in revision or revision in ("", ".", "..", "refs"):
            return None
        if os.path.isdir(os.path.join(self.dir, revision)):
            return revision, self.commit_of(revision)
        if HEX40.match(revision.lower()):
            for rev, commit in self.revisions().items():
                if commit == revision.lower():
                    return rev, commit
        return None

    def file_path(self, rev, path):
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            return None
        full = os.path.join(self.dir, rev, *parts)
        return full if os.path.isfile(full) else None

    def entry(self, rev, rel):
        full = os.path.join(self.dir, rev, rel)
        if os.path.isdir(full):
            tree_sha = hashlib.sha1(("tree:%s:%s" % (rev, rel)).encode()).hexdigest()
            return {"type": "directory", "oid": tree_sha, "size": 0, "path": rel}
        size = os.path.getsize(full)
        blob, sha256 = file_hashes(full)
        item = {"type": "file", "oid": blob, "size": size, "path": rel}
        if size >= LFS_THRESHOLD:
            pointer = lfs_pointer(sha256, size).encode()
            item["oid"] = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
            item["lfs"] = {"oid": sha256, "size": size, "pointerSize": len(pointer)}
        return item

    def listing(self, rev, path, recursive):
        top = os.path.join(self.dir, rev, *[p for p in path.split("/") if p])
        if not os.path.isdir(top):
            return None
        out = []

        def walk(d, rel):
            names = sorted(os.listdir(d))
            dirs = [n for n in names if os.path.isdir(os.path.join(d, n))]
            files = [n for n in names if not os.path.isdir(os.path.join(d, n))]
            for n in dirs + files:  # the Hub lists directories first
                r = n if not rel else rel + "/" + n
                out.append(self.entry(rev, r))
                if recursive and n in dirs:
                    walk(os.path.join(d, n), r)

        walk(top, "/".join(p for p in path.split("/") if p))
        return out

    def all_files(self, rev):
        return [e["path"] for e in self.listing(rev, "", True) if e["type"] == "file"]


def org_ok(repo_id):
    return re.match(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$", repo_id)


def sign(path, expires):
    msg = ("%s|%d" % (path, expires)).encode()
    return hmac.new(SIGN_KEY, msg, hashlib.sha256).hexdigest()


def parse_range(header, size):
    """Return None (no/ignored range), (start, end) inclusive, or 'unsatisfiable'."""
    if not header:
        return None
    m = re.match(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", header)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None  # malformed or multi-range: serve the whole thing
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1) if size else "unsatisfiable"
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


# ---------------------------------------------------------------- logging

class JsonlLog:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        if path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(self, rec):
        if not self.path:
            return
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line)


# ---------------------------------------------------------------- handlers

class Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "wan-hf-fixture/1"

    def version_string(self):
        return self.server_version
    role = "?"

    def log_message(self, fmt, *args):  # keep stderr quiet; the JSONL log has everything
        pass

    # response helpers -----------------------------------------------------
    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def reply(self, code, body=b"", headers=None, ctype="application/json; charset=utf-8"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body or code not in (204, 304):
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
            self._sent += len(body)

    def hf_error(self, code, error_code, message, headers=None):
        h = {"X-Error-Message": message}
        if error_code:
            h["X-Error-Code"] = error_code
        h.update(headers or {})
        self.reply(code, {"error": message}, h)

    def send_file(self, path, headers, etag):
        size = os.path.getsize(path)
        rng = parse_range(self.headers.get("Range"), size)
        h = dict(headers)
        h["Accept-Ranges"] = "bytes"
        h["ETag"] = etag
        if rng == "unsatisfiable":
            h["Content-Range"] = "bytes */%d" % size
            self.reply(416, b"", h, ctype="text/plain")
            return
        if rng is None:
            start, end, code = 0, size - 1, 200
        else:
            (start, end), code = rng, 206
            h["Content-Range"] = "bytes %d-%d/%d" % (start, end, size)
        length = end - start + 1 if size else 0
        self.send_response(code)
        for k, v in h.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        with open(path, "rb") as f:
            f.seek(start)
            left = length
            while left > 0:
                b = f.read(min(CHUNK, left))
                if not b:
                    break
                self.wfile.write(b)
                self._sent += len(b)
                left -= len(b)

    def token(self):
        auth = self.headers.get("Authorization")
        if not auth:
            return None
        m = re.match(r"^\s*Bearer\s+(\S+)\s*$", auth)
        return m.group(1) if m else auth.strip()

    def handle_one(self):
        self._status, self._sent = 0, 0
        url = urllib.parse.urlsplit(self.path)
        try:
            self.route(url.path, urllib.parse.parse_qs(url.query))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a fixture bug must show up as a 500, not hang a test
            import traceback
            traceback.print_exc()
            try:
                self.reply(500, {"error": "fixture error: %r" % (e,)})
            except Exception:
                self.close_connection = True
        finally:
            self.server.log.write({
                "ts": round(time.time(), 6),
                "server": self.role,
                "method": self.command,
                "path": self.path,
                "range": self.headers.get("Range"),
                "auth": self.headers.get("Authorization") is not None,
                "status": self._status,
                "bytes": self._sent,
            })

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    do_GET = do_HEAD = do_POST = handle_one


class HubHandler(Base):
    role = "hub"

    def route(self, path, query):
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p != ""]
        if path == "/_health":
            return self.reply(200, {"ok": True})
        if parts[:1] == ["api"]:
            return self.api(parts[1:], query)
        repo_type = "models"
        if parts[:1] in (["datasets"], ["spaces"]):
            repo_type, parts = parts[0], parts[1:]
        if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            repo = Repo(self.server.root, repo_type, parts[0], parts[1])
            return self.resolve_file(repo, parts[3], "/".join(parts[4:]), repo_type)
        self.hf_error(404, None, "Sorry, we can't find the page you are looking for.")

    # authorization for file access -------------------------------------------
    def check_access(self, repo):
        tok = self.token()
        if tok == INVALID_TOKEN:
            self.hf_error(401, None, "Invalid credentials in Authorization header")
            return False
        if not repo.gated:
            return True
        if tok is None:
            self.hf_error(401, "GatedRepo",
                          "Access to model %s is restricted. You must have access to it and be "
                          "authenticated to access it. Please log in." % repo.repo_id)
            return False
        if tok != GOOD_TOKEN:
            self.hf_error(403, "GatedRepo",
                          "Access to model %s is restricted and you are not in the authorized "
                          "list. Visit https://huggingface.co/%s to ask for access."
                          % (repo.repo_id, repo.repo_id))
            return False
        return True

    def find_repo(self, repo):
        if not repo.exists():
            self.hf_error(401, "RepoNotFound", "Repository not found")
            return False
        return True

    def find_revision(self, repo, revision):
        r = repo.resolve(revision)
        if r is None:
            self.hf_error(404, "RevisionNotFound", "Invalid rev id: %s" % revision)
        return r

    def resolve_file(self, repo, revision, fpath, repo_type):
        if not self.find_repo(repo):
            return
        if self.token() == INVALID_TOKEN:
            return self.hf_error(401, None, "Invalid credentials in Authorization header")
        r = self.find_revision(repo, revision)
        if r is None:
            return
        rev, commit = r
        if not self.check_access(repo):
            return
        full = repo.file_path(rev, fpath)
        if full is None:
            return self.hf_error(404, "EntryNotFound", "Entry not found",
                                 {"X-Repo-Commit": commit})
        size = os.path.getsize(full)
        blob, sha256 = file_hashes(full)
        common = {"X-Repo-Commit": commit, "Vary": "Origin, Accept",
                  "Access-Control-Expose-Headers": "X-Repo-Commit,X-Linked-Size,X-Linked-ETag,ETag,"
                                                   "X-Error-Code,X-Error-Message,Link"}
        if size < LFS_THRESHOLD:
            common["Content-Disposition"] = 'inline; filename="%s"' % os.path.basename(fpath)
            return self.send_file(full, common, '"%s"' % blob)
        expires = int(time.time()) + URL_TTL
        prefix = "" if repo_type == "models" else repo_type + "/"
        cdn_path = "/repos/%s%s/%s/%s" % (prefix, repo.repo_id, commit,
                                          urllib.parse.quote(fpath))
        loc = "%s%s?%s" % (self.server.cdn_base, cdn_path, urllib.parse.urlencode({
            "Expires": expires, "Signature": sign(cdn_path, expires), "Key-Pair-Id": "WANTEST",
            "response-content-disposition": 'inline; filename="%s"' % os.path.basename(fpath)}))
        h = dict(common)
        h.update({"Location": loc, "X-Linked-Size": str(size),
                  "X-Linked-ETag": '"%s"' % sha256, "ETag": '"%s"' % sha256,
                  "Accept-Ranges": "bytes"})
        self.reply(302, "Found. Redirecting to %s" % loc, h, ctype="text/plain; charset=utf-8")

    # API ------------------------------------------------------------------------
    def api(self, parts, query):
        if parts[:1] == ["whoami-v2"]:
            tok = self.token()
            if tok == GOOD_TOKEN:
                return self.reply(200, {"type": "user", "name": "wan-test", "auth": {}})
            return self.hf_error(401, None, "Invalid credentials in Authorization header")
        if len(parts) < 3 or parts[0] not in ("models", "datasets", "spaces"):
            return self.hf_error(404, None, "Sorry, we can't find the page you are looking for.")
        repo = Repo(self.server.root, parts[0], parts[1], parts[2])
        rest = parts[3:]
        if not self.find_repo(repo):
            return
        if self.token() == INVALID_TOKEN:
            return self.hf_error(401, None, "Invalid credentials in Authorization header")
        if not rest or (rest[0] == "revision" and len(rest) >= 2):
            revision = "main" if not rest else "/".join(rest[1:])
            r = self.find_revision(repo, revision)
            if r:
                self.reply(200, self.info(repo, *r))
            return
        if rest[0] == "tree" and len(rest) >= 2:
            r = self.find_revision(repo, rest[1])
            if r:
                self.tree(repo, r[0], "/".join(rest[2:]), query)
            return
        if rest[0] == "paths-info" and len(rest) >= 2 and self.command == "POST":
            r = self.find_revision(repo, rest[1])
            if r:
                self.paths_info(repo, r[0])
            return
        if rest[0] == "refs":
            branches = [{"name": rev, "ref": "refs/heads/" + rev, "targetCommit": c}
                        for rev, c in repo.revisions().items()]
            return self.reply(200, {"branches": branches, "tags": [], "converts": []})
        self.hf_error(404, None, "Sorry, we can't find the page you are looking for.")

    def info(self, repo, rev, commit):
        files = repo.all_files(rev)
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.repo_id.split("/")[0],
            "sha": commit, "lastModified": "2025-01-01T00:00:00.000Z",
            "private": False, "gated": "manual" if repo.gated else False, "disabled": False,
            "downloads": 0, "likes": 0, "tags": [], "library_name": None,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "siblings": [{"rfilename": p} for p in files],
        }

    def tree(self, repo, rev, path, query):
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        items = repo.listing(rev, path, recursive)
        if items is None:
            return self.hf_error(404, "EntryNotFound",
                                 "%s does not exist on %s" % (path or "/", rev))
        limit = PAGE_SIZE
        if "limit" in query:
            limit = max(1, min(int(query["limit"][0]), 1000))
        start = 0
        if "cursor" in query:
            start = int(base64.urlsafe_b64decode(query["cursor"][0].encode() + b"==").decode())
        page = items[start:start + limit]
        headers = {}
        if start + limit < len(items):
            q = {k: v[0] for k, v in query.items() if k != "cursor"}
            q["cursor"] = base64.urlsafe_b64encode(str(start + limit).encode()).decode().rstrip("=")
            nxt = "%s%s?%s" % (self.server.hub_base, urllib.parse.urlsplit(self.path).path,
                               urllib.parse.urlencode(q))
            headers["Link"] = '<%s>; rel="next"' % nxt
        self.reply(200, page, headers)

    def paths_info(self, repo, rev):
        body = self.read_body()
        ctype = self.headers.get("Content-Type", "")
        if "json" in ctype:
            paths = json.loads(body or b"{}").get("paths", [])
        else:
            paths = urllib.parse.parse_qs(body.decode()).get("paths", [])
        out = []
        for p in paths:
            full = os.path.join(repo.dir, rev, *[x for x in p.split("/") if x])
            if os.path.exists(full) and ".." not in p.split("/"):
                out.append(repo.entry(rev, "/".join(x for x in p.split("/") if x)))
        self.reply(200, out)


class CdnHandler(Base):
    role = "cdn"

    def route(self, path, query):
        if path == "/_health":
            return self.reply(200, {"ok": True})
        if self.command not in ("GET", "HEAD"):
            return self.s3_error(405, "MethodNotAllowed", "The specified method is not allowed.")
        if self.headers.get("Authorization") is not None:
            return self.s3_error(400, "InvalidArgument",
                                 "Only one auth mechanism allowed; only the X-Amz-Algorithm "
                                 "query parameter, Signature query string parameter or the "
                                 "Authorization header should be specified")
        try:
            expires = int(query.get("Expires", ["0"])[0])
        except ValueError:
            expires = 0
        sig = query.get("Signature", [""])[0]
        if not hmac.compare_digest(sig, sign(path, expires)):
            return self.s3_error(403, "AccessDenied", "Request has invalid signature")
        if expires < time.time():
            return self.s3_error(403, "AccessDenied", "Request has expired")
        parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
        # /repos/[datasets/]{org}/{repo}/{commit}/{path...}
        repo_type = "models"
        if len(parts) > 1 and parts[1] in ("datasets", "spaces"):
            repo_type = parts.pop(1)
        if len(parts) < 5 or parts[0] != "repos":
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        repo = Repo(self.server.root, repo_type, parts[1], parts[2])
        r = repo.resolve(parts[3]) if repo.exists() else None
        full = repo.file_path(r[0], "/".join(parts[4:])) if r else None
        if full is None:
            return self.s3_error(404, "NoSuchKey", "The specified key does not exist.")
        _, sha256 = file_hashes(full)
        disp = query.get("response-content-disposition", [None])[0]
        h = {"Content-Disposition": disp} if disp else {}
        h["Cache-Control"] = "public, max-age=604800, immutable"
        self.send_file(full, h, '"%s"' % sha256)

    def s3_error(self, code, s3code, message):
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s'
                '</Message></Error>' % (s3code, message))
        self.reply(code, body, ctype="application/xml")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(args):
    log = JsonlLog(args.log)
    hub_base = "http://%s:%d" % (HOST, args.hub_port)
    cdn_base = "http://%s:%d" % (HOST, args.cdn_port)
    servers = []
    for port, handler in ((args.hub_port, HubHandler), (args.cdn_port, CdnHandler)):
        s = Server((HOST, port), handler)
        s.root, s.log, s.hub_base, s.cdn_base = os.path.abspath(args.root), log, hub_base, cdn_base
        servers.append(s)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    print("hf fixture: hub %s cdn %s root %s" % (hub_base, cdn_base, args.root), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--root", required=True)
    s.add_argument("--log", default="")
    s.add_argument("--hub-port", type=int, default=18092)
    s.add_argument("--cdn-port", type=int, default=18093)
    m = sub.add_parser("make-sample")
    m.add_argument("dir")
    args = p.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        make_sample(args.dir)


if __name__ == "__main__":
    sys.exit(main())
