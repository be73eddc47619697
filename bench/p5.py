#!/usr/bin/env python3
"""P5: Sluice with 20,000 Ingresses (issue 6). Prints figures; never passes or fails.

Measures, for one Sluice binary and a manifest directory from gen_manifests.py:
  ready      seconds from process start to the first /readyz 200
  rss        VmRSS / VmHWM of the process once ready, and again at the end
  e2e        file renamed into the manifest directory -> the changed Ingress's new host answers 200
             (sequential changes, nothing else running), p50/p99/max, and applyDurationMs from
             /api/v1/snapshot after each change
  churn      CHANGE_RATE changes/s for CHURN_SECONDS while wrk loads bench.local (HTTP/1.1
             keep-alive, GET /22k); failed requests = wrk socket errors + non-2xx/3xx; the e2e
             latency of every change under load
  http1      wrk req/s with HOSTS hosts vs with 10 hosts, alternated A B A B (ROUNDS)
Layout like ../shared/bench (PIN=1): Sluice on cpu0, wrk and the backend on cpu1.

  python3 bench/p5.py --bin /tmp/sluice-bin [--hosts 20000 --tls 2000 --workers 1]
Needs ../shared/bench/setup.sh done (wrk, nginx backend, certs).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.environ.get("SHARED_BENCH", os.path.join(HERE, "..", "..", "shared", "bench"))
CERTS = "/tmp/bench-run/certs"
# P5_PORT_BASE moves all three ports, so two runs (e.g. helpers measuring A and B) can share the machine.
_BASE = int(os.environ.get("P5_PORT_BASE", "22000"))
HTTP_PORT, HTTPS_PORT, ADMIN_PORT = _BASE + 181, _BASE + 543, _BASE + 354


def log(*a):
    print(time.strftime("[%H:%M:%S]"), *a, file=sys.stderr, flush=True)


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def get(port, path, host=None, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path, headers={"Host": host} if host else {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def rss_kb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


class Sluice:
    def __init__(self, args, hosts, tls):
        self.dir = tempfile.mkdtemp(prefix="sluice-p5-")
        subprocess.run([sys.executable, os.path.join(HERE, "gen_manifests.py"), "--out", self.dir,
                        "--hosts", str(hosts), "--tls", str(tls), "--cert", f"{CERTS}/rsa.crt",
                        "--key", f"{CERTS}/rsa.key"], check=True)
        cmd = [args.bin, "serve", "--manifests", self.dir,
               "--http-listen", f"127.0.0.1:{HTTP_PORT}", "--https-listen", f"127.0.0.1:{HTTPS_PORT}",
               "--admin-listen", f"127.0.0.1:{ADMIN_PORT}", "--workers", str(args.workers),
               "--drain-delay", "0s", "--drain-timeout", "1s"]
        if args.pin:
            cmd = ["taskset", "-c", "0"] + cmd
        self.log = open(os.path.join(self.dir, "..", os.path.basename(self.dir) + ".log"), "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.ready_s = None
        while time.monotonic() - self.started < 120:
            try:
                if get(ADMIN_PORT, "/readyz", timeout=0.5)[0] == 200:
                    self.ready_s = time.monotonic() - self.started
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"sluice exited early, see {self.log.name}")
            time.sleep(0.005)
        if self.ready_s is None:
            raise SystemExit("sluice not ready within 120 s")

    def snapshot(self):
        return json.loads(get(ADMIN_PORT, "/api/v1/snapshot")[1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        shutil.rmtree(self.dir, ignore_errors=True)


def change_doc(slot, serial):
    """One Ingress per slot file whose host moves with every change; it reuses Service bench-0."""
    host = f"change-{slot}-{serial}.bench.local"
    return host, (
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        f"  name: change-{slot}\n  namespace: bench\n  annotations:\n"
        "    nginx.ingress.kubernetes.io/ssl-redirect: \"false\"\n"
        "spec:\n  ingressClassName: sluice\n  rules:\n"
        f"    - host: {host}\n      http:\n        paths:\n"
        "          - path: /\n            pathType: Prefix\n            backend:\n"
        "              service:\n                name: bench-0\n                port:\n"
        "                  name: http\n")


def write_change(s, slot, serial):
    host, doc = change_doc(slot, serial)
    tmp = os.path.join(s.dir, f".change-{slot}.tmp")
    with open(tmp, "w") as f:
        f.write(doc)
    os.rename(tmp, os.path.join(s.dir, f"zz-change-{slot}.yaml"))
    return host, time.monotonic()


def wait_serving(host, since, deadline_s):
    """Seconds from `since` until `host` answers 200, or None."""
    c = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=2)
    try:
        while time.monotonic() - since < deadline_s:
            try:
                c.request("GET", "/", headers={"Host": host})
                r = c.getresponse()
                r.read()
                if r.status == 200:
                    return time.monotonic() - since
            except (OSError, http.client.HTTPException):
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=2)
            time.sleep(0.001)
    finally:
        c.close()
    return None


def wrk(seconds, pin, conns=64):
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency",
           f"http://bench.local:{HTTP_PORT}/22k"]
    if pin:
        cmd = ["taskset", "-c", "1"] + cmd
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    failed = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        failed += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        failed += int(m.group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}
    return rps, total, failed, float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "target", "release", "sluice"))
    ap.add_argument("--hosts", type=int, default=20000)
    ap.add_argument("--tls", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--pin", type=int, default=1)
    ap.add_argument("--changes", type=int, default=20, help="sequential changes for e2e latency")
    ap.add_argument("--change-rate", type=float, default=10)
    ap.add_argument("--churn-seconds", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2, help="A/B rounds of the http1 comparison")
    ap.add_argument("--duration", type=int, default=10, help="seconds per http1 round")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: e2e,churn,http1")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    subprocess.run(["bash", f"{SHARED}/certs.sh", CERTS], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["bash", f"{SHARED}/backend/backend.sh", "start"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if args.pin:
        pid = subprocess.run(["bash", f"{SHARED}/backend/backend.sh", "pid"], capture_output=True,
                             text=True).stdout.strip()
        if pid:
            subprocess.run(f"taskset -apc 1 {pid}; for p in $(pgrep -P {pid}); do taskset -apc 1 $p; done",
                           shell=True, stdout=subprocess.DEVNULL)
    results = {"hosts": args.hosts, "tls": args.tls, "workers": args.workers, "pin": args.pin}

    log(f"starting sluice with {args.hosts} hosts ({args.tls} TLS)")
    big = Sluice(args, args.hosts, args.tls)
    results["ready_s"] = round(big.ready_s, 3)
    results["rss_ready_mb"] = round(rss_kb(big.proc.pid)["VmRSS"] / 1024, 1)
    snap = big.snapshot()
    results["initial_apply_ms"] = round(snap["applyDurationMs"], 1)
    results["counts"] = snap["counts"]
    log("ready", results)
    assert get(HTTP_PORT, "/22k", "bench.local")[0] == 200, "bench.local does not answer 200"

    if "e2e" not in skip:
        lat, applies, missed = [], [], 0
        for n in range(args.changes):
            host, since = write_change(big, n % 20, n)
            t = wait_serving(host, since, 10)
            if t is None:
                missed += 1
            else:
                lat.append(t * 1000)
                applies.append(big.snapshot()["applyDurationMs"])
        results["e2e_ms"] = {"n": len(lat), "missed": missed, "p50": round(pct(lat, 50), 1),
                             "p99": round(pct(lat, 99), 1), "max": round(max(lat, default=0), 1)}
        results["apply_ms"] = {"p50": round(pct(applies, 50), 1), "p99": round(pct(applies, 99), 1),
                               "max": round(max(applies, default=0), 1)}
        log("e2e", results["e2e_ms"], "apply", results["apply_ms"])

    if "churn" not in skip:
        load = wrk(args.churn_seconds + 2, args.pin)
        time.sleep(1)
        lat, missed, serial = [], 0, 1000
        lock = threading.Lock()
        threads = []

        def watch(host, since):
            nonlocal missed
            t = wait_serving(host, since, 1.9)  # the slot's host moves again after 2 s
            with lock:
                if t is None:
                    missed += 1
                else:
                    lat.append(t * 1000)

        start = time.monotonic()
        period = 1 / args.change_rate
        while time.monotonic() - start < args.churn_seconds:
            host, since = write_change(big, serial % 20, serial)
            serial += 1
            th = threading.Thread(target=watch, args=(host, since))
            th.start()
            threads.append(th)
            next_at = start + (serial - 1000) * period
            time.sleep(max(0, next_at - time.monotonic()))
        for th in threads:
            th.join()
        out = load.communicate()[0]
        rps, total, failed, p99 = parse_wrk(out)
        results["churn"] = {"changes": serial - 1000, "seconds": args.churn_seconds,
                            "requests": total, "failed": failed, "rps": round(rps), "p99_ms": p99,
                            "e2e_p50_ms": round(pct(lat, 50), 1), "e2e_p99_ms": round(pct(lat, 99), 1),
                            "changes_not_served_within_1.9s": missed}
        results["rss_after_churn_mb"] = round(rss_kb(big.proc.pid)["VmRSS"] / 1024, 1)
        results["hwm_mb"] = round(rss_kb(big.proc.pid)["VmHWM"] / 1024, 1)
        log("churn", results["churn"])

    if "http1" not in skip:
        big.stop()
        rounds = {"big": [], "small": []}
        for r in range(args.rounds):
            order = ["big", "small"] if r % 2 == 0 else ["small", "big"]
            for which in order:
                s = Sluice(args, args.hosts if which == "big" else 10, args.tls if which == "big" else 1)
                wrk(2, args.pin).communicate()
                c0 = cpu_ticks(s.proc.pid)
                rps, total, failed, p99 = parse_wrk(wrk(args.duration, args.pin).communicate()[0])
                cpu = (cpu_ticks(s.proc.pid) - c0) / 100
                rounds[which].append((rps, total / cpu if cpu else float("nan")))
                log(which, f"req/s={rps:.0f} req/cpu-s={total / cpu if cpu else 0:.0f} failed={failed}")
                s.stop()
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
               for k, v in rounds.items()}
        results["http1"] = {"hosts_rps": round(med["big"][0]), "hosts10_rps": round(med["small"][0]),
                            "ratio_rps": round(med["big"][0] / med["small"][0], 3),
                            "hosts_req_per_cpu_s": round(med["big"][1]),
                            "hosts10_req_per_cpu_s": round(med["small"][1]),
                            "ratio_req_per_cpu_s": round(med["big"][1] / med["small"][1], 3)}
    else:
        big.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
