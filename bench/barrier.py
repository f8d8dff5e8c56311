"""The bootstrap barrier: from the last claim to the last member printing.

N processes of `monotone claim --members N` start at once (each its own
owner, tagged with an address). Each logs, right after its claim is made,
a debug line (`claimed: waiting for the roster`, from
`RUST_LOG=monotone::commands::claim=debug`); the bench notes when each
process's line and its stdout's first byte arrive, on one clock. The
barrier's latency is the last print minus the last claim (the earlier of
its log line and the first print: an upper bound): what the waiting costs
once the roster is complete (the claims themselves, which contend with each
other, come before). Every member must print the same members.

Started by bench/barrier.sh; prints a table and writes bench/results/barrier.csv.
"""

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from dynamodb import isolated_env, machine, start_moto, table  # noqa: E402

REGION = "eu-west-1"
CLAIMED = "claimed: waiting for the roster"


def one_round(monotone, env, url, n, poll):
    pool = f"barrier-{n}-{time.time_ns()}"
    claimed = [None] * n
    printed = [None] * n
    outputs = [None] * n
    start = threading.Barrier(n)

    def member(i):
        cmd = [monotone, "--store", url, "-i", pool, "claim", "-p", f"host-{i}",
               "--range", "1..255", "--members", str(n), "-t", f"addr=10.0.{i // 250}.{i % 250}",
               "--timeout", "120s", "--poll", poll]
        menv = dict(env, RUST_LOG="monotone::commands::claim=debug", NO_COLOR="1")
        start.wait()
        p = subprocess.Popen(cmd, env=menv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def errors():
            for line in p.stderr:
                if CLAIMED.encode() in line and claimed[i] is None:
                    claimed[i] = time.monotonic_ns()
            p.stderr.close()

        t = threading.Thread(target=errors)
        t.start()
        first = p.stdout.read(1)
        printed[i] = time.monotonic_ns()
        outputs[i] = first + p.stdout.read()
        code = p.wait()
        t.join()
        if code != 0:
            sys.exit(f"member {i} failed ({code})")

    threads = [threading.Thread(target=member, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rosters = [json.loads(o)["members"] for o in outputs]
    if any(r != rosters[0] for r in rosters) or len(rosters[0]) != n:
        sys.exit("the members printed different rosters")
    if None in claimed:
        sys.exit("a member did not log its claim (RUST_LOG)")
    # The last claim was made before its member's log line arrived, and
    # before any member printed (a roster is complete only once it exists):
    # the earlier of the two bounds it, so the figure is an upper bound.
    last_claim = min(max(claimed), min(printed))
    return (max(printed) - last_claim) / 1e6, (max(claimed) - min(claimed)) / 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--monotone", required=True)
    p.add_argument("--moto-python", required=True)
    p.add_argument("--moto-server", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=5, help="barriers per configuration")
    p.add_argument("--members", default="3,32", help="roster sizes, comma separated")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    work = tempfile.mkdtemp(prefix="monotone-barrier-bench-")
    moto, port = start_moto(args.moto_python, args.moto_server, work)
    env = isolated_env(work)
    stores = [
        ("sqlite", f"sqlite:{os.path.join(work, 'barrier.db')}"),
        ("dynamodb (moto)", f"dynamodb://Barrier?region={REGION}&endpoint=http://127.0.0.1:{port}"),
    ]
    try:
        print(f"machine: {machine()}")
        # Create the table (and the SQLite file) before anything is timed.
        for _, url in stores:
            subprocess.run([args.monotone, "--store", url, "-i", "warm", "counter", "next"],
                           env=env, check=True, capture_output=True)
        rows = []
        for name, url in stores:
            for n in [int(m) for m in args.members.split(",")]:
                for poll in ("1s", "100ms"):
                    done = [one_round(args.monotone, env, url, n, poll) for _ in range(args.rounds)]
                    waits = [d[0] for d in done]
                    spread = [d[1] for d in done]
                    rows.append((name, n, poll, args.rounds, f"{statistics.median(waits):.0f}",
                                 f"{max(waits):.0f}", f"{statistics.median(spread):.0f}"))
                    print(f"  {name}, {n} members, --poll {poll}: median {rows[-1][4]} ms",
                          file=sys.stderr)
        header = ("store", "members", "--poll", "rounds", "median ms", "max ms",
                  "claims spread ms (median)")
        table("Barrier: last claim -> last member prints its roster", header, rows)
        with open(os.path.join(args.out, "barrier.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        return 0
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
