#!/usr/bin/env python3
"""The summary of scripts/gpu-check.sh: reads the parts' logs and results in
WORK and writes OUT/summary.md (our figures next to diffusers', the GPU tests
per case, the image gap) and OUT/summary.json; shortens the logs' long lines
(the worker logs each result with its base64 image) and keeps the result
JSONs without their images, for gpu-check.sh's logs.tar.gz. Standard library
only. Exit status 0 when every part passed (bench_unet_bf16 is optional).

Run: scripts/gpu_summary.py MODE WORK OUT ELAPSED_S (gpu-check.sh does)
"""

import json
import os
import re
import sys

OPTIONAL = {"bench_unet_bf16", "bench_unet_plain", "worker_batch4"}
LONG_LINE = 2000
# issue 15's targets: (row, bound on ours, bound on ours / diffusers)
TARGETS = {"step": "≤ 33 ms and ≤ 0.6× diffusers", "job": "≤ 1.2 s and ≤ 0.6× diffusers",
           "vae": "≤ 0.7× diffusers' fp32 decode", "cold": "≤ 3 s", "memory": "≤ 10 GB"}


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def json_lines(text):
    """The JSON objects printed one per line among a log's other lines."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def number(pattern, text, cast=float):
    m = re.search(pattern, text)
    return cast(m.group(1)) if m else None


def fmt(v, digits=1, unit=""):
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def ratio(ours, theirs):
    return f"{ours / theirs:.2f}×" if ours and theirs else "–"


# ---- the parts' outputs ------------------------------------------------------------------------

def parts_table(work):
    rows = []
    for line in read(os.path.join(work, "logs", "parts.tsv")).splitlines():
        name, status, seconds, command = (line.split("\t") + ["", "", ""])[:4]
        rows.append({"part": name, "status": status, "seconds": float(seconds or 0), "command": command})
    return rows


def cmocka_cases(text):
    """[(test, label, status)] from cmocka's [ RUN ] / [ OK ] / [ FAILED ]
    lines. A file that runs its tests in several groups (test_cuda_ops: one
    per precision) labels each case with its group's precision, the one its
    figure lines name ("fp16 max err"); a single group gets no label."""
    groups = re.split(r"^\[==========\] Running \d+ test\(s\)\.$", text, flags=re.M)[1:]
    cases = []
    for group in groups:
        label = number(r" (fp32|fp16|bf16) max err", group, str) if len(groups) > 1 else ""
        for m in re.finditer(r"^\[ +(OK|FAILED|SKIPPED|ERROR) +\] (\S+)", group, re.M):
            cases.append({"test": m.group(2), "label": label or "", "status": m.group(1)})
    return cases


def test_result(work, name):
    text = read(os.path.join(work, "logs", f"{name}.log"))
    failures = [line.strip() for line in text.splitlines()
                if re.search(r"ERROR|FAILED|fail|error", line) and not line.startswith("[  PASSED")][:20]
    return {"opened": next((line for line in text.splitlines() if " on " in line and name in line), ""),
            "cases": cmocka_cases(text), "failures": failures}


def pipeline_figures(work):
    """{(job, precision): (max, mean)} of test_cuda_pipeline's GPU-vs-CPU lines."""
    figures = {}
    for m in re.finditer(r"^  (.+?)\s+(fp32|fp16|bf16): max \|diff\| (\d+)/255, mean ([\d.]+)/255",
                         read(os.path.join(work, "logs", "test_cuda_pipeline.log")), re.M):
        figures.setdefault((m.group(1).strip(), m.group(2)), (int(m.group(3)), float(m.group(4))))
    return figures


def test_bounds(root):
    """The precision cases' image bounds in tests/test_cuda_pipeline.c."""
    text = read(os.path.join(root, "tests", "test_cuda_pipeline.c"))
    return {m.group(1): (int(m.group(2)), float(m.group(3)))
            for m in re.finditer(r'\{SD_PRECISION_\w+, "(\w+)", (\d+), ([\d.]+)\}', text)}


def worker_run(work, n, log_name):
    log = read(os.path.join(work, "logs", f"{log_name}.log"))
    run = {"device": number(r"device: (.*)", log, str), "warm_up": number(r"warm-up: (.*)", log, str),
           "ready_s": number(r"engine ready in ([\d.]+) s", log)}
    try:
        with open(os.path.join(work, f"result{n}.json")) as f:
            result = json.load(f)
    except (OSError, ValueError) as e:
        run["error"] = f"no result JSON ({e})"
        return run
    out = result.get("output") or {}
    for image in out.get("images", []):
        image.pop("image", None)
    out.pop("image", None)
    with open(os.path.join(work, "logs", f"result{n}.json"), "w") as f:
        json.dump(result, f, indent=1)
    if "error" in result or "timings" not in out:
        run["error"] = result.get("error") or "no timings in the result"
    run["timings"] = out.get("timings")
    run["metadata"] = {k: v for k, v in (out.get("metadata") or {}).items() if k in ("device", "peak_memory_mb", "rng")}
    return run


def bench_unet(work, name):
    text = read(os.path.join(work, "logs", f"{name}.log"))
    flop, gflops = number(r"unet_flop (\d+)", text), number(r"([\d.]+) GFLOP/s", text)
    profile = re.search(r"op profile of one more pass:\n(.*?)\nbackend peak", text, re.S)
    median_s = number(r"median ([\d.]+) s/pass", text)
    # GFLOP/s has more digits than the median's two decimals of a second
    ms = flop / (gflops * 1e9) * 1000 if flop and gflops and gflops >= 100 else median_s and median_s * 1000
    return {"ms": ms, "gflops": gflops,
            "passes_s": [float(x) for x in re.findall(r"pass \d+: ([\d.]+) s", text)],
            "device_peak_mb": number(r"device memory in use at its peak: ([\d.]+) MB", text),
            "backend": number(r"backend: (.*)", text, str), "profile": profile.group(1) if profile else ""}


def bench_vae(work):
    text = read(os.path.join(work, "logs", "bench_vae_fp16.log"))
    return {"s": number(r"median ([\d.]+) s over", text), "backend": number(r"backend: (.*)", text, str),
            "peak_mb": number(r"backend peak ([\d.]+) MB", text)}


def by_part(records):
    out = {}
    for r in records:
        out.setdefault(r.get("part"), []).append(r)
    return out


# ---- summary.md ---------------------------------------------------------------------------------

def speed_rows(r):
    unet, vae, full = r["bench_unet_fp16"], r["bench_vae_fp16"], r["diffusers"]
    d_unet, d_vae = (full.get("full.unet") or [{}])[0], (full.get("full.vae") or [{}])[0]
    d_job, d_load = (full.get("full.job") or [{}])[0], (full.get("full.load") or [{}])[0]
    cold, warm = r["worker_cold"], r["worker_warm"]
    job = (warm.get("timings") or {}).get("total") or (cold.get("timings") or {}).get("total")
    denoise = (warm.get("timings") or cold.get("timings") or {}).get("denoise")
    decode = (warm.get("timings") or cold.get("timings") or {}).get("decode")
    peak = (warm.get("metadata") or cold.get("metadata") or {}).get("peak_memory_mb")
    d_ms = d_unet.get("ms_median")
    rows = [
        ("one CFG UNet step, fp16, batch 2, 77 tokens (ms)", fmt(unet["ms"], 1), fmt(d_ms, 1),
         ratio(unet["ms"], d_ms), TARGETS["step"]),
        ("UNet CFG steps per second", fmt(1000 / unet["ms"] if unet["ms"] else None, 2),
         fmt(1000 / d_ms if d_ms else None, 2), "", "≥ 30"),
        ("one CFG UNet step, bf16 (ms)", fmt(r["bench_unet_bf16"]["ms"], 1), "", "", ""),
        ("one CFG UNet step, fp16, plain kernels: generic attention, bias after the GEMM (ms)",
         fmt(r["bench_unet_plain"]["ms"], 1), "", "", ""),
        ("test_input.json job end to end (s): worker total / pipeline call", fmt(job, 3),
         fmt(d_job.get("seconds"), 3), ratio(job, d_job.get("seconds")), TARGETS["job"]),
        ("  of which denoise, 24 steps (s)", fmt(denoise, 3), "", "", ""),
        ("  of which VAE decode, in the job (s)", fmt(decode, 3), "", "", ""),
        ("VAE decode 1024² (s): bench_vae_decode / fp32 upcast decode", fmt(vae["s"], 3),
         fmt(d_vae.get("ms_median") / 1000 if d_vae.get("ms_median") else None, 3),
         ratio(vae["s"], d_vae.get("ms_median") / 1000 if d_vae.get("ms_median") else None), TARGETS["vae"]),
        ("device peak memory, the job (MB)", fmt(peak, 0), fmt(d_job.get("peak_allocated_mb"), 0),
         ratio(peak, d_job.get("peak_allocated_mb")), TARGETS["memory"]),
        ("device peak memory, 1024² with num_images 4 (MB; a 24 GB card must hold it)",
         fmt((r["worker_batch4"].get("metadata") or {}).get("peak_memory_mb"), 0), "", "", "≤ 24576"),
        ("cold start: process start to engine ready, warm page cache (s)", fmt(warm.get("ready_s"), 1),
         fmt(d_load.get("seconds"), 1) + " (from_single_file + .to)", "", TARGETS["cold"]),
        ("first start: same, hashing the checkpoint once (s)", fmt(cold.get("ready_s"), 1), "", "", ""),
        ("worker process wall time, cold / warm run (s)",
         f"{fmt(r['wall'].get('worker_cold'))} / {fmt(r['wall'].get('worker_warm'))}", "", "", ""),
    ]
    return rows


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def tests_section(r):
    out = []
    for name in ("test_cuda_ops", "test_cuda_pipeline"):
        t = r[name]
        status = r["status"].get(name, "not run")
        passed = sum(c["status"] == "OK" for c in t["cases"])
        out.append(f"**{name}**: {status}; {passed} of {len(t['cases'])} cases OK. {t['opened']}")
        cols = sorted({c["label"] for c in t["cases"]}, key=lambda s: ("fp32", "fp16", "bf16", "").index(s)
                      if s in ("fp32", "fp16", "bf16", "") else 9)
        tests = list(dict.fromkeys(c["test"] for c in t["cases"]))
        grid = {(c["test"], c["label"]): c["status"] for c in t["cases"]}
        out.append(table(["case"] + [c or "result" for c in cols],
                         [[tn] + [grid.get((tn, c), "") for c in cols] for tn in tests]))
        if t["failures"]:
            out.append("```\n" + "\n".join(t["failures"]) + "\n```")
    return "\n\n".join(out)


def gap_section(r):
    gap = {(g.get("job"), g.get("precision")): g for g in r["gap"].get("gap.job", [])}
    ours, bounds = r["pipeline_figures"], r["bounds"]
    jobs = list(dict.fromkeys(j for j, _ in gap)) or list(dict.fromkeys(j for j, _ in ours))
    rows = []
    for job in jobs:
        for p in ("fp16", "bf16"):
            g, o = gap.get((job, p)), ours.get((job, p))
            d = (g or {}).get("vs_fp32") or {}
            theirs = f"{d['max']} / {d['mean']:.3f}" if d else (g or {}).get("error", "–")
            rows.append([job, p, f"{o[0]} / {o[1]:.3f}" if o else "–", theirs,
                         "NaN" if (g or {}).get("nan") else "",
                         f"{bounds[p][0]} / {bounds[p][1]}" if p in bounds else "–"])
    return table(["job", "precision", "ours: GPU vs our CPU (max / mean, 1/255)",
                  "diffusers: p vs its fp32 (max / mean)", "", "test bound now (max / mean)"], rows)


def write_md(r, path):
    emulated = r["mode"] == "emulate"
    gpu = ((r["diffusers"].get("full.machine") or r["gap"].get("gap.machine") or [{}])[0]).get("gpu") or \
        number(r"GPU 0: (.*?) \(UUID", r["machine"], str) or ""
    failing = [p["part"] + " (" + p["status"] + ")" for p in r["parts"] if not part_passed(p, r)]
    md = [f"# GPU check{' (EMULATED: host CPU, not GPU results)' if emulated else ''}: {gpu}",
          f"Result: **{'PASSED' if not failing else 'NOT PASSED'}**"
          + (f": {', '.join(failing)}" if failing else "") + f". {r['elapsed']} s in all.",
          "## Machine", "```\n" + r["machine"].strip() + "\n```",
          "## Speed: ours and diffusers 0.42.1 (fp16, SDPA) on the same card, same run",
          table(["what", "ours", "diffusers", "ours / diffusers", "target (issue 15)"], speed_rows(r)),
          "Our step time is bench_unet_step's median of 5 passes (the first uploads the weights); diffusers' "
          "the median of 5 calls of pipe.unet after one warm-up. The job: the worker's own timings.total of the "
          "warm run (rng cpu), against the pipeline call after a 2-step warm-up call. Device: "
          + str(r["worker_warm"].get("device") or r["worker_cold"].get("device")),
          "Warm-up line: " + str(r["worker_cold"].get("warm_up")),
          "## Image parity: our GPU images against diffusers' own fp16/bf16-vs-fp32 gap",
          "The jobs of tests/test_cuda_pipeline.c's compare_jobs on the small model. Issue 14's tolerance for our "
          "fp16/bf16 images is diffusers' gap (right); the test's bound (last column) should be set from it.",
          gap_section(r)]
    cmp = (r["compare"].get("compare") or [{}])[0]
    md.append("The job's image (test_input.json with rng cpu on the full-size random checkpoint; under --emulate "
              "the small model at 256²), the worker against diffusers fp16, same seed and sampler: "
              + (f"max {cmp['max']}/255, mean {cmp['mean']:.3f}/255, {cmp['differ']} of {cmp['bytes']} bytes differ"
                 if "max" in cmp else cmp.get("error", "not compared")))
    md += ["## GPU tests", tests_section(r)]
    if r["bench_unet_fp16"]["profile"]:
        md += ["## Our UNet step (fp16): time per op kind, summed over the passes",
               "```\n" + r["bench_unet_fp16"]["profile"] + "\n```"]
    md += ["## Parts", table(["part", "status", "seconds", "command"],
                             [[p["part"], p["status"], f"{p['seconds']:.1f}", "`" + p["command"][:120] + "`"]
                              for p in r["parts"]])]
    with open(path, "w") as f:
        f.write("\n\n".join(md) + "\n")


def part_passed(p, r):
    if p["part"] in OPTIONAL and p["status"] in ("ok", "skipped"):
        return True
    if p["status"] != "ok":
        return False
    if p["part"] in ("worker_cold", "worker_warm"):
        return "error" not in r[p["part"]]
    if p["part"] in ("gap", "diffusers_full"):
        records = r["gap" if p["part"] == "gap" else "diffusers"]
        return not any("error" in x for xs in records.values() for x in xs) and \
            not any(x.get("nan") for x in records.get("gap.job", []))
    return True


def shorten_logs(logs):
    for name in os.listdir(logs):
        path = os.path.join(logs, name)
        if not name.endswith(".log") or name == "gpu-check.log":
            continue
        lines = read(path).splitlines()
        with open(path, "w") as f:
            f.write("\n".join(line if len(line) <= LONG_LINE else line[:LONG_LINE] + " [...]" for line in lines) + "\n")


def main():
    mode, work, out, elapsed = sys.argv[1:5]
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
    logs = os.path.join(work, "logs")
    parts = parts_table(work)
    r = {"mode": mode, "elapsed": int(elapsed), "parts": parts,
         "status": {p["part"]: p["status"] for p in parts}, "wall": {p["part"]: p["seconds"] for p in parts},
         "machine": read(os.path.join(logs, "machine.log")),
         "worker_cold": worker_run(work, 1, "worker_cold"), "worker_warm": worker_run(work, 2, "worker_warm"),
         "worker_batch4": worker_run(work, 3, "worker_batch4"),
         "bench_unet_fp16": bench_unet(work, "bench_unet_fp16"), "bench_unet_bf16": bench_unet(work, "bench_unet_bf16"),
         "bench_unet_plain": bench_unet(work, "bench_unet_plain"),
         "bench_vae_fp16": bench_vae(work),
         "diffusers": by_part(json_lines(read(os.path.join(logs, "diffusers_full.log")))),
         "gap": by_part(json_lines(read(os.path.join(logs, "gap.log")))),
         "compare": by_part(json_lines(read(os.path.join(logs, "compare.log")))),
         "test_cuda_ops": test_result(work, "test_cuda_ops"), "test_cuda_pipeline": test_result(work, "test_cuda_pipeline"),
         "pipeline_figures": pipeline_figures(work), "bounds": test_bounds(root)}
    shorten_logs(logs)
    os.makedirs(out, exist_ok=True)
    write_md(r, os.path.join(out, "summary.md"))
    r["pipeline_figures"] = {f"{j} / {p}": v for (j, p), v in r["pipeline_figures"].items()}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(r, f, indent=1)
    return 0 if all(part_passed(p, r) for p in parts) else 1


if __name__ == "__main__":
    sys.exit(main())
