"""Push, not poll: the embedded store's waiting figures, side by side with
flock(1) on the same machine.

- lock hand-over: workers each run `monotone lock -- CMD` (default options:
  --ttl 15s, --poll 1s) in a loop, so a waiter is always queued; a
  hand-over is the next command's start minus the previous command's end
  (both noted by the commands, nanoseconds, one clock). flock(1) runs the
  same loop with `flock FILE CMD`.
- graceful leader change: `queue -p a leave` while `queue -p b wait` waits
  behind it; from the leave's start, and from its return, to the moment the
  waiter's output arrives. The leave commits between the two, so they bound
  commit -> waiter prints from above and below; the second is negative when
  the waiter prints before the leave's process has exited. flock(1)'s
  counterpart is its hand-over.
- watch latency: `doc set` by another process while `doc watch` runs; from
  the set's start, and from its return (its commit is done by then), to the
  moment the watcher's line arrives: bounds of commit -> watcher prints, as
  above.
- crash takeover: a `monotone lock --ttl 15s -- CMD` holds, another waits
  behind it; SIGKILL of the holding `monotone` (its guard then kills the
  command's group) -> the waiter's command starts. flock(1)'s counterpart:
  SIGKILL of the holding `flock FILE CMD`'s whole process group (flock's
  command inherits its lock).
- idle CPU: a `lock` waiter behind a holder, a `queue wait` behind a
  permanent ticket and a `doc watch` on a quiet document, each for
  --idle seconds: CPU time of all the process's threads
  (/proc/PID/task/*/schedstat, nanoseconds) over wall time.
- counter next: whole-process wall and CPU time of `monotone counter
  next`, this build and (with --base) another build, taking turns.

Started by bench/push.sh; prints tables and writes bench/results/push*.csv.
"""

import argparse
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from dynamodb import machine, table, write_csv  # noqa: E402
from lock import handover_gaps, percentile  # noqa: E402

def env_with(**extra):
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    env.update(extra)
    return env


class Lines:
    """The arrival times of a process's output lines, read by a thread of
    their own as they come: a line that arrives before the writer's command
    returns is timed as it arrives (a negative "returns -> prints")."""

    def __init__(self, proc):
        self.times = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(proc.stdout.fileno(),),
                                       daemon=True)
        self.thread.start()

    def _read(self, fd):
        while True:
            data = os.read(fd, 65536)
            if not data:
                return
            at = time.monotonic_ns()
            for _ in range(data.count(b"\n")):
                self.times.put(at)

    def next(self, timeout):
        """The time the next line arrived, waiting up to `timeout` s."""
        try:
            return self.times.get(timeout=timeout)
        except queue.Empty:
            sys.exit("no output in time")


def leader_changes(mono, store, n):
    """(leave start -> new leader, leave return -> new leader), ms."""
    from_start, from_return = [], []
    for i in range(n):
        q = f"leader-{i}"
        base = [mono, "--store", store, "-i", q, "queue"]
        for p in ("a", "b"):
            subprocess.run(base + ["-p", p, "join"], check=True, capture_output=True)
        waiter = subprocess.Popen(base + ["-p", "b", "wait"], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        lines = Lines(waiter)
        time.sleep(0.2)  # let it read the queue and settle into its wait
        t0 = time.monotonic_ns()
        subprocess.run(base + ["-p", "a", "leave"], check=True, capture_output=True)
        t1 = time.monotonic_ns()
        led = lines.next(30)
        waiter.wait()
        from_start.append((led - t0) / 1e6)
        from_return.append((led - t1) / 1e6)
    return from_start, from_return


def watch_latencies(mono, store, n):
    """(set start -> watcher's line, set return -> watcher's line), ms."""
    base = [mono, "--store", store, "-i", "watched", "doc"]
    subprocess.run(base + ["set"], input=b'{"n": 0}', check=True, capture_output=True)
    watcher = subprocess.Popen(base + ["watch"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    lines = Lines(watcher)
    time.sleep(0.3)
    from_start, from_return = [], []
    for i in range(1, n + 1):
        t0 = time.monotonic_ns()
        subprocess.run(base + ["set"], input=f'{{"n": {i}}}'.encode(), check=True,
                       capture_output=True)
        t1 = time.monotonic_ns()
        seen = lines.next(30)
        from_start.append((seen - t0) / 1e6)
        from_return.append((seen - t1) / 1e6)
        time.sleep(0.05)
    watcher.terminate()
    watcher.wait()
    return from_start, from_return


def await_path(path, timeout=60):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"{path} never appeared")
        time.sleep(0.005)


def crash_takeovers(mono, store, lockfile, n, ttl="15s"):
    """`n` crash takeovers of monotone lock and of flock(1): (ms, ms)."""
    hold = 'echo > "$OUT/held"; exec sleep 600'
    take = 'date +%s%N > "$OUT/took.tmp"; mv "$OUT/took.tmp" "$OUT/took"'
    mono_lock = [mono, "--store", store, "-i", "takeover", "lock", "--ttl", ttl, "--"]
    figures = {"monotone": [], "flock": []}
    for _ in range(n):
        for name, lock in (("monotone", mono_lock), ("flock", ["flock", lockfile])):
            out = tempfile.mkdtemp(prefix="monotone-takeover-")
            env = env_with(OUT=out)
            holder = subprocess.Popen(lock + ["sh", "-c", hold], env=env, start_new_session=True)
            await_path(os.path.join(out, "held"))
            waiter = subprocess.Popen(lock + ["sh", "-c", take], env=env)
            if name == "monotone":
                while True:
                    r = subprocess.run([mono, "--store", store, "-i", "takeover", "queue", "list"],
                                       capture_output=True, text=True, check=True)
                    if r.stdout.count('"process_id"') == 2:
                        break
                    time.sleep(0.01)
            else:
                time.sleep(0.2)  # flock(1) waits in the kernel from its start
            killed = time.time_ns()
            if name == "monotone":
                holder.kill()  # monotone alone; its guard kills the group
            else:
                os.killpg(holder.pid, 9)
            holder.wait()
            if waiter.wait(timeout=120) != 0:
                sys.exit(f"{name}: the waiter failed")
            took = int(open(os.path.join(out, "took")).read())
            figures[name].append((took - killed) / 1e6)
            shutil.rmtree(out, ignore_errors=True)
    return figures["monotone"], figures["flock"]


def cpu_ns(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def idle_cpu(mono, store, seconds):
    """Share of one core used by idle waiters and a watcher over `seconds`."""
    tmp = tempfile.mkdtemp(prefix="monotone-push-idle-")
    procs = {}
    holder = subprocess.Popen([mono, "--store", store, "-i", "idle-lock", "lock", "--", "sleep",
                               str(seconds + 30)], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    procs["lock waiter (behind a holder renewing a 15 s lease)"] = subprocess.Popen(
        [mono, "--store", store, "-i", "idle-lock", "lock", "--", "true"],
        stdout=subprocess.DEVNULL)
    base = [mono, "--store", store, "-i", "idle-queue", "queue"]
    subprocess.run(base + ["-p", "a", "join"], check=True, capture_output=True)
    subprocess.run(base + ["-p", "b", "join"], check=True, capture_output=True)
    procs["queue wait (behind a permanent ticket)"] = subprocess.Popen(
        base + ["-p", "b", "wait"], stdout=subprocess.DEVNULL)
    doc = [mono, "--store", store, "-i", "idle-doc", "doc"]
    subprocess.run(doc + ["set"], input=b"{}", check=True, capture_output=True)
    procs["doc watch (quiet document)"] = subprocess.Popen(doc + ["watch"],
                                                           stdout=subprocess.DEVNULL)
    time.sleep(2)  # past start-up
    start = {name: cpu_ns(p.pid) for name, p in procs.items()}
    t0 = time.monotonic_ns()
    time.sleep(seconds)
    wall = time.monotonic_ns() - t0
    used = {name: (cpu_ns(p.pid) - start[name]) / wall * 100 for name, p in procs.items()}
    for p in list(procs.values()) + [holder]:
        p.terminate()
        p.wait()
    shutil.rmtree(tmp, ignore_errors=True)
    return used


def whole_process(argv):
    """(wall ms, CPU ms: user + system) of one run of `argv`."""
    t0 = time.monotonic_ns()
    pid = os.posix_spawn(argv[0], argv, os.environ,
                         file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, usage = os.wait4(pid, 0)
    wall = (time.monotonic_ns() - t0) / 1e6
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} failed")
    return wall, (usage.ru_utime + usage.ru_stime) * 1e3


def counter_next(builds, n):
    """Wall and CPU times of `counter next` per build, `n` runs each, the
    builds taking turns run by run (so that a change of the machine's load
    falls on both). CPU time counts this process alone: it varies less with
    the load of a shared machine than wall time does."""
    work = tempfile.mkdtemp(prefix="monotone-push-next-")
    wall = {name: [] for name, _ in builds}
    cpu = {name: [] for name, _ in builds}
    for i in range(n):
        for name, mono in builds if i % 2 == 0 else builds[::-1]:
            store = f"sqlite:{os.path.join(work, name.replace(' ', '_'))}.db"
            w, c = whole_process([mono, "--store", store, "-i", "c", "counter", "next"])
            wall[name].append(w)
            cpu[name].append(c)
    shutil.rmtree(work, ignore_errors=True)
    return wall, cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--monotone", required=True)
    p.add_argument("--base", help="another build of monotone, for counter next")
    p.add_argument("--base-name", default="base")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--rounds", type=int, default=25, help="locks per worker")
    p.add_argument("--hold", default="0.02")
    p.add_argument("--changes", type=int, default=40, help="leader changes, watched writes")
    p.add_argument("--takeovers", type=int, default=20, help="crash takeovers per lock")
    p.add_argument("--idle", type=int, default=30, help="seconds of idle CPU measurement")
    p.add_argument("--next", type=int, default=200, help="counter next runs per build")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    mono = args.monotone
    work = tempfile.mkdtemp(prefix="monotone-push-bench-")
    store = f"sqlite:{os.path.join(work, 'push.db')}"
    lockfile = os.path.join(work, "flock")
    load = os.getloadavg()
    print(f"machine: {machine()}; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    try:
        rows = []
        lock = handover_gaps([mono, "--store", store, "-i", "handover", "lock", "--"], env_with(),
                             args.workers, args.rounds, args.hold)
        fl = handover_gaps(["flock", lockfile], env_with(), args.workers, args.rounds, args.hold)
        print(f"  lock: median {statistics.median(lock):.2f} ms; flock {statistics.median(fl):.2f} ms",
              file=sys.stderr)
        leave_start, leave_return = leader_changes(mono, store, args.changes)
        set_start, set_return = watch_latencies(mono, store, args.changes)
        fmt = lambda xs: (f"{statistics.median(xs):.2f}", f"{percentile(xs, 99):.2f}")
        rows.append(("lock hand-over (command ends -> next starts)", len(lock), *fmt(lock), *fmt(fl)))
        rows.append(("leader change: queue leave starts -> wait prints", len(leave_start),
                     *fmt(leave_start), *fmt(fl)))
        rows.append(("leader change: queue leave returns -> wait prints", len(leave_return),
                     *fmt(leave_return), *fmt(fl)))
        crash, crash_flock = crash_takeovers(mono, store, lockfile, args.takeovers)
        rows.append(("crash takeover: SIGKILL of the holder -> next command starts (--ttl 15s)",
                     len(crash), *fmt(crash), *fmt(crash_flock)))
        rows.append(("watch: doc set starts -> watch prints", len(set_start), *fmt(set_start), "", ""))
        rows.append(("watch: doc set returns (committed) -> watch prints", len(set_return),
                     *fmt(set_return), "", ""))
        header = ("figure", "samples", "monotone median ms", "monotone p99 ms", "flock(1) median ms",
                  "flock(1) p99 ms")
        table(f"Embedded store, default options ({args.workers} lock workers x {args.rounds}, "
              f"commands holding {args.hold}s)", header, rows)
        write_csv(os.path.join(args.out, "push_latency.csv"), header, rows)

        used = idle_cpu(mono, store, args.idle)
        cpu_rows = [(name, f"{share:.4f}") for name, share in used.items()]
        table(f"Idle CPU over {args.idle} s (share of one core, %)", ("process", "% of a core"),
              cpu_rows)
        write_csv(os.path.join(args.out, "push_idle_cpu.csv"), ("process", "% of a core"), cpu_rows)

        builds = [("this build", mono)]
        if args.base:
            builds.append((args.base_name, args.base))
        wall, cpu = counter_next(builds, args.next)
        header = ("build", "runs", "wall median ms", "wall p99 ms", "CPU median ms")
        next_rows = [(name, len(wall[name]), f"{statistics.median(wall[name]):.3f}",
                      f"{percentile(wall[name], 99):.3f}", f"{statistics.median(cpu[name]):.3f}")
                     for name, _ in builds]
        table("counter next, whole process (builds taking turns)", header, next_rows)
        if args.base:
            ratio = lambda t: statistics.median(t["this build"]) / statistics.median(t[args.base_name])
            print(f"\nthis build / {args.base_name}: wall {ratio(wall):.3f}, CPU {ratio(cpu):.3f} (medians)")
        write_csv(os.path.join(args.out, "push_counter_next.csv"), header, next_rows)
        load = os.getloadavg()
        print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
