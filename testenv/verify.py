#!/usr/bin/env python3
"""End-to-end checks of the local test servers (run through `testenv/servers.sh verify`).

Reads the WAN_TEST_* variables printed by `servers.sh env`. Prints one line per check and a
final "N passed, M failed" line; exits 1 if any check failed.
"""

import hashlib
import http.client
import json
import os
import socket
import sys
import tempfile
import time
import traceback
import urllib.parse

E = os.environ
RESULTS = []
# `verify.py [substring ...]` runs only the checks whose names contain one of the substrings.
FILTERS = sys.argv[1:]


def check(name):
    def deco(fn):
        if FILTERS and not any(f in name for f in FILTERS):
            return fn
        t = time.time()
        try:
            note = fn()
            RESULTS.append((name, True, note or ""))
            print("PASS %-45s %s (%.2fs)" % (name, note or "", time.time() - t), flush=True)
        except Exception as e:
            RESULTS.append((name, False, repr(e)))
            print("FAIL %-45s %r" % (name, e), flush=True)
            traceback.print_exc()
        return fn
    return deco


def req(base, method, path, headers=None, body=None, timeout=10):
    u = urllib.parse.urlsplit(base)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read() if method != "HEAD" else b""
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def s3(endpoint, key, secret, **cfg):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                        aws_secret_access_key=secret, region_name=E["WAN_TEST_S3_REGION"],
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"}, **cfg))


def client_error(fn):
    import botocore.exceptions
    try:
        fn()
    except botocore.exceptions.ClientError as e:
        return e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"]
    raise AssertionError("no error raised")


DATA = b"".join(hashlib.sha256(b"verify:%d" % i).digest() for i in range(6250))  # 200000 bytes
SAMPLE = os.path.join(E["WAN_TEST_STATE"], "sample")
WEIGHTS = open(os.path.join(SAMPLE, "weights.bin"), "rb").read()
CONFIG = open(os.path.join(SAMPLE, "config.json"), "rb").read()

# ------------------------------------------------------------------ nginx


@check("nginx: range 206/416 + access log line")
def _():
    base, root = E["WAN_TEST_HTTP"], E["WAN_TEST_HTTP_ROOT"]
    with open(os.path.join(root, "verify.bin"), "wb") as f:
        f.write(DATA)
    st, h, b = req(base, "GET", "/verify.bin?v=1", {"Range": "bytes=10-19"})
    expect(st == 206 and b == DATA[10:20] and h["content-range"] == "bytes 10-19/%d" % len(DATA), (st, h))
    st, h, _ = req(base, "GET", "/verify.bin", {"Range": "bytes=999999-"})
    expect(st == 416 and h.get("content-range") == "bytes */%d" % len(DATA), (st, h))
    time.sleep(0.05)
    lines = open(E["WAN_TEST_HTTP_LOG"]).read().splitlines()
    expect('/verify.bin?v=1 206 10 "bytes=10-19"' in lines, lines[-3:])
    # keep-alive: two requests on one connection
    c = http.client.HTTPConnection("127.0.0.1", int(base.rsplit(":", 1)[1]), timeout=5)
    for _i in range(2):
        c.request("GET", "/verify.bin", headers={"Range": "bytes=0-0"})
        r = c.getresponse()
        r.read()
        expect(r.status == 206 and r.getheader("Connection", "keep-alive") != "close", r.status)
    c.close()
    os.remove(os.path.join(root, "verify.bin"))
    return "log line: %s" % [l for l in lines if l.startswith("/verify.bin?v=1")][-1]

# ------------------------------------------------------------------ SeaweedFS


@check("seaweedfs: put + ranged get + 416")
def _():
    c = s3(E["WAN_TEST_S3_ENDPOINT"], E["WAN_TEST_S3_ACCESS_KEY"], E["WAN_TEST_S3_SECRET_KEY"])
    c.put_object(Bucket=E["WAN_TEST_S3_BUCKET"], Key="verify/data.bin", Body=DATA)
    r = c.get_object(Bucket=E["WAN_TEST_S3_BUCKET"], Key="verify/data.bin", Range="bytes=100-199")
    expect(r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == DATA[100:200], r)
    got = client_error(lambda: c.get_object(Bucket=E["WAN_TEST_S3_BUCKET"], Key="verify/data.bin",
                                            Range="bytes=999999-"))
    expect(got == (416, "InvalidRange"), got)
    return "206 %s; out of range -> %s" % (r["ContentRange"], got)


@check("seaweedfs: strict SigV4 (wrong secret -> 403 XML)")
def _():
    bad = s3(E["WAN_TEST_S3_ENDPOINT"], E["WAN_TEST_S3_ACCESS_KEY"], "not-the-secret")
    got = client_error(lambda: bad.get_object(Bucket=E["WAN_TEST_S3_BUCKET"], Key="verify/data.bin"))
    expect(got == (403, "SignatureDoesNotMatch"), got)
    st, h, b = req(E["WAN_TEST_S3_ENDPOINT"], "GET", "/%s/verify/data.bin" % E["WAN_TEST_S3_BUCKET"])
    expect(st == 403 and b.startswith(b"<?xml") and b"<Code>AccessDenied</Code>" in b, (st, b[:200]))
    return "wrong secret %s; anonymous 403 AccessDenied XML" % (got,)


@check("seaweedfs: read-only identity")
def _():
    ro = s3(E["WAN_TEST_S3_ENDPOINT"], E["WAN_TEST_S3_RO_ACCESS_KEY"], E["WAN_TEST_S3_RO_SECRET_KEY"])
    b = E["WAN_TEST_S3_BUCKET"]
    expect(ro.get_object(Bucket=b, Key="verify/data.bin")["Body"].read() == DATA, "ro get")
    expect(any(o["Key"] == "verify/data.bin" for o in ro.list_objects_v2(Bucket=b)["Contents"]), "ro list")
    got = client_error(lambda: ro.put_object(Bucket=b, Key="verify/ro.bin", Body=b"x"))
    expect(got == (403, "AccessDenied"), got)
    s3(E["WAN_TEST_S3_ENDPOINT"], E["WAN_TEST_S3_ACCESS_KEY"], E["WAN_TEST_S3_SECRET_KEY"]).delete_object(
        Bucket=b, Key="verify/data.bin")
    return "get+list ok, put -> %s" % (got,)

# ------------------------------------------------------------------ moto


@check("moto: bucket + object + NoSuchKey")
def _():
    c = s3(E["WAN_TEST_MOTO"], "testing", "testing")
    c.create_bucket(Bucket="verify")
    c.put_object(Bucket="verify", Key="a", Body=DATA)
    r = c.get_object(Bucket="verify", Key="a", Range="bytes=0-9")
    expect(r["ResponseMetadata"]["HTTPStatusCode"] == 206 and r["Body"].read() == DATA[:10], r)
    got = client_error(lambda: c.get_object(Bucket="verify", Key="missing"))
    expect(got == (404, "NoSuchKey"), got)
    c.delete_object(Bucket="verify", Key="a")
    c.delete_bucket(Bucket="verify")
    return "206 range; missing -> %s" % (got,)

# ------------------------------------------------------------------ rclone


@check("rclone s3: list, put, range answered 200+Content-Range")
def _():
    # rclone stores the upload's x-amz-checksum-crc32 and returns that whole-object checksum on
    # ranged GETs too, which boto3's default response validation rejects: validate only when required.
    c = s3(E["WAN_TEST_RCLONE_S3"], E["WAN_TEST_RCLONE_ACCESS_KEY"], E["WAN_TEST_RCLONE_SECRET_KEY"],
           response_checksum_validation="when_required")
    expect("models" in [x["Name"] for x in c.list_buckets()["Buckets"]], "bucket models")
    c.put_object(Bucket="models", Key="verify/data.bin", Body=DATA)
    expect(open(os.path.join(E["WAN_TEST_RCLONE_ROOT"], "models/verify/data.bin"), "rb").read() == DATA, "on disk")
    r = c.get_object(Bucket="models", Key="verify/data.bin", Range="bytes=10-19")
    st = r["ResponseMetadata"]["HTTPStatusCode"]
    expect(r["Body"].read() == DATA[10:20], "range bytes")
    bad = s3(E["WAN_TEST_RCLONE_S3"], E["WAN_TEST_RCLONE_ACCESS_KEY"], "wrong")
    got = client_error(lambda: bad.list_objects_v2(Bucket="models"))
    c.delete_object(Bucket="models", Key="verify/data.bin")
    return "ranged GET -> %d, Content-Range %s, %d bytes; wrong secret -> %s" % (
        st, r.get("ContentRange"), r["ContentLength"], got)

# ------------------------------------------------------------------ olah


def hf_env():
    os.environ.pop("HF_HUB_OFFLINE", None)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("HF_TOKEN", None)


@check("olah front: curl -r 0-99 -> 206, 100 bytes; 416")
def _():
    base = E["WAN_TEST_HF_OLAH"]
    st, h, b = req(base, "GET", "/wan-test/tiny-model/resolve/main/weights.bin", {"Range": "bytes=0-99"})
    expect(st == 206 and b == WEIGHTS[:100], (st, h, len(b)))
    st2, h2, _ = req(base, "GET", "/wan-test/tiny-model/resolve/main/weights.bin", {"Range": "bytes=99999999-"})
    expect(st2 == 416, (st2, h2))
    return "headers: %s" % {k: v for k, v in h.items() if k not in ("date", "server")}


@check("olah front: huggingface_hub download + snapshot")
def _():
    hf_env()
    from huggingface_hub import hf_hub_download, snapshot_download, HfApi
    ep = E["WAN_TEST_HF_OLAH"]
    p = hf_hub_download(repo_id="wan-test/tiny-model", filename="weights.bin", endpoint=ep,
                        cache_dir=tempfile.mkdtemp())
    expect(open(p, "rb").read() == WEIGHTS, "weights differ")
    s = snapshot_download(repo_id="wan-test/tiny-model", endpoint=ep, cache_dir=tempfile.mkdtemp())
    expect(open(os.path.join(s, "config.json"), "rb").read() == CONFIG, "config differs")
    tree = list(HfApi(endpoint=ep).list_repo_tree("wan-test/tiny-model", recursive=True))
    return "tree: %s" % [(f.path, f.size, bool(f.lfs)) for f in tree]


@check("olah: tree API through the front")
def _():
    st, h, b = req(E["WAN_TEST_HF_OLAH"], "GET", "/api/models/wan-test/tiny-model/tree/main/?recursive=true")
    expect(st == 200, (st, b[:200]))
    items = json.loads(b)
    expect({i["path"] for i in items} == {"config.json", "weights.bin"}, items)
    return b.decode()[:400]

# ------------------------------------------------------------------ HF fixture


@check("hf fixture: huggingface_hub public + gated + snapshot")
def _():
    hf_env()
    from huggingface_hub import hf_hub_download, snapshot_download
    ep = E["WAN_TEST_HF_HUB"]
    log_start = os.path.getsize(E["WAN_TEST_HF_LOG"])
    for repo, tok in (("wan-test/tiny-model", False), ("wan-test/gated-model", E["WAN_TEST_HF_TOKEN"])):
        for name, want in (("config.json", CONFIG), ("weights.bin", WEIGHTS)):
            p = hf_hub_download(repo_id=repo, filename=name, endpoint=ep, token=tok, cache_dir=tempfile.mkdtemp())
            expect(open(p, "rb").read() == want, (repo, name))
    s = snapshot_download(repo_id="wan-test/tiny-model", endpoint=ep, token=False, cache_dir=tempfile.mkdtemp())
    expect(open(os.path.join(s, "weights.bin"), "rb").read() == WEIGHTS, "snapshot")
    with open(E["WAN_TEST_HF_LOG"]) as f:
        f.seek(log_start)
        log = [json.loads(l) for l in f]
    cdn_auth = [r for r in log if r["server"] == "cdn" and r["auth"]]
    expect(not cdn_auth, "client sent Authorization to the cdn: %s" % cdn_auth[:1])
    return "byte-exact; no Authorization reached the cdn"


@check("hf fixture: client errors (gated, not found)")
def _():
    hf_env()
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (GatedRepoError, RepositoryNotFoundError,
                                        RevisionNotFoundError, EntryNotFoundError)
    ep = E["WAN_TEST_HF_HUB"]
    out = []
    for exc, kw in ((GatedRepoError, dict(repo_id="wan-test/gated-model", filename="weights.bin", token=False)),
                    (GatedRepoError, dict(repo_id="wan-test/gated-model", filename="weights.bin", token="hf_other")),
                    (RepositoryNotFoundError, dict(repo_id="wan-test/missing", filename="x", token=False)),
                    (RevisionNotFoundError, dict(repo_id="wan-test/tiny-model", filename="x", revision="nope", token=False)),
                    (EntryNotFoundError, dict(repo_id="wan-test/tiny-model", filename="nope.bin", token=False))):
        try:
            hf_hub_download(endpoint=ep, cache_dir=tempfile.mkdtemp(), **kw)
            raise AssertionError("no error for %s" % kw)
        except exc as e:
            out.append("%s %d" % (type(e).__name__, e.response.status_code))
    return "; ".join(out)


@check("hf fixture: cdn rejects Authorization, ranges")
def _():
    st, h, _ = req(E["WAN_TEST_HF_HUB"], "HEAD", "/wan-test/tiny-model/resolve/main/weights.bin")
    expect(st == 302 and h["x-linked-size"] == str(len(WEIGHTS)), (st, h))
    expect(h["x-linked-etag"] == '"%s"' % hashlib.sha256(WEIGHTS).hexdigest(), h)
    loc = urllib.parse.urlsplit(h["location"])
    cdn = "%s://%s" % (loc.scheme, loc.netloc)
    path = loc.path + "?" + loc.query
    st1, _, b1 = req(cdn, "GET", path, {"Range": "bytes=0-99"})
    st2, _, _ = req(cdn, "GET", path, {"Range": "bytes=99999999-"})
    st3, _, b3 = req(cdn, "GET", path, {"Authorization": "Bearer " + E["WAN_TEST_HF_TOKEN"]})
    expect(st1 == 206 and b1 == WEIGHTS[:100] and st2 == 416 and st3 == 400, (st1, st2, st3))
    return "302 -> %s; 206/416; Authorization -> 400 %s" % (cdn, b3[:60])


@check("hf fixture: tree pagination")
def _():
    hf_env()
    from huggingface_hub import HfApi
    root = os.path.join(E["WAN_TEST_HF_ROOT"], "wan-test", "verify-many")
    os.makedirs(os.path.join(root, "main", "d"), exist_ok=True)
    for i in range(120):
        with open(os.path.join(root, "main", "d", "f%03d.txt" % i), "w") as f:
            f.write(str(i))
    st, h, b = req(E["WAN_TEST_HF_HUB"], "GET", "/api/models/wan-test/verify-many/tree/main?recursive=true")
    expect(st == 200 and 'rel="next"' in h.get("link", ""), h)
    n = len(list(HfApi(endpoint=E["WAN_TEST_HF_HUB"], token=False).list_repo_tree(
        "wan-test/verify-many", recursive=True)))
    import shutil
    shutil.rmtree(root)
    expect(n == 121, n)
    return "first page %d entries, Link: %s...; client saw %d" % (len(json.loads(b)), h["link"][:60], n)

# ------------------------------------------------------------------ fault server


def raw(path, headers=None, method="GET", timeout=5):
    """(status, headers, body bytes received, complete?) with a raw socket to see short bodies."""
    base = urllib.parse.urlsplit(E["WAN_TEST_FAULTS"])
    s = socket.create_connection((base.hostname, base.port), timeout=timeout)
    h = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
    s.sendall(("%s %s HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n" % (method, path, h)).encode())
    buf = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            buf += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0] else 0
    hd = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    return status, hd, body


@check("faults: all behaviours")
def _():
    root = E["WAN_TEST_FAULTS_ROOT"]
    with open(os.path.join(root, "verify.bin"), "wb") as f:
        f.write(DATA)
    n = len(DATA)
    req(E["WAN_TEST_FAULTS"], "POST", "/_reset")
    notes = []
    st, h, b = raw("/ok/verify.bin", {"Range": "bytes=10-19"})
    expect(st == 206 and b == DATA[10:20], ("ok", st, h))
    st, h, b = raw("/ok/verify.bin", {"Range": "bytes=%d-" % n})
    expect(st == 416, ("ok 416", st))
    st, h, b = raw("/close-mid-body/verify.bin")
    expect(st == 200 and h["content-length"] == str(n) and len(b) == n // 2, ("close", st, len(b)))
    st, h, b = raw("/close-mid-body/verify.bin")
    expect(st == 200 and b == DATA, "close second")
    notes.append("close-mid-body %d/%d then ok" % (n // 2, n))
    st, _, _ = raw("/error-then-ok/verify.bin?status=503&times=2")
    st2, _, _ = raw("/error-then-ok/verify.bin?status=503&times=2")
    st3, _, b = raw("/error-then-ok/verify.bin?status=503&times=2")
    expect((st, st2, st3) == (503, 503, 200) and b == DATA, (st, st2, st3))
    st, h, _ = raw("/retry-after/verify.bin?seconds=2")
    st2, _, _ = raw("/retry-after/verify.bin?seconds=2")
    expect(st == 429 and h["retry-after"] == "2" and st2 == 200, (st, h, st2))
    st, h, b = raw("/wrong-range/verify.bin", {"Range": "bytes=10-19"})
    expect(st == 206 and h["content-range"] == "bytes 11-20/%d" % n and b == DATA[11:21], (st, h))
    st, h, b = raw("/short/verify.bin", {"Range": "bytes=0-99"})
    expect(st == 206 and h["content-length"] == "100" and b == DATA[:90], (st, h, len(b)))
    st, h, b = raw("/ignore-range/verify.bin", {"Range": "bytes=0-99"})
    expect(st == 200 and "content-range" not in h and b == DATA, (st, h))
    t = time.time()
    st, h, b = raw("/slow/verify.bin?bps=2000", {"Range": "bytes=0-999"})
    dt = time.time() - t
    expect(st == 206 and b == DATA[:1000] and 0.35 < dt < 2, (st, dt))
    notes.append("slow 1000 B at 2000 B/s in %.2fs" % dt)
    t = time.time()
    try:
        st, h, b = raw("/hang/verify.bin", timeout=1)
    except socket.timeout:
        st, b = 0, b""
    expect(st == 0 and b == b"" and time.time() - t >= 0.9, ("hang", st))
    st, h, b = raw("/corrupt/verify.bin?offset=5")
    expect(st == 200 and len(b) == n and b[5] == DATA[5] ^ 0xFF and b[:5] == DATA[:5] and b[6:] == DATA[6:], "corrupt")
    st, h, b = raw("/corrupt/verify.bin", {"Range": "bytes=%d-%d" % (n // 2 - 1, n // 2 + 1)})
    expect(st == 206 and b[1] == DATA[n // 2] ^ 0xFF and b[0] == DATA[n // 2 - 1], "corrupt range")
    stats = json.loads(req(E["WAN_TEST_FAULTS"], "GET", "/_stats")[2])
    expect(stats["/ok/verify.bin"]["requests"] == 2 and stats["/ok/verify.bin"]["bytes"] == 10, stats)
    expect(stats["/close-mid-body/verify.bin"]["bytes"] == n // 2 + n, stats)
    os.remove(os.path.join(root, "verify.bin"))
    return "; ".join(notes)


passed = sum(1 for r in RESULTS if r[1])
failed = len(RESULTS) - passed
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
