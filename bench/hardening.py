#!/usr/bin/env python3
"""Issue 16's figures for one sdxl-worker binary (run it on the old and the
new one, on the same machine, to compare): in --rp_serve_api mode with the
bundled small model (tests/data/small/models.json),
  1. the cost of the prompt "a BREAK " x 1249 (1,249 chunks) against "a":
     wall time of /runsync and the result's encode/denoise timings (256²,
     8 steps), or how soon it is refused;
  2. the RSS of the worker after 20 unpolled /run jobs of 15 MB each (and
     how many were accepted);
  3. /health latency with 256 idle connections held open (half with a
     request begun and never finished).
Python standard library only.

    python3 bench/hardening.py [--worker build/sdxl-worker]
"""
import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def request(port, method, path, body=None, timeout=600):
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    t0 = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), time.time() - t0
    except urllib.error.HTTPError as e:
        return e.code, e.read(), time.time() - t0


def start(worker, port):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(MODELS_CONFIG="tests/data/small/models.json", MODELS_DIR=tempfile.mkdtemp(prefix="hardening-"),
               RUNPOD_LOG_LEVEL="WARN", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([worker, "--rp_serve_api", "--rp_api_port", str(port)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if request(port, "GET", "/health", timeout=2)[0] == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the worker did not start")


def prompt_cost(port):
    job = {"width": 256, "height": 256, "steps": 8, "seed": 1, "loras": []}
    for name, prompt in (("a", "a"), ('"a BREAK " x 1249', "a BREAK " * 1249)):
        status, body, secs = request(port, "POST", "/runsync", {"input": dict(job, prompt=prompt)})
        answer = json.loads(body)
        if answer.get("status") == "COMPLETED":
            t = answer["output"]["timings"]
            print(f"prompt {name}: {secs:.2f} s (encode {t['encode']:.2f} s, denoise {t['denoise']:.2f} s)")
        else:
            print(f"prompt {name}: {answer.get('status')} after {secs * 1000:.0f} ms: {answer.get('error', '')[:160]}")


def unpolled_jobs(port, pid):
    before = rss_mb(pid)
    pad = "x" * (15 * 1000 * 1000)
    body = json.dumps({"input": {"prompt": "x", "pad": pad}}).encode()
    codes = [request(port, "POST", "/run", body)[0] for _ in range(20)]
    time.sleep(1)
    print(f"RSS {before:.0f} MB -> {rss_mb(pid):.0f} MB after 20 unpolled 15 MB /run jobs "
          f"({codes.count(200)} accepted, {codes.count(429)} answered 429)")


def idle_connections(port):
    socks = []
    for i in range(256):
        s = socket.create_connection(("127.0.0.1", port))
        if i % 2:
            s.sendall(b'POST /runsync HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"inp')
        socks.append(s)
    time.sleep(0.5)
    try:
        status, _, secs = request(port, "GET", "/health", timeout=30)
        print(f"/health with 256 idle connections: HTTP {status} in {secs * 1000:.1f} ms")
    except OSError as e:
        print(f"/health with 256 idle connections: no answer ({e})")
    for s in socks:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=os.path.join(ROOT, "build", "sdxl-worker"))
    args = ap.parse_args()
    for step in (prompt_cost, unpolled_jobs, idle_connections):
        port = free_port()
        proc = start(args.worker, port)
        try:
            step(port, proc.pid) if step is unpolled_jobs else step(port)
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
