"""Whole-process benchmark of monotone on a local DynamoDB-compatible server.

Run through bench/run.sh, which builds monotone, prepares the virtualenvs and
calls this with the paths it needs. In one run, against one moto server on
127.0.0.1 started here and stopped at the end, it measures:

1. `monotone counter next` against `aws dynamodb update-item ... ADD` (the
   AWS CLI from PyPI) doing the same atomic increment, alternating A B A B so
   that drift in the machine's load hits both alike;
2. the number of DynamoDB requests each monotone command makes, counted by a
   proxy between the client and the server (not estimated);
3. contention: N = 1, 2, 4, 8, 16 concurrent workers joining one queue, each
   running monotone processes one after another: total time, joins per
   second, write attempts per join (median and mean), and a check that no
   join was lost and no token was handed out twice.

It prints the tables, writes them as CSV into the output directory, draws
contention.png there, and checks the targets it was given.
"""

import argparse
import csv
import http.client
import http.server
import json
import os
import platform
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

REGION = "us-east-1"
TABLE = "BenchCounters"


# --------------------------------------------------------------------------
# Counting proxy
# --------------------------------------------------------------------------


class Counts:
    """Requests seen by the proxy: by operation, and per client connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.by_op = Counter()
            self.failed = Counter()  # (op, error type)
            self.by_connection = defaultdict(Counter)

    def add(self, connection, op, error):
        with self.lock:
            self.by_op[op] += 1
            self.by_connection[connection][op] += 1
            if error:
                self.failed[(op, error)] += 1

    def snapshot(self):
        with self.lock:
            return (
                Counter(self.by_op),
                Counter(self.failed),
                {k: Counter(v) for k, v in self.by_connection.items()},
            )


def make_proxy(upstream_port, counts):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            op = self.headers.get("X-Amz-Target", "?").split(".")[-1]
            upstream = getattr(self, "upstream", None)
            if upstream is None:
                upstream = self.upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
            upstream.request("POST", self.path, body=body, headers=headers)
            resp = upstream.getresponse()
            data = resp.read()
            error = None
            if resp.status >= 400:
                try:
                    error = json.loads(data).get("__type", "?").split("#")[-1]
                except ValueError:
                    error = str(resp.status)
            counts.add(self.client_address, op, error)
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def start_moto(python, script, workdir):
    port_file = os.path.join(workdir, "moto.port")
    log = open(os.path.join(workdir, "moto.log"), "w")
    proc = subprocess.Popen([python, script, "--port-file", port_file], stdout=log, stderr=log)
    for _ in range(600):
        if os.path.exists(port_file) and open(port_file).read().strip():
            return proc, int(open(port_file).read().strip())
        if proc.poll() is not None:
            sys.exit("moto server exited on start; see " + log.name)
        time.sleep(0.1)
    proc.kill()
    sys.exit("moto server did not start within 60 s")


def isolated_env(work):
    """The environment of a benchmark's monotone processes: test
    credentials, no profile, never instance metadata, HOME in `work`."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": work,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(work, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(work, "none"),
    }


def run(cmd, env, check=True):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if check and out.returncode != 0:
        sys.exit(f"command failed ({out.returncode}): {' '.join(cmd)}\n{out.stderr}")
    return out, elapsed


def median_ms(xs):
    return statistics.median(xs) * 1000


def table(title, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    line = lambda r: "| " + " | ".join(str(x).ljust(w) for x, w in zip(r, widths)) + " |"
    print(f"\n{title}\n")
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


# --------------------------------------------------------------------------
# The benchmarks
# --------------------------------------------------------------------------


def versus_aws_cli(monotone, aws, env, rounds):
    """Alternate `monotone counter next` and the AWS CLI's update-item."""
    mono_cmd = [monotone, "-r", REGION, "-t", TABLE, "-i", "bench-next", "counter", "next"]
    aws_cmd = [
        aws, "dynamodb", "update-item", "--table-name", TABLE,
        "--key", '{"ID": {"S": "bench-awscli"}}',
        "--update-expression", "ADD #value :one, #version :one SET #type = :counter",
        "--expression-attribute-names", '{"#value": "Value", "#version": "Version", "#type": "Type"}',
        "--expression-attribute-values", '{":one": {"N": "1"}, ":counter": {"S": "COUNTER"}}',
        "--return-values", "UPDATED_NEW", "--output", "json",
    ]
    # Warm up both (page cache, table creation).
    for _ in range(3):
        run(mono_cmd, env)
        run(aws_cmd, env)
    mono, awst = [], []
    last_mono = last_aws = 0
    for _ in range(rounds):
        out, t = run(mono_cmd, env)
        v = json.loads(out.stdout)["value"]
        assert v == last_mono + 1 or last_mono == 0, "monotone skipped a value"
        last_mono = v
        mono.append(t)
        out, t = run(aws_cmd, env)
        v = int(json.loads(out.stdout)["Attributes"]["Value"]["N"])
        assert v == last_aws + 1 or last_aws == 0, "the AWS CLI skipped a value"
        last_aws = v
        awst.append(t)
    return mono, awst


def request_costs(monotone, env, counts):
    """Run each monotone command once and count the requests it made."""
    base = [monotone, "-r", REGION, "-t", TABLE]
    steps = [
        ("counter next (new counter)", ["-i", "cost-c", "counter", "next"]),
        ("counter next", ["-i", "cost-c", "counter", "next"]),
        ("counter get", ["-i", "cost-c", "counter", "get"]),
        ("counter rm", ["-i", "cost-c", "counter", "rm"]),
        ("queue join (new queue)", ["-i", "cost-q", "queue", "-p", "a", "join"]),
        ("queue join", ["-i", "cost-q", "queue", "-p", "b", "join"]),
        ("queue join (again, idempotent)", ["-i", "cost-q", "queue", "-p", "b", "join"]),
        ("queue get", ["-i", "cost-q", "queue", "-p", "b", "get"]),
        ("queue list", ["-i", "cost-q", "queue", "list"]),
        ("queue leave", ["-i", "cost-q", "queue", "-p", "a", "leave"]),
        ("queue rm", ["-i", "cost-q", "queue", "rm"]),
    ]
    rows = []
    for name, args in steps:
        counts.reset()
        run(base + args, env)
        by_op, failed, _ = counts.snapshot()
        detail = ", ".join(f"{op} {n}" for op, n in sorted(by_op.items()))
        rows.append((name, sum(by_op.values()), detail))
    return rows


def first_use(monotone, env, counts):
    """Requests of the very first command, on a table that does not exist."""
    counts.reset()
    run([monotone, "-r", REGION, "-t", TABLE + "New", "-i", "c", "counter", "next"], env)
    by_op, _, _ = counts.snapshot()
    return sum(by_op.values()), ", ".join(f"{op} {n}" for op, n in sorted(by_op.items()))


WRITES = ("PutItem", "UpdateItem")


def contention(monotone, env, counts, n, joins_per_worker):
    """n workers, each running `joins_per_worker` join processes in turn."""
    queue_id = f"contention-{n}"
    base = [monotone, "-r", REGION, "-t", TABLE, "-i", queue_id, "queue"]

    def worker(w):
        results = []
        for j in range(joins_per_worker):
            out, _ = run(base + ["-p", f"w{w}-j{j}", "join"], env)
            doc = json.loads(out.stdout)
            results.append((doc["ticket"]["counter"], doc["fencing_token"]))
        return results

    counts.reset()
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = [r for rs in pool.map(worker, range(n)) for r in rs]
    elapsed = time.perf_counter() - start
    _, failed, per_conn = counts.snapshot()
    total = n * joins_per_worker
    # Nothing lost: every join got its own counter and token, and the queue
    # holds all of them.
    counters = sorted(c for c, _ in results)
    tokens = sorted(t for _, t in results)
    out, _ = run(base + ["list"], env)
    listed = json.loads(out.stdout)["tickets"]
    lost = not (
        counters == list(range(1, total + 1))
        and tokens == list(range(1, total + 1))
        and len(listed) == total
    )
    # Each monotone process is one client connection to the proxy.
    attempts = [sum(c[op] for op in WRITES) for c in per_conn.values() if any(c[op] for op in WRITES)]
    conflicts = sum(v for (op, err), v in failed.items() if err == "ConditionalCheckFailedException")
    return {
        "processes": n,
        "joins": total,
        "seconds": elapsed,
        "joins_per_s": total / elapsed,
        "median_attempts": statistics.median(attempts) if attempts else float("nan"),
        "mean_attempts": statistics.mean(attempts) if attempts else float("nan"),
        "max_attempts": max(attempts) if attempts else 0,
        "conflicts": conflicts,
        "lost": lost,
    }


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["processes"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(7, 4.2))
    ax1.plot(ns, [r["joins_per_s"] for r in rows], "o-", color="tab:blue", label="joins per second")
    ax1.set_xlabel("concurrent processes joining one queue")
    ax1.set_ylabel("joins per second", color="tab:blue")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(ns, [str(n) for n in ns])
    ax1.set_ylim(bottom=0)
    ax2 = ax1.twinx()
    ax2.plot(ns, [r["mean_attempts"] - 1 for r in rows], "s--", color="tab:red", label="retries per join (mean)")
    ax2.plot(ns, [r["median_attempts"] - 1 for r in rows], "^:", color="tab:orange", label="retries per join (median)")
    ax2.set_ylabel("retries per join", color="tab:red")
    ax2.set_ylim(bottom=0)
    lines = ax1.get_lines() + ax2.get_lines()
    ax1.legend(lines, [l.get_label() for l in lines], loc="upper left", fontsize=8)
    ax1.set_title("monotone queue join on a local DynamoDB-compatible server (moto)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--monotone", required=True)
    p.add_argument("--aws", required=True)
    p.add_argument("--moto-python", required=True)
    p.add_argument("--moto-server", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--joins-per-worker", type=int, default=8)
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)

    work = tempfile.mkdtemp(prefix="monotone-bench-")
    moto, moto_port = start_moto(args.moto_python, args.moto_server, work)
    counts = Counts()
    proxy = make_proxy(moto_port, counts)
    endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": work,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.path.join(work, "none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(work, "none"),
    }
    try:
        print(f"machine: {machine()}")
        print(f"server: moto on 127.0.0.1:{moto_port}, through a counting proxy at {endpoint}")

        # Creates the table (monotone does on first use) and measures that.
        created_requests, created_detail = first_use(args.monotone, env, counts)

        mono, awst = versus_aws_cli(args.monotone, args.aws, env, args.rounds)
        speedup = statistics.median(awst) / statistics.median(mono)
        rows = [
            ("monotone counter next", f"{median_ms(mono):.1f}", f"{min(mono)*1000:.1f}", f"{max(mono)*1000:.1f}", len(mono)),
            ("aws dynamodb update-item (ADD)", f"{median_ms(awst):.1f}", f"{min(awst)*1000:.1f}", f"{max(awst)*1000:.1f}", len(awst)),
        ]
        header = ("command (one process)", "median ms", "min ms", "max ms", "runs")
        table(f"One atomic increment per process, alternating A B A B ({args.rounds} rounds): monotone is {speedup:.1f}x faster", header, rows)
        write_csv(os.path.join(args.out, "versus_aws_cli.csv"), header, rows)

        cost_rows = request_costs(args.monotone, env, counts)
        cost_rows.insert(0, ("first command, table missing (creates it)", created_requests, created_detail))
        header = ("monotone command", "requests", "by operation")
        table("DynamoDB requests per command (counted by the proxy)", header, cost_rows)
        write_csv(os.path.join(args.out, "requests.csv"), header, cost_rows)

        cont = [contention(args.monotone, env, counts, n, args.joins_per_worker) for n in (1, 2, 4, 8, 16)]
        header = ("processes", "joins", "seconds", "joins/s", "median attempts", "mean attempts", "max attempts", "conditional failures", "lost")
        crow = [
            (r["processes"], r["joins"], f"{r['seconds']:.2f}", f"{r['joins_per_s']:.1f}", r["median_attempts"],
             f"{r['mean_attempts']:.2f}", r["max_attempts"], r["conflicts"], "none" if not r["lost"] else "LOST")
            for r in cont
        ]
        table(f"Contention: N concurrent workers, {args.joins_per_worker} join processes each, one queue", header, crow)
        write_csv(os.path.join(args.out, "contention.csv"), header, crow)
        plot(cont, os.path.join(args.out, "contention.png"))

        costs = {name: n for name, n, _ in cost_rows}
        eight = next(r for r in cont if r["processes"] == 8)
        targets = [
            ("counter next >= 30x faster than the AWS CLI", speedup >= 30, f"{speedup:.1f}x"),
            ("counter next = 1 request", costs["counter next"] == 1, costs["counter next"]),
            ("uncontended join = 2 requests", costs["queue join"] == 2, costs["queue join"]),
            ("8 processes: no join lost", not eight["lost"], "none lost" if not eight["lost"] else "LOST"),
            ("8 processes: median join <= 3 attempts", eight["median_attempts"] <= 3, eight["median_attempts"]),
        ]
        table("Targets", ("target", "met", "measured"), [(t, "yes" if ok else "NO", v) for t, ok, v in targets])
        write_csv(os.path.join(args.out, "targets.csv"), ("target", "met", "measured"), [(t, ok, v) for t, ok, v in targets])
        print(f"\nCSV files and contention.png are in {args.out}")
        return 0 if all(ok for _, ok, _ in targets) and not any(r["lost"] for r in cont) else 1
    finally:
        proxy.shutdown()
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
