#!/usr/bin/env python3
"""RunPod's official client against the worker's local API: the check that a
user can point `runpod.Endpoint` at `sdxl-worker --rp_serve_api` and test
their app without deploying (issue 16). Not run in CI (it needs the runpod
SDK from PyPI); the C tests of the same paths are in tests/test_rp_devapi.c.

Starts build/sdxl-worker (or --worker) in --rp_serve_api mode on a free
loopback port with the bundled small model (tests/data/small/models.json), sets
runpod.endpoint_url_base = "http://127.0.0.1:PORT/v2", and drives every path
the client builds (runpod 1.12.0 runpod/endpoint/runner.py):
  Endpoint.health()           GET  {base}/{endpoint}/health
  Endpoint.run_sync(...)      POST {base}/{endpoint}/runsync
  Endpoint.run(...)           POST {base}/{endpoint}/run
  Job.status(), Job.output()  GET  {base}/{endpoint}/status/{id}
  Job.stream()                GET  {base}/{endpoint}/stream/{id}
  Job.cancel()                POST {base}/{endpoint}/cancel/{id}   (a queued job, and a running one)
Exits 0 when every check holds; prints what it saw.

    tools/reference/.venv/bin/python tools/reference/runpod_client_paths.py [--worker PATH]
"""
import argparse
import base64
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

import runpod
from runpod.endpoint.runner import Job

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ENDPOINT = "local-sdxl"
SMALL_JOB = {"prompt": "a lighthouse at dawn", "width": 256, "height": 256, "steps": 4, "seed": 7, "loras": []}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        raise SystemExit(1)


def start_worker(worker, port, log):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    env.update(MODELS_CONFIG="tests/data/small/models.json", MODELS_DIR=tempfile.mkdtemp(prefix="rp-client-"),
               RUNPOD_LOG_LEVEL="INFO", OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.Popen([worker, "--rp_serve_api", "--rp_api_port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=log)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the worker did not start listening (see its log)")


def is_png(b64):
    return base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", default=os.path.join(ROOT, "build", "sdxl-worker"))
    args = ap.parse_args()
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="rp-client-worker-", suffix=".log", delete=False)
    proc = start_worker(args.worker, port, log)
    try:
        runpod.api_key = "local-key"  # the client needs one; the local API ignores it
        runpod.endpoint_url_base = f"http://127.0.0.1:{port}/v2"
        endpoint = runpod.Endpoint(ENDPOINT)

        health = endpoint.health()
        check(health.get("status") == "ok" and "inQueue" in health.get("jobs", {}), f"health: {health}")

        out = endpoint.run_sync(dict(SMALL_JOB), timeout=300)
        check(is_png(out["image"]) and out["images"][0]["seed"] == 7, "run_sync: a PNG with seed 7")

        job = endpoint.run(dict(SMALL_JOB, seed=8))
        check(job.status() == "COMPLETED", f"run {job.job_id}, then status: COMPLETED")
        out = job.output()
        check(is_png(out["image"]) and out["images"][0]["seed"] == 8, "output: a PNG with seed 8")
        again = Job(ENDPOINT, job.job_id, endpoint.rp_client)  # a fresh client object polls the kept answer
        check(again.status() == "COMPLETED" and again.output()["images"][0]["seed"] == 8,
              "a second poll gets the kept answer")

        streamed = endpoint.run(dict(SMALL_JOB))
        chunks = list(Job(ENDPOINT, streamed.job_id, endpoint.rp_client).stream())
        check(chunks == [], "stream of a non-generator handler ends without chunks (and without a KeyError)")

        queued = endpoint.run(dict(SMALL_JOB))
        answer = queued.cancel()
        check(answer == {"id": queued.job_id, "status": "CANCELLED"}, f"cancel a queued job: {answer}")
        check(queued.status() == "CANCELLED", "its status: CANCELLED")

        long_job = endpoint.run(dict(SMALL_JOB, steps=150))
        result = {}
        runner = threading.Thread(target=lambda: result.update(status=long_job.status()))
        t0 = time.time()
        runner.start()  # this poll runs the job (the local API runs a stored job when it is polled)
        while time.time() - t0 < 8 and endpoint.health()["jobs"]["inProgress"] < 1:
            time.sleep(0.1)  # until that poll runs it (a poll from here could have claimed it first)
        seen = Job(ENDPOINT, long_job.job_id, endpoint.rp_client).status()
        check(seen == "IN_PROGRESS", "another poll while it runs: IN_PROGRESS")
        answer = long_job.cancel()
        check(answer == {"id": long_job.job_id, "status": "CANCELLED"}, f"cancel a running job: {answer}")
        runner.join(60)
        check(result.get("status") == "CANCELLED", f"the poll that ran it answers CANCELLED after {time.time() - t0:.1f} s")
        check(Job(ENDPOINT, long_job.job_id, endpoint.rp_client).status() == "CANCELLED", "later polls: CANCELLED")
        print("all RunPod client paths work against the local API")
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        print(f"worker log: {log.name}")


if __name__ == "__main__":
    sys.exit(main())
