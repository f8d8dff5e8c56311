"""Lock hand-over latency of `monotone lock`: from the moment one holder's
command exits to the moment the next holder's command starts.

Several workers each run `monotone lock` around a short command in a loop, so
a waiter is always queued behind the holder. Every command records when it
started and ended (nanoseconds, from the same clock); a hand-over is the next
start minus the previous end. Runs on the embedded SQLite store and on
DynamoDB (moto, started here on 127.0.0.1), with the default poll interval
(1 s) and with `--poll 100ms`.

Started by bench/lock.sh; prints a table and writes bench/results/lock_handover.csv.
"""

import argparse
import csv
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

# The command under the lock: note start and end on the shared clock.
RECORD = (
    'echo "start $(date +%s%N)" >> "$OUT/$W"; sleep "$HOLD"; '
    'echo "end $(date +%s%N)" >> "$OUT/$W"'
)


def handovers(monotone, env, url, workers, rounds, hold, poll, ttl):
    queue = f"handover-{time.time_ns()}"
    lock = [monotone, "--store", url, "-i", queue, "lock", "--ttl", ttl, "--poll", poll, "--"]
    return handover_gaps(lock, env, workers, rounds, hold)


def handover_gaps(lock, env, workers, rounds, hold):
    """`workers` loops of `lock + RECORD` (any command that runs the rest of
    its arguments under a lock: `monotone lock --`, `flock FILE`); the gaps
    (ms) between one command's end and the next one's start."""
    out = tempfile.mkdtemp(prefix="monotone-lock-bench-")

    def worker(w):
        wenv = dict(env, OUT=out, W=f"w{w}", HOLD=hold)
        for _ in range(rounds):
            r = subprocess.run(lock + ["sh", "-c", RECORD], env=wenv, capture_output=True,
                               text=True)
            if r.returncode != 0:
                sys.exit(f"lock failed ({r.returncode}): {r.stderr}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runs = []
    for w in range(workers):
        lines = open(os.path.join(out, f"w{w}")).read().split("\n")
        marks = [int(l.split()[1]) for l in lines if l]
        runs += list(zip(marks[0::2], marks[1::2]))
    shutil.rmtree(out, ignore_errors=True)
    runs.sort()
    gaps = []
    for (s0, e0), (s1, _) in zip(runs, runs[1:]):
        if s1 < e0:
            sys.exit(f"two commands overlapped: {s0}-{e0} and {s1}")
        gaps.append((s1 - e0) / 1e6)
    return gaps


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--monotone", required=True)
    p.add_argument("--moto-python", required=True)
    p.add_argument("--moto-server", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=15, help="locks per worker")
    p.add_argument("--hold", default="0.02", help="seconds each command holds the lock")
    p.add_argument("--ttl", default="15s")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    work = tempfile.mkdtemp(prefix="monotone-lock-bench-")
    moto, port = start_moto(args.moto_python, args.moto_server, work)
    env = isolated_env(work)
    stores = [
        ("sqlite", f"sqlite:{os.path.join(work, 'lock.db')}"),
        ("dynamodb (moto)", f"dynamodb://Locks?region={REGION}&endpoint=http://127.0.0.1:{port}"),
    ]
    try:
        print(f"machine: {machine()}")
        print(f"{args.workers} workers x {args.rounds} locks, each holding {args.hold}s, --ttl {args.ttl}")
        rows = []
        for name, url in stores:
            for poll in ("1s", "100ms"):
                gaps = handovers(args.monotone, env, url, args.workers, args.rounds,
                                 args.hold, poll, args.ttl)
                rows.append((name, poll, len(gaps), f"{statistics.median(gaps):.1f}",
                             f"{percentile(gaps, 99):.1f}", f"{min(gaps):.1f}", f"{max(gaps):.1f}"))
                print(f"  {name}, --poll {poll}: median {rows[-1][3]} ms", file=sys.stderr)
        header = ("store", "--poll", "hand-overs", "median ms", "p99 ms", "min ms", "max ms")
        table("Lock hand-over: previous command ends -> next command starts", header, rows)
        with open(os.path.join(args.out, "lock_handover.csv"), "w", newline="") as f:
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
