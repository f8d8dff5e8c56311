"""The living reap the dead: how long a SIGKILLed `monotone lock` at the
back of a queue stays in `queue list` while other holders live, on DynamoDB
(a local moto server, started here on 127.0.0.1).

Each run, on a queue of its own: holder A (`lock -p a --ttl T -- sleep 60`)
holds; B (`lock -p b --ttl T -- true`) waits behind it; C (`lock -p c --ttl
T -- true`) waits behind B. Once `queue list` shows all three, C's
`monotone` gets SIGKILL (its guard, if any, kills its group), and `queue
list` is read in a loop until C's ticket is gone: the time from the SIGKILL
to the first list without it. No one waits behind C: only A's and B's
renewals can remove it, about one lease plus one renewal interval (a third
of the lease) after C's last renewal. The list loop adds its own period
(one `monotone queue list` process, about 15-40 ms) to each figure.

Started by bench/reap.sh; prints a table and writes bench/results/reap.csv.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from dynamodb import isolated_env, machine, start_moto, table, write_csv  # noqa: E402

REGION = "eu-west-1"


def process_ids(monotone, env, url, queue):
    out = subprocess.run([monotone, "--store", url, "-i", queue, "queue", "list"], env=env,
                         capture_output=True, text=True, check=True).stdout
    return [t["process_id"] for t in json.loads(out)["tickets"]]


def await_ids(monotone, env, url, queue, wanted, patience=60):
    deadline = time.monotonic() + patience
    while True:
        ids = process_ids(monotone, env, url, queue)
        if ids == wanted:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"queue {queue}: {ids} rather than {wanted}")
        time.sleep(0.02)


def one_run(monotone, env, url, queue, ttl):
    """Milliseconds from C's SIGKILL to the first list without it."""
    lock = lambda pid, *cmd: subprocess.Popen(
        [monotone, "--store", url, "-i", queue, "lock", "-p", pid, "--ttl", ttl, "--", *cmd],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = []
    try:
        procs.append(lock("a", "sleep", "60"))
        await_ids(monotone, env, url, queue, ["a"])
        procs.append(lock("b", "true"))
        await_ids(monotone, env, url, queue, ["a", "b"])
        c = lock("c", "true")
        procs.append(c)
        await_ids(monotone, env, url, queue, ["a", "b", "c"])
        c.kill()
        killed = time.monotonic()
        c.wait()
        while "c" in process_ids(monotone, env, url, queue):
            if time.monotonic() - killed > 60:
                raise RuntimeError(f"queue {queue}: c still listed a minute after its SIGKILL")
        return (time.monotonic() - killed) * 1e3
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--monotone", required=True)
    p.add_argument("--moto-python", required=True)
    p.add_argument("--moto-server", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=int, default=5, help="runs per ttl")
    p.add_argument("--ttl", nargs="+", default=["1s", "2s"])
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    work = tempfile.mkdtemp(prefix="monotone-reap-bench-")
    moto, port = start_moto(args.moto_python, args.moto_server, work)
    env = isolated_env(work)
    url = f"dynamodb://Reap?region={REGION}&endpoint=http://127.0.0.1:{port}"
    try:
        print(f"machine: {machine()}")
        rows = []
        for ttl in args.ttl:
            times = [one_run(args.monotone, env, url, f"reap-{ttl}-{i}", ttl)
                     for i in range(args.runs)]
            print(f"  --ttl {ttl}: {', '.join(f'{t:.0f}' for t in times)} ms", file=sys.stderr)
            rows.append(("dynamodb (moto)", ttl, len(times), f"{statistics.median(times):.0f}",
                         f"{min(times):.0f}", f"{max(times):.0f}"))
        header = ("store", "--ttl", "runs", "median ms", "min ms", "max ms")
        table("SIGKILL of a lock at the back of the queue -> gone from `queue list`",
              header, rows)
        write_csv(os.path.join(args.out, "reap.csv"), header, rows)
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
