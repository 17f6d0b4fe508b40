#!/usr/bin/env python3
"""Create or update a git repo that olah serves offline as a Hugging Face repo (stdlib + git).

olah's offline mirror mode ("mirrors-path") reads plain git repos laid out as
    MIRRORS/{repo_type}/{org}/{repo}          (repo_type: models | datasets | spaces)
Files at or above --lfs-threshold are stored the way olah understands LFS: the commit holds a
git-lfs pointer (must be 120..150 bytes, which the v1 pointer always is) and the bytes live in
    {repo}/.git/lfs/objects/{oid[0:2]}/{oid[2:4]}/{oid}
(no git-lfs binary needed). Smaller files are committed as ordinary blobs.

olah cannot tell the latest commit of a mirror repo by itself (GET /api/models/{org}/{repo}
answers 401 "Repository not found" in offline mode unless its cache knows a revision), and the
front olah checks repo visibility through exactly that route. So this tool also writes the
seed olah's offline code reads: {OLAH_CACHE}/api/{repo_type}/{org}/{repo}/revision/{sha}/meta_head.json

Usage:
  olah_repo.py add  --mirrors DIR --olah-cache DIR --repo org/name --src DIR [--branch main]
                    [--lfs-threshold BYTES] [--date 2025-01-01T00:00:00Z] [--message TEXT]
      Replace the branch's tree with the files under --src and commit (fixed author/date, so the
      same input gives the same commit sha). Prints the commit sha.
  olah_repo.py seed --mirrors DIR --olah-cache DIR
      (Re)write the seed for the newest commit of every repo under --mirrors.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys

REPO_TYPES = ("models", "datasets", "spaces")


def git(repo, *args, env=None, capture=True):
    e = dict(os.environ)
    e.update(env or {})
    r = subprocess.run(["git", "-C", repo, *args], check=True, env=e,
                       stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    return r.stdout.decode().strip() if capture else ""


def pointer(oid, size):
    return "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (oid, size)


def add(a):
    org, name = a.repo.split("/", 1)
    repo = os.path.join(a.mirrors, a.repo_type, org, name)
    if not os.path.isdir(os.path.join(repo, ".git")):
        os.makedirs(repo, exist_ok=True)
        git(repo, "init", "-q", "-b", a.branch)
    heads = git(repo, "for-each-ref", "--format=%(refname:short)", "refs/heads")
    if a.branch in heads.split():
        git(repo, "checkout", "-q", a.branch)
    else:
        git(repo, "checkout", "-q", "--orphan", a.branch)
    # Replace the work tree with --src.
    for entry in os.listdir(repo):
        if entry == ".git":
            continue
        p = os.path.join(repo, entry)
        shutil.rmtree(p) if os.path.isdir(p) and not os.path.islink(p) else os.remove(p)
    for dirpath, dirnames, filenames in os.walk(a.src):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel = os.path.relpath(dirpath, a.src)
        for fn in filenames:
            src = os.path.join(dirpath, fn)
            dst = os.path.normpath(os.path.join(repo, rel, fn))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            size = os.path.getsize(src)
            if size >= a.lfs_threshold:
                h = hashlib.sha256()
                with open(src, "rb") as f:
                    for b in iter(lambda: f.read(1 << 20), b""):
                        h.update(b)
                oid = h.hexdigest()
                obj = os.path.join(repo, ".git", "lfs", "objects", oid[:2], oid[2:4], oid)
                os.makedirs(os.path.dirname(obj), exist_ok=True)
                if not os.path.exists(obj):
                    shutil.copyfile(src, obj)
                with open(dst, "w") as f:
                    f.write(pointer(oid, size))
            else:
                shutil.copyfile(src, dst)
    git(repo, "add", "-A")
    env = {"GIT_AUTHOR_NAME": "wan-test", "GIT_AUTHOR_EMAIL": "wan-test@example.invalid",
           "GIT_COMMITTER_NAME": "wan-test", "GIT_COMMITTER_EMAIL": "wan-test@example.invalid",
           "GIT_AUTHOR_DATE": a.date, "GIT_COMMITTER_DATE": a.date}
    git(repo, "-c", "commit.gpgsign=false", "commit", "-q", "--allow-empty", "-m", a.message, env=env)
    sha = git(repo, "rev-parse", "HEAD")
    seed_repo(a.olah_cache, a.repo_type, org, name, repo)
    print(sha)


def seed_repo(cache, repo_type, org, name, repo):
    # Newest commit over all branches, as olah's get_newest_commit_hf_offline picks the newest
    # lastModified; we seed only the default branch (HEAD).
    try:
        sha = git(repo, "rev-parse", "HEAD")
        date = git(repo, "log", "-1", "--format=%cI", "HEAD")
    except subprocess.CalledProcessError:
        return None
    revs = os.path.join(cache, "api", repo_type, org, name, "revision")
    # olah picks the newest lastModified among all seeds (ties: the larger sha), so keep only one.
    if os.path.isdir(revs):
        for old in os.listdir(revs):
            stale = os.path.join(revs, old, "meta_head.json")
            if old != sha and os.path.exists(stale):
                os.remove(stale)
    d = os.path.join(revs, sha)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "meta_head.json"), "w") as f:
        json.dump({"sha": sha, "lastModified": date}, f)
    return sha


def seed(a):
    for rt in REPO_TYPES:
        base = os.path.join(a.mirrors, rt)
        if not os.path.isdir(base):
            continue
        for org in sorted(os.listdir(base)):
            for name in sorted(os.listdir(os.path.join(base, org))):
                repo = os.path.join(base, org, name)
                if os.path.isdir(os.path.join(repo, ".git")):
                    sha = seed_repo(a.olah_cache, rt, org, name, repo)
                    if sha:
                        print("%s/%s/%s %s" % (rt, org, name, sha))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("add")
    s.add_argument("--mirrors", required=True)
    s.add_argument("--olah-cache", required=True)
    s.add_argument("--repo", required=True)
    s.add_argument("--repo-type", default="models", choices=REPO_TYPES)
    s.add_argument("--src", required=True)
    s.add_argument("--branch", default="main")
    s.add_argument("--lfs-threshold", type=int, default=1024 * 1024)
    s.add_argument("--date", default="2025-01-01T00:00:00Z")
    s.add_argument("--message", default="wan-test fixture")
    s2 = sub.add_parser("seed")
    s2.add_argument("--mirrors", required=True)
    s2.add_argument("--olah-cache", required=True)
    a = p.parse_args()
    add(a) if a.cmd == "add" else seed(a)


if __name__ == "__main__":
    sys.exit(main())
