#!/usr/bin/env python3
"""The driver behind scripts/mutate.sh (see there)."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from mutations import MUTATIONS  # noqa: E402


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def run_test(spec, src, build):
    kind, _, what = spec.partition(":")
    if kind == "lit":
        proc = sh(["/usr/lib/llvm-22/bin/lit", "-q", os.path.join(build, "test", what)])
    elif kind == "ctest":
        proc = sh(["ctest", "--test-dir", build, "-R", f"^{what}$", "--output-on-failure"])
    elif kind == "conformance":
        proc = sh(["/usr/bin/python3", os.path.join(src, "test", "conformance",
                                                   "run_conformance.py"),
                   os.path.join(build, "bin"), "--filter", what])
    else:
        raise ValueError(spec)
    return proc.returncode != 0


def failing_ctests(build):
    proc = sh(["ctest", "--test-dir", build, "-j", str(os.cpu_count() or 2)])
    return re.findall(r"^\s*\d+ - (\S+) \(Failed", proc.stdout, re.M)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="also run the whole suite per bug")
    parser.add_argument("--keep", action="store_true", help="keep the scratch clone")
    parser.add_argument("only", nargs="*", help="run the bugs whose name contains one of these")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m[0] for o in args.only)]
    scratch = tempfile.mkdtemp(prefix="hasten-mutate-")
    src, build = os.path.join(scratch, "src"), os.path.join(scratch, "build")
    try:
        subprocess.run(["git", "clone", "-q", ROOT, src], check=True)
        print(f"building a scratch clone in {scratch} ...", flush=True)
        env = dict(os.environ, HASTEN_BUILD=build)
        proc = sh(["bash", os.path.join(src, "scripts", "build.sh")], env=env)
        if proc.returncode:
            sys.exit(f"the clean clone does not build:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
        rows = []
        for name, path, old, new, test in chosen:
            target = os.path.join(src, path)
            text = open(target).read()
            if text.count(old) != 1:
                rows.append((name, test, "STALE: the edit no longer matches the source", ""))
                continue
            open(target, "w").write(text.replace(old, new))
            proc = sh(["ninja", "-C", build])
            if proc.returncode:
                status, others = "does not build (rewrite the edit)", ""
            else:
                status = "caught" if run_test(test, src, build) else "MISSED"
                others = ", ".join(failing_ctests(build)) if args.full else ""
            print(f"{status:>8}  {name}  [{test}]" + (f"  also: {others}" if others else ""),
                  flush=True)
            rows.append((name, test, status, others))
            subprocess.run(["git", "-C", src, "checkout", "-q", "--", path], check=True)
        print("\n| planted bug | closest test | result |" + (" failing CTest entries |" if args.full else ""))
        print("|---|---|---|" + ("---|" if args.full else ""))
        for name, test, status, others in rows:
            print(f"| {name} | `{test}` | {status} |" + (f" {others} |" if args.full else ""))
        missed = [r for r in rows if r[2] != "caught"]
        print(f"\n{len(rows) - len(missed)} of {len(rows)} planted bugs caught by their closest test")
        return 1 if missed else 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
