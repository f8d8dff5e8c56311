"""monotone on etcd, side by side with etcdctl on the same etcd member.

- counter next (one whole process) against `etcdctl put`, alternating;
- lock hand-over (one holder's command ends -> the next one's starts) of
  `monotone lock` against `etcdctl lock`, with workers queued in a loop;
- crash takeover: the holder is killed with SIGKILL, a waiter with the same
  lease (2 s) takes over: `monotone lock --ttl 2s` against `etcdctl lock
  --ttl 2`;
- watch latency: one writer, both watchers (`monotone doc watch` and
  `etcdctl watch` on the same key) timestamp each line; from the start of
  the writer (one `monotone doc set` process) to the line;
- gRPC requests per command, from the member's own counters (/metrics).

Started by bench/etcd.sh, which builds monotone and starts the member;
prints tables and writes bench/results/etcd.csv.
"""

import argparse
import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def ms(ns):
    return ns / 1e6


def summary(xs):
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return statistics.median(xs), p99, xs[0], xs[-1], len(xs)


def run(cmd, env=None, check=True):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit(f"{cmd} failed ({r.returncode}): {r.stderr}")
    return r


class Bench:
    def __init__(self, args):
        self.monotone = args.monotone
        self.endpoint = args.endpoint
        self.host = self.endpoint.replace("http://", "")
        self.url = f"etcd://{self.host}/bench-{time.time_ns()}/"
        self.env = dict(os.environ, ETCDCTL_API="3")
        self.rounds = args.rounds

    def mono(self, *a):
        return [self.monotone, "--store", self.url, *a]

    def ctl(self, *a):
        return ["etcdctl", "--endpoints", self.endpoint, *a]

    # -- counter next vs etcdctl put --------------------------------------
    def counter(self):
        a, b = [], []
        for i in range(self.rounds):
            for cmd, out in ((self.mono("-i", "c", "counter", "next"), a),
                             (self.ctl("put", "bench-put", str(i)), b)):
                t = time.perf_counter_ns()
                run(cmd, self.env)
                out.append(time.perf_counter_ns() - t)
        return {"monotone counter next": a, "etcdctl put": b}

    # -- lock hand-over ---------------------------------------------------
    RECORD = ('echo "start $(date +%s%N)" >> "$OUT/$W"; sleep 0.02; '
              'echo "end $(date +%s%N)" >> "$OUT/$W"')

    def handover(self, make, workers=4, rounds=12):
        out = tempfile.mkdtemp(prefix="etcd-bench-")

        failed = []

        def worker(w):
            env = dict(self.env, OUT=out, W=f"w{w}")
            for _ in range(rounds):
                r = run(make(), env, check=False)
                if r.returncode != 0:
                    failed.append(f"{make()} failed ({r.returncode}): {r.stderr}")
                    return

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failed:
            sys.exit(failed[0])
        spans = []
        for w in range(workers):
            marks = [int(l.split()[1]) for l in open(os.path.join(out, f"w{w}")).read().split("\n") if l]
            spans += list(zip(marks[0::2], marks[1::2]))
        spans.sort()
        return [s2 - e1 for (_, e1), (s2, _) in zip(spans, spans[1:])]

    def handovers(self):
        name = f"lock-{time.time_ns()}"
        mono = self.handover(lambda: self.mono("-i", name, "lock", "--", "sh", "-c", self.RECORD))
        ctl = self.handover(lambda: self.ctl("lock", name + "-ctl", "--", "sh", "-c", self.RECORD))
        return {"monotone lock": mono, "etcdctl lock": ctl}

    # -- crash takeover ---------------------------------------------------
    def takeover(self, holder_cmd, waiter_cmd, started_file):
        """The holder runs `sleep 1000` under the lock; a waiter queues with
        a command that stamps the time; SIGKILL the holder: the time from the
        kill to the waiter's command."""
        out = tempfile.mkdtemp(prefix="etcd-takeover-")
        env = dict(self.env, OUT=out)
        holder = subprocess.Popen(holder_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        held = os.path.join(out, "held")
        while not (os.path.exists(held) and os.path.getsize(held) > 0):
            if time.time() > deadline:
                sys.exit("the holder never held the lock")
            time.sleep(0.005)
        waiter = subprocess.Popen(waiter_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # the waiter is queued, and has seen renewals
        killed = time.time_ns()
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        waiter.wait(timeout=60)
        took = int(open(os.path.join(out, started_file)).read().split()[0]) - killed
        # etcdctl leaves its command running when it is killed: end it, by
        # the process id it wrote.
        try:
            os.kill(int(open(os.path.join(out, "held")).read().split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
        return took

    def takeovers(self, n=5):
        mono, ctl = [], []
        for i in range(n):
            name = f"crash-{time.time_ns()}"
            hold = 'echo $$ > "$OUT/held"; exec sleep 1000'
            stamp = 'date +%s%N > "$OUT/took"'
            mono.append(self.takeover(
                self.mono("-i", name, "lock", "--ttl", "2s", "--", "sh", "-c", hold),
                self.mono("-i", name, "lock", "--ttl", "2s", "--", "sh", "-c", stamp), "took"))
            ctl.append(self.takeover(
                self.ctl("lock", "--ttl", "2", name, "--", "sh", "-c", hold),
                self.ctl("lock", "--ttl", "2", name, "--", "sh", "-c", stamp), "took"))
        return {"monotone lock --ttl 2s": mono, "etcdctl lock --ttl 2": ctl}

    # -- watch latency ----------------------------------------------------
    def watches(self, n=30):
        doc = f"watched-{time.time_ns()}"
        prefix = self.url.split("/", 3)[3]
        key = prefix + doc
        lines = {"monotone doc watch": [], "etcdctl watch": []}

        def follow(name, cmd, keep):
            p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, text=True)
            for line in p.stdout:
                if keep(line):
                    lines[name].append(time.time_ns())
            return p

        procs = []
        for name, cmd, keep in (
            ("monotone doc watch", self.mono("-i", doc, "doc", "watch"), lambda l: l.startswith("{")),
            ("etcdctl watch", self.ctl("watch", key), lambda l: l.startswith("{")),
        ):
            t = threading.Thread(target=lambda n=name, c=cmd, k=keep: procs.append(follow(n, c, k)), daemon=True)
            t.start()
        time.sleep(1.5)
        # From the start of the writer (one `monotone doc set` process, the
        # same write for both watchers) to the watcher's line: an
        # acknowledgement seen by the writer's parent comes after its
        # process has exited, later than the watchers may print.
        starts = []
        for i in range(n):
            starts.append(time.time_ns())
            r = subprocess.run(self.mono("-i", doc, "doc", "set"), input=f'{{"n": {i}}}',
                               env=self.env, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(r.stderr)
            time.sleep(0.2)
        time.sleep(0.5)
        for p in procs:
            p.terminate()
        return {name: [t - a for t, a in zip(ts, starts)] for name, ts in lines.items()}

    # -- requests per command ---------------------------------------------
    def metrics(self):
        text = urllib.request.urlopen(self.endpoint + "/metrics").read().decode()
        counts = {}
        for m in re.finditer(r'grpc_server_started_total\{grpc_method="(\w+)",grpc_service="[\w.]+",grpc_type="\w+"\} (\d+)', text):
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(m.group(2))
        return counts

    def requests(self):
        rows = []
        steps = [
            ("counter next (new counter)", self.mono("-i", "r", "counter", "next")),
            ("counter next", self.mono("-i", "r", "counter", "next")),
            ("counter get", self.mono("-i", "r", "counter", "get")),
            ("tally add", self.mono("-i", "t", "tally", "add", "5")),
            ("queue join (new queue)", self.mono("-i", "q", "queue", "-p", "a", "join")),
            ("queue join", self.mono("-i", "q", "queue", "-p", "b", "join", "--ttl", "15s")),
            ("queue join (again, idempotent)", self.mono("-i", "q", "queue", "-p", "a", "join")),
            ("queue renew", self.mono("-i", "q", "queue", "-p", "b", "renew")),
            ("queue list", self.mono("-i", "q", "queue", "list")),
            ("queue leave", self.mono("-i", "q", "queue", "-p", "a", "leave")),
            ("doc get", self.mono("-i", "d", "doc", "get")),
            ("claim", self.mono("-i", "p", "claim", "-p", "o", "--range", "1..9")),
            ("claim release", self.mono("-i", "p", "claim", "-p", "o", "release")),
            ("etcdctl put", self.ctl("put", "x", "y")),
            ("etcdctl get", self.ctl("get", "x")),
        ]
        for name, cmd in steps:
            before = self.metrics()
            run(cmd, self.env)
            after = self.metrics()
            diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            diff = {k: v for k, v in diff.items() if v}
            rows.append((name, sum(diff.values()), ", ".join(f"{k} {v}" for k, v in sorted(diff.items()))))
        return rows


def table(title, results):
    print(f"\n{title}\n")
    print("| command | median ms | p99 ms | min ms | max ms | runs |")
    print("|---|---|---|---|---|---|")
    rows = []
    for name, xs in results.items():
        med, p99, lo, hi, n = summary(xs)
        print(f"| {name} | {ms(med):.1f} | {ms(p99):.1f} | {ms(lo):.1f} | {ms(hi):.1f} | {n} |")
        rows.append((title, name, ms(med), ms(p99), ms(lo), ms(hi), n))
    names = list(results)
    if len(names) == 2:
        ratio = summary(results[names[0]])[0] / summary(results[names[1]])[0]
        print(f"\nmedian ratio {names[0]} / {names[1]}: {ratio:.2f}")
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--monotone", required=True)
    p.add_argument("--endpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    b = Bench(args)
    rows = []
    rows += table("One counter increment per process, alternating", b.counter())
    rows += table("Lock hand-over: one command ends -> the next starts (4 workers x 12)", b.handovers())
    rows += table("Crash takeover: holder SIGKILLed -> waiter's command starts (lease 2 s)", b.takeovers())
    rows += table("Watch: the writer starts -> the watcher prints the write", b.watches())
    print("\ngRPC requests per command (the member's grpc_server_started_total)\n")
    print("| command | requests | by method |")
    print("|---|---|---|")
    for name, total, by in b.requests():
        print(f"| {name} | {total} | {by} |")
        rows.append(("requests", name, total, "", "", "", by))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "etcd.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["measure", "command", "median_ms_or_requests", "p99_ms", "min_ms", "max_ms", "runs_or_methods"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
