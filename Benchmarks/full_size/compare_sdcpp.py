#!/usr/bin/env python3
"""stable-diffusion.cpp and Schnell on the same full-size random-weight FLUX.1-schnell files.

    python3 compare_sdcpp.py --sd /path/to/sd-cli --models DIR [--schnell /path/to/schnell] [options]

DIR is what make_models.py writes (flux1-schnell-Q8_0.gguf, t5xxl-Q8_0.gguf, clip_l.safetensors,
ae.safetensors, tokenizers/). Each engine runs once as a child process with its output in a log;
its peak resident memory comes from os.wait4's rusage for that child alone (ru_maxrss, which
counts file-backed pages of memory-mapped weights it touched). sd.cpp's per-stage seconds are read
from its log lines ("... completed, taking X s"), Schnell's from its --timings-json file.

Writes OUT/summary.json and OUT/summary.md (OUT defaults to ./sdcpp-compare-<time>). The weights are
random, so the images are noise: this compares time and memory, never pictures. Only the standard
library is needed. Both engines use the same prompt, size, steps, seed and thread count; sd.cpp runs
with --cfg-scale 1 (no negative pass, as schnell needs) and the Euler sampler.
"""

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_measured(command, log_path, env=None):
    """Runs command with stdout+stderr to log_path; returns (exit code, wall seconds, peak RSS bytes)."""
    with open(log_path, "wb") as log:
        log.write(("$ " + shlex.join(command) + "\n").encode())
        log.flush()
        start = time.monotonic()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, wall, usage.ru_maxrss * 1024  # Linux reports kilobytes


SD_STAGES = [  # (our stage name, the line sd.cpp logs)
    ("text encoders (incl. CLIP+T5 load)", r"get_learned_condition completed, taking ([\d.]+)s"),
    ("denoising (incl. transformer load)", r"sampling completed, taking ([\d.]+)s"),
    ("vae decode (incl. VAE load)", r"decode_first_stage completed, taking ([\d.]+)s"),
    ("generate (all stages)", r"generate_image completed in ([\d.]+)s"),
]
# sd.cpp loads each model lazily, when its stage first needs it, so a stage's time includes its
# model's load; the loads are also reported on their own, per file.
SD_LOADS = {"clip_l": "load clip_l", "t5xxl": "load t5xxl", "flux1-schnell": "load transformer", "ae.": "load vae"}


def parse_sd_log(text):
    lines = text.replace("\r", "\n").splitlines()
    stages = {}
    current = None
    for line in lines:
        source = re.search(r"loading \d+/\d+ tensors from (\S+)", line)
        if source:
            current = next((name for key, name in SD_LOADS.items() if key in Path(source.group(1)).name), "load other")
        done = re.search(r"loading tensors completed, taking ([\d.]+)s", line)
        if done and current:
            stages[current] = stages.get(current, 0.0) + float(done.group(1))
            current = None
    for name, pattern in SD_STAGES:
        values = [float(v) for v in re.findall(pattern, text)]
        if values:
            stages[name] = sum(values)
    for stage, load in (("text encoders (incl. CLIP+T5 load)", ("load clip_l", "load t5xxl")),
                        ("denoising (incl. transformer load)", ("load transformer",)),
                        ("vae decode (incl. VAE load)", ("load vae",))):
        if stage in stages:
            stages[stage.split(" (")[0] + " (excl. load)"] = stages[stage] - sum(stages.get(k, 0.0) for k in load)
    # the progress bar: "\r|=====| 2/4 - 12.34s/it" (or it/s); the first step includes the transformer load
    steps = []
    for step, total, speed, unit in re.findall(r"\|\s*(\d+)/(\d+) - ([\d.]+)(s/it|it/s)", text):
        steps.append(float(speed) if unit == "s/it" else 1.0 / float(speed))
    memory = re.search(r"total params memory size = ([\d.]+)MB", text)
    errors = [line.strip() for line in lines if "[ERROR]" in line or "error:" in line.lower()]
    return {"stages": stages, "progress s/it": steps,
            "params MB": float(memory.group(1)) if memory else None, "errors": errors[:20]}


def run_sdcpp(args, out):
    models = Path(args.models)
    command = [args.sd,
               "--diffusion-model", str(models / f"flux1-schnell-{args.quant}.gguf"),
               "--t5xxl", str(models / "t5xxl-Q8_0.gguf"),
               "--clip_l", str(models / "clip_l.safetensors"),
               "--vae", str(models / "ae.safetensors"),
               "-p", args.prompt, "--steps", str(args.steps), "--cfg-scale", "1",
               "-W", str(args.width), "-H", str(args.height), "--threads", str(args.threads),
               "-s", str(args.seed), "--sampling-method", "euler", "-o", str(out / "sdcpp.png"), "-v"]
    if args.sd_mmap:
        command.append("--mmap")
    command += shlex.split(args.sd_args)
    log = out / "sdcpp.log"
    print(f"sd.cpp: {shlex.join(command)}", flush=True)
    code, wall, rss = run_measured(command, log)
    parsed = parse_sd_log(log.read_text(errors="replace"))
    return {"command": command, "exit code": code, "wall seconds": wall, "peak rss bytes": rss,
            "log": str(log), **parsed}


def run_schnell(args, out):
    """Schnell's CLI on the same files: single files plus the tokenizers/config folder."""
    models = Path(args.models)
    timings = out / "schnell-timings.json"
    command = [args.schnell, "generate", args.prompt,
               "--transformer", str(models / f"flux1-schnell-{args.quant}.gguf"),
               "--t5", str(models / "t5xxl-Q8_0.gguf"),
               "--clip", str(models / "clip_l.safetensors"),
               "--vae", str(models / "ae.safetensors"),
               "--tokenizers", str(models / "tokenizers"),
               "--size", f"{args.width}x{args.height}", "--steps", str(args.steps), "--seed", str(args.seed),
               "--threads", str(args.threads), "-o", str(out / "schnell.png"), "--timings-json", str(timings)]
    command += shlex.split(args.schnell_args)
    log = out / "schnell.log"
    print(f"schnell: {shlex.join(command)}", flush=True)
    code, wall, rss = run_measured(command, log)
    result = {"command": command, "exit code": code, "wall seconds": wall, "peak rss bytes": rss, "log": str(log)}
    if code == 0 and timings.exists():
        report = json.loads(timings.read_text())
        stages = {"load": report.get("load")}
        for entry in report.get("stages", []):
            stages[entry["stage"]] = stages.get(entry["stage"], 0.0) + entry["seconds"]
        result["stages"] = stages
        result["timings json"] = report
    else:
        result["errors"] = log.read_text(errors="replace").splitlines()[-20:]
    return result


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith(("MemTotal", "MemAvailable")):
                key, value = line.split(":", 1)
                info[key] = value.strip()
        info["loadavg at start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def markdown(summary):
    engines = [name for name in ("sd.cpp", "schnell") if name in summary["runs"]]
    names = []
    for engine in engines:
        for stage in summary["runs"][engine].get("stages", {}):
            if stage not in names:
                names.append(stage)
    lines = [f"# {summary['config']['quant']} FLUX.1-schnell, {summary['config']['width']}x{summary['config']['height']}, "
             f"{summary['config']['steps']} steps, {summary['config']['threads']} threads",
             "", f"Machine: {summary['machine'].get('cpu', '?')}, {summary['machine'].get('cpus')} CPUs, "
             f"{summary['machine'].get('MemTotal', '?')}; load average at start {summary['machine'].get('loadavg at start')}",
             "", "| | " + " | ".join(engines) + " |", "|---|" + "---:|" * len(engines)]
    for stage in names:
        cells = []
        for engine in engines:
            value = summary["runs"][engine].get("stages", {}).get(stage)
            cells.append("" if value is None else f"{value:.2f} s")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| wall (process) | " + " | ".join(f"{summary['runs'][e]['wall seconds']:.2f} s" for e in engines) + " |")
    lines.append("| peak RSS | " + " | ".join(f"{summary['runs'][e]['peak rss bytes'] / 2**30:.2f} GiB" for e in engines) + " |")
    lines.append("| exit code | " + " | ".join(str(summary["runs"][e]["exit code"]) for e in engines) + " |")
    sd = summary["runs"].get("sd.cpp")
    if sd:
        lines += ["", "sd.cpp loads each model when its stage first needs it (the load is inside that stage's time);"
                  " its sampler uses the Flux scheduler's resolution shift, where diffusers' schnell has none."]
        if sd.get("progress s/it"):
            lines += ["sd.cpp progress bar, seconds per step (as printed after each step): "
                      + ", ".join(f"{s:.2f}" for s in sd["progress s/it"])]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sd", help="stable-diffusion.cpp's CLI (sd-cli or sd)")
    parser.add_argument("--schnell", help="Schnell's CLI (.build/release/schnell)")
    parser.add_argument("--models", required=True, help="the folder make_models.py wrote")
    parser.add_argument("--quant", default="Q8_0", choices=["Q8_0", "Q4_K"])
    parser.add_argument("--prompt", default="a photo of a cat")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sd-mmap", action="store_true", help="pass --mmap to sd.cpp (weights used from the mapping)")
    parser.add_argument("--sd-args", default="", help="more sd.cpp arguments, one shell-quoted string")
    parser.add_argument("--schnell-args", default="", help="more Schnell arguments, one shell-quoted string")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not args.sd and not args.schnell:
        parser.error("give --sd, --schnell or both")
    out = args.out or Path(f"sdcpp-compare-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": {k: v for k, v in vars(args).items() if k != "out"}, "machine": machine(), "runs": {}}
    if args.sd:
        summary["runs"]["sd.cpp"] = run_sdcpp(args, out)
    if args.schnell:
        summary["runs"]["schnell"] = run_schnell(args, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = markdown(summary)
    (out / "summary.md").write_text(text)
    print(text)
    return 0 if all(run["exit code"] == 0 for run in summary["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
