#!/usr/bin/env python3
"""Schnell against diffusers' FluxPipeline on this machine's CPU, on the same files, prompt,
seed and sizes: per-stage medians, peak RSS, start-up time and image agreement.

    python3 Benchmarks/compare_diffusers.py [--sizes 512 1024] [--runs 3] [--config mid] [--write-results]
                                            [--baseline OTHER/.build/release/schnell] [--tiers avx2 avx512bf16]

It builds (once, cached under Benchmarks/work/models/) a random-weight pipeline with the real
FLUX.1 architecture at a width this machine can run, in the diffusers folder layout with float32
and with bf16 weights; any --hidden/--double/--single/--t5-*/--clip-*/--vae-* option changes
that configuration. The torch side runs in diffusers_worker.py under --python (default: a venv
in Benchmarks/work/venv with the pinned torch, diffusers and transformers, made when missing).
Every generation runs in a fresh process, so each peak RSS is that system's alone. --baseline runs
a second Schnell binary (a release build of an earlier commit, say) on the same cases in the same
sitting and adds a before/after table per size. --tiers runs both systems once per CPU tier, as a
machine with only that tier would: Schnell with SCHNELL_CPU=<tier> and OpenBLAS's kernels for it
(OPENBLAS_CORETYPE), torch with its own switches capped at the same instruction set
(ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA); diffusers bf16 runs only at
the AVX512-BF16 tier (without native bf16 it takes many minutes an image), and below it Schnell's
bf16 column is compared with diffusers float32. This script itself needs only the standard library.
It is not run in CI.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "work")
WORKER = os.path.join(HERE, "diffusers_worker.py")
SCHNELL = os.path.join(ROOT, ".build", "release", "schnell")
PINS = ["torch==2.15.0", "diffusers==0.42.1", "transformers==5.23.0", "pillow", "numpy"]

# Per tier: what OpenBLAS and torch are told, so that both run as on a CPU with only that tier.
# None: that library's own choice (the CPU's best).
TIERS = {
    "generic": dict(openblas="Prescott", torch=dict(ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2",
                                                     ONEDNN_MAX_CPU_ISA="SSE41")),
    "avx2": dict(openblas="Haswell", torch=dict(ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2",
                                                ONEDNN_MAX_CPU_ISA="AVX2")),
    "avx512": dict(openblas="SkylakeX", torch=dict(ATEN_CPU_CAPABILITY="avx512", MKL_ENABLE_INSTRUCTIONS="AVX512",
                                                   ONEDNN_MAX_CPU_ISA="AVX512_CORE")),
    "avx512bf16": dict(openblas=None, torch={}),
}

# "mid": FLUX.1's block structure at hidden 1536 (12 heads x 128), CLIP-L at its real size,
# a 4-layer T5 at d_model 1024 and FLUX.1's real VAE. "small" is for checking the script.
PRESETS = {
    "mid": dict(hidden=1536, double=4, single=8, clip_hidden=768, clip_layers=12, t5_dim=1024, t5_ff=2816,
                t5_layers=4, vae_channels=[128, 256, 512, 512], vae_layers=2, vae_groups=32),
    "small": dict(hidden=256, double=1, single=2, clip_hidden=128, clip_layers=2, t5_dim=128, t5_ff=256,
                  t5_layers=2, vae_channels=[32, 64, 64, 64], vae_layers=1, vae_groups=8),
}


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="square image sizes (multiples of 16)")
    parser.add_argument("--runs", type=int, default=3, help="generations per system and size; medians are reported")
    parser.add_argument("--config", choices=sorted(PRESETS), default="mid", help="model configuration preset")
    architecture = parser.add_argument_group("model configuration (overrides the preset)")
    architecture.add_argument("--hidden", type=int, help="transformer width, a multiple of 128 (heads of 128)")
    architecture.add_argument("--double", type=int, help="double-stream blocks")
    architecture.add_argument("--single", type=int, help="single-stream blocks")
    architecture.add_argument("--clip-hidden", type=int, help="CLIP width, a multiple of 64")
    architecture.add_argument("--clip-layers", type=int)
    architecture.add_argument("--t5-dim", type=int, help="T5 d_model, a multiple of 64 (heads of 64)")
    architecture.add_argument("--t5-ff", type=int, help="T5 gated-gelu d_ff")
    architecture.add_argument("--t5-layers", type=int)
    architecture.add_argument("--vae-channels", type=int, nargs=4, help="VAE block_out_channels (4 blocks: 8x down)")
    architecture.add_argument("--vae-layers", type=int, help="VAE resnets per down block")
    architecture.add_argument("--vae-groups", type=int, help="VAE group-norm groups")
    architecture.add_argument("--model-seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--prompt", default="a lighthouse on a cliff at dusk, oil painting")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--max-sequence-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2, help="threads for both systems")
    parser.add_argument("--python", help="a Python with torch, diffusers and transformers (default: Benchmarks/work/venv)")
    parser.add_argument("--keep-env", action="store_true",
                        help="run Schnell with OPENBLAS_CORETYPE as set (by default it is removed)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the random model even if it is cached")
    parser.add_argument("--write-results", action="store_true", help="append the Markdown section to Benchmarks/RESULTS.md")
    parser.add_argument("--baseline", help="another schnell binary to run on the same cases (before/after)")
    parser.add_argument("--tiers", nargs="+", choices=list(TIERS),
                        help="run both systems at each of these CPU tiers (default: each at the CPU's best, unrestricted)")
    args = parser.parse_args()

    config = dict(PRESETS[args.config], seed=args.model_seed)
    for key in PRESETS["mid"]:
        if getattr(args, key) is not None:
            config[key] = list(getattr(args, key)) if key == "vae_channels" else getattr(args, key)
    problems = []
    if args.baseline and not os.access(args.baseline, os.X_OK):
        problems.append(f"--baseline {args.baseline} is not an executable file")
    if any(size <= 0 or size % 16 for size in args.sizes):
        problems.append(f"--sizes must be positive multiples of 16, not {args.sizes}")
    if args.runs < 1 or args.steps < 1 or args.threads < 1:
        problems.append("--runs, --steps and --threads must be at least 1")
    if not 1 <= args.max_sequence_length <= 512:
        problems.append(f"--max-sequence-length must be in 1...512, not {args.max_sequence_length}")
    if config["hidden"] <= 0 or config["hidden"] % 128:
        problems.append(f"--hidden must be a positive multiple of 128 (FLUX's rotary axes need heads of 128), not {config['hidden']}")
    for key in ("clip_hidden", "t5_dim"):
        if config[key] <= 0 or config[key] % 64:
            problems.append(f"--{key.replace('_', '-')} must be a positive multiple of 64 (heads of 64), not {config[key]}")
    for key in ("double", "single", "clip_layers", "t5_ff", "t5_layers", "vae_layers", "vae_groups"):
        if config[key] < (0 if key in ("double", "single") else 1):
            problems.append(f"--{key.replace('_', '-')} must be {'non-negative' if key in ('double', 'single') else 'positive'}")
    if any(channels <= 0 or channels % config["vae_groups"] for channels in config["vae_channels"]):
        problems.append(f"--vae-channels {config['vae_channels']} must be positive multiples of --vae-groups {config['vae_groups']}")
    if problems:
        parser.error("; ".join(problems))
    return args, config


def run(command, env=None, capture=True):
    result = subprocess.run(command, env=env, cwd=ROOT, text=True, capture_output=capture)
    if result.returncode != 0:
        details = (result.stderr or "")[-3000:] if capture else ""
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(command)}\n{details}")
    return result.stdout if capture else ""


def torch_python(args):
    """The interpreter for the torch side, with the pinned packages installed when it is ours."""
    probe = ["-c", "import torch, diffusers, transformers, PIL, numpy; "
                   "print(torch.__version__, diffusers.__version__, transformers.__version__)"]
    if args.python:
        if not os.access(args.python, os.X_OK):
            raise SystemExit(f"--python {args.python} is not an executable file")
        result = subprocess.run([args.python, *probe], capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"--python {args.python} cannot import torch, diffusers and transformers:\n{result.stderr[-1000:]}")
        return args.python, result.stdout.strip()
    python = os.path.join(WORK, "venv", "bin", "python")
    if not os.path.exists(python):
        print(f"making a venv in {os.path.dirname(os.path.dirname(python))}", flush=True)
        run([sys.executable, "-m", "venv", os.path.dirname(os.path.dirname(python))])
    result = subprocess.run([python, *probe], capture_output=True, text=True)
    if result.returncode != 0:
        print(f"installing {' '.join(PINS)}", flush=True)
        run([python, "-m", "pip", "install", "--quiet", *PINS], capture=False)
        result = subprocess.run([python, *probe], capture_output=True, text=True, check=True)
    return python, result.stdout.strip()


def model_folder(python, config, rebuild):
    """Benchmarks/work/models/<config digest>/{f32,bf16}, built when missing or changed."""
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
    folder = os.path.join(WORK, "models", f"flux-h{config['hidden']}-d{config['double']}-s{config['single']}-{digest}")
    complete = all(os.path.exists(os.path.join(folder, dtype, "model_index.json")) for dtype in ("f32", "bf16"))
    if rebuild or not complete:
        print(f"building the random pipeline in {folder}", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        start = time.perf_counter()
        run([python, WORKER, "build", folder, json.dumps(config)], capture=False)
        print(f"  built in {time.perf_counter() - start:.0f} s", flush=True)
    return folder


def schnell_environment(keep_env):
    # This machine's default environment sets OPENBLAS_CORETYPE=Haswell, which makes OpenBLAS
    # use its AVX2 kernels on an AVX-512 CPU and halves its sgemm rate (Benchmarks/RESULTS.md).
    # Torch does not use OpenBLAS, so without removing it the comparison would measure the
    # variable, not the engine.
    env = dict(os.environ)
    if not keep_env:
        env.pop("OPENBLAS_CORETYPE", None)
    return env


def openblas_kernels(env):
    probe = ("import ctypes; library = ctypes.CDLL('libopenblas.so.0'); "
             "library.openblas_get_corename.restype = ctypes.c_char_p; print(library.openblas_get_corename().decode())")
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown (libopenblas.so.0 not loadable)"


def tier_environments(env, tier):
    """(Schnell's, torch's) environments for a tier (None: unrestricted)."""
    if tier is None:
        return env, None
    schnell = dict(env, SCHNELL_CPU=tier)
    if TIERS[tier]["openblas"]:
        schnell["OPENBLAS_CORETYPE"] = TIERS[tier]["openblas"]
    return schnell, dict(os.environ, **TIERS[tier]["torch"])


def run_diffusers(python, model, dtype, size, runs, args, output, env=None):
    result_path = output + ".json"
    request = dict(dtype=dtype, threads=args.threads, prompt=args.prompt, seed=args.seed, size=size, steps=args.steps,
                   max_sequence_length=args.max_sequence_length, runs=runs, output=output, result=result_path)
    start = time.time()
    run([python, WORKER, "generate", model, json.dumps(request)], env=env)
    with open(result_path) as f:
        report = json.load(f)
    report["start-up"] = report["first image at"] - start
    return report


def run_schnell(model, size, runs, args, env, extra, output, binary=SCHNELL):
    """Each run a fresh process; its wall time to exit is the start-up time to the first image."""
    timings_path = output + ".json"
    command = [binary, "generate", args.prompt, "--size", f"{size}x{size}", "--seed", str(args.seed),
               "--steps", str(args.steps), "--max-sequence-length", str(args.max_sequence_length),
               "--threads", str(args.threads), "-o", output, "--timings-json", timings_path, "--quiet", *extra]
    if model:
        command += ["--model", model]
    reports = []
    for _ in range(runs):
        start = time.perf_counter()
        run(command, env=env)
        wall = time.perf_counter() - start
        with open(timings_path) as f:
            timings = json.load(f)
        stages = {entry["stage"]: entry["seconds"] for entry in timings["stages"]}
        stages["image encode"] = timings["image encode"]
        stages["end to end"] = sum(stages.values())
        reports.append(dict(load=timings["load"], stages=stages, wall=wall, peak=timings["peak rss bytes"],
                            tier=timings.get("cpu tier", "?"), blas=timings.get("blas kernels", "?")))
    return dict(load=statistics.median(r["load"] for r in reports), runs=[r["stages"] for r in reports],
                tier=reports[0]["tier"], blas=reports[0]["blas"],
                **{"start-up": reports[0]["wall"], "peak rss bytes": max(r["peak"] for r in reports)})


def compare_images(python, reference, image):
    return json.loads(run([python, WORKER, "compare", reference, image]))


def machine_description(env):
    model_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    family = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("cpu family")), "?")
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.split(":")[0].strip() == "model"), "?")
    flags = next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    memory_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    features = ", ".join(f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16",
                                     "avx512_vnni", "amx_bf16") if f in flags)
    return (f"{os.cpu_count()} cores of {model_name} (family {family}, model {model}; {features}), "
            f"{memory_kb / 2**20:.1f} GiB RAM, {platform.platform()}, OpenBLAS kernels for Schnell: {openblas_kernels(env)}")


def median_stage(report, stage):
    values = [run_stages[stage] for run_stages in report["runs"] if stage in run_stages]
    return statistics.median(values) if values else None


def seconds(value):
    return "—" if value is None else f"{value:.3f}"


def ratio(reference, value):
    return "—" if reference is None or not value else f"{reference / value:.2f}"


def stage_table(title, pairs, results, load_average=False):
    """One Markdown table: rows are stages, and per (reference, value) pair of result keys the
    two medians and their ratio reference / value."""
    stage_names = ["text encoders"] + [s for s in results["schnell f32"]["runs"][0] if s.startswith("step ")]
    stage_names += ["vae decode", "image encode", "end to end"]
    header = " | ".join(f"{reference_label} | {value_label} | ratio" for _, reference_label, _, value_label in pairs)
    lines = [title, "", f"| stage | {header} |", "| --- |" + " ---: | ---: | ---: |" * len(pairs)]

    def row(name, pick, fmt=seconds, ratios=True):
        cells = []
        for reference_key, _, value_key, _ in pairs:
            reference, value = pick(results[reference_key]), pick(results[value_key])
            cells += [fmt(reference), fmt(value), ratio(reference, value) if ratios else ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    row("load (not in end to end)", lambda report: report["load"])
    for stage in stage_names:
        row(stage, lambda report, stage=stage: median_stage(report, stage))
    row("start-up to first image", lambda report: report["start-up"])
    row("peak RSS (MiB)", lambda report: report["peak rss bytes"] / 2**20, fmt=lambda v: f"{v:.0f}")
    if load_average:
        row("machine load average at start", lambda report: report["load average"], fmt=lambda v: f"{v:.1f}", ratios=False)
    return lines


def runs_text(runs):
    return f"median of {runs} run{'s' if runs > 1 else ''}"


def size_table(size, runs, results, schnell_bf16_label, tier=None):
    """Schnell against diffusers; ratio = diffusers / Schnell. Without diffusers bf16, Schnell's
    bf16 column is set against diffusers float32 and, in a third pair, against Schnell float32."""
    if "diffusers bf16" in results:
        pairs = [("diffusers f32", "diffusers f32", "schnell f32", "Schnell f32"),
                 ("diffusers bf16", "diffusers bf16", "schnell bf16", f"Schnell {schnell_bf16_label}")]
    else:
        pairs = [("diffusers f32", "diffusers f32", "schnell f32", "Schnell f32"),
                 ("diffusers f32", "diffusers f32", "schnell bf16", f"Schnell {schnell_bf16_label}"),
                 ("schnell f32", "Schnell f32", "schnell bf16", f"Schnell {schnell_bf16_label}")]
    at = "" if tier is None else (f", CPU tier {tier} (Schnell: SCHNELL_CPU={results['schnell f32']['tier']}, "
                                  f"OpenBLAS {results['schnell f32']['blas']}; torch: "
                                  + (", ".join(f"{k}={v}" for k, v in TIERS[tier]["torch"].items()) or "unrestricted") + ")")
    return stage_table(f"### {size}×{size}{at}, {runs_text(runs)} (seconds)", pairs, results, load_average=True)


def baseline_table(size, runs, results):
    """Schnell against the --baseline binary; ratio = baseline / this build."""
    pairs = [(f"baseline {dtype}", f"baseline {dtype}", f"schnell {dtype}", f"Schnell {dtype}") for dtype in ("f32", "bf16")]
    return stage_table(f"### {size}×{size}: this build against the baseline, {runs_text(runs)} (seconds)", pairs, results)


def main():
    args, config = parse_arguments()
    env = schnell_environment(args.keep_env)
    python, versions = torch_python(args)
    print(f"torch, diffusers, transformers: {versions} ({python})", flush=True)
    print("swift build -c release --product schnell", flush=True)
    run(["swift", "build", "-c", "release", "--product", "schnell"])
    help_text = run([SCHNELL, "generate", "--help"])
    # bf16 activations are used when the engine offers them; otherwise bf16 weights are
    # converted to float32 for each GEMM, and the column says so.
    bf16_extra, bf16_label = (["--precision", "bf16"], "bf16") if "--precision" in help_text else ([], "bf16 weights, f32 activations")
    folder = model_folder(python, config, args.rebuild)
    outputs = os.path.join(WORK, "outputs")
    os.makedirs(outputs, exist_ok=True)

    sections, agreement = [], []
    tiers = args.tiers or [None]
    for size in args.sizes:
        for tier in tiers:
            schnell_env, torch_env = tier_environments(env, tier)
            label = "" if tier is None else f" [{tier}]"
            suffix = f"{size}" if tier is None else f"{size}-{tier}"
            results = {}
            # diffusers' bf16 without native bf16 instructions takes many minutes an image.
            torch_dtypes = [("f32", "float32"), ("bf16", "bfloat16")] if tier in (None, "avx512bf16") else [("f32", "float32")]
            for dtype, torch_dtype in torch_dtypes:
                output = os.path.join(outputs, f"diffusers-{dtype}-{suffix}.png")
                print(f"{size}x{size}{label} diffusers {dtype}: {args.runs} runs", flush=True)
                load_average = os.getloadavg()[0]
                results[f"diffusers {dtype}"] = run_diffusers(python, os.path.join(folder, dtype), torch_dtype, size,
                                                             args.runs, args, output, torch_env)
                results[f"diffusers {dtype}"]["load average"] = load_average
            for dtype, extra in (("f32", []), ("bf16", bf16_extra)):
                output = os.path.join(outputs, f"schnell-{dtype}-{suffix}.png")
                print(f"{size}x{size}{label} Schnell {dtype}: {args.runs} runs", flush=True)
                load_average = os.getloadavg()[0]
                results[f"schnell {dtype}"] = run_schnell(os.path.join(folder, dtype), size, args.runs, args, schnell_env,
                                                         extra, output)
                results[f"schnell {dtype}"]["load average"] = load_average
                if args.baseline:
                    print(f"{size}x{size}{label} baseline {dtype}: {args.runs} runs", flush=True)
                    results[f"baseline {dtype}"] = run_schnell(os.path.join(folder, dtype), size, args.runs, args,
                                                              schnell_env, extra,
                                                              os.path.join(outputs, f"baseline-{dtype}-{suffix}.png"),
                                                              args.baseline)
            reference = os.path.join(outputs, f"diffusers-f32-{suffix}.png")
            f32 = compare_images(python, reference, os.path.join(outputs, f"schnell-f32-{suffix}.png"))
            bf16 = compare_images(python, reference, os.path.join(outputs, f"schnell-bf16-{suffix}.png"))
            torch_bf16 = (compare_images(python, reference, os.path.join(outputs, f"diffusers-bf16-{suffix}.png"))
                          if "diffusers bf16" in results else None)
            agreement.append(
                f"| {size}×{size}{label} | {f32['max abs']:.0f}/255 ({'pass' if f32['max abs'] <= 2 else 'FAIL'}, ≤ 2) "
                f"| {bf16['psnr']:.1f} dB ({'pass' if bf16['psnr'] >= 30 else 'below'} 30) | "
                + (f"{torch_bf16['psnr']:.1f} dB |" if torch_bf16 else "not run at this tier |"))
            sections += size_table(size, args.runs, results, bf16_label, tier) + [""]
            if args.baseline:
                sections += baseline_table(size, args.runs, results) + [""]

    tiny_size = min(args.sizes)
    print(f"start-up with the bundled tiny model at {tiny_size}x{tiny_size}", flush=True)
    tiny_schnell = run_schnell(None, tiny_size, 1, args, env, [], os.path.join(outputs, f"schnell-tiny-{tiny_size}.png"))
    tiny_diffusers = run_diffusers(python, os.path.join(ROOT, "Weights", "tiny-flux-schnell"), "float32", tiny_size, 1, args,
                                   os.path.join(outputs, f"diffusers-tiny-{tiny_size}.png"))

    described = ", ".join(f"{key} {value}" for key, value in config.items())
    markdown = [
        f"## Schnell vs diffusers FluxPipeline on the CPU ({datetime.date.today().isoformat()})", "",
        f"Machine: {machine_description(env)}. torch, diffusers, transformers {versions}; "
        f"{args.threads} threads for both (`torch.set_num_threads`, `--threads`)"
        + ("" if args.keep_env else "; Schnell run without `OPENBLAS_CORETYPE`") + ".", "",
        "```sh", shlex.join(["python3", "Benchmarks/compare_diffusers.py", *sys.argv[1:]]), "```", "",
        f"Random-weight pipeline with FLUX.1's architecture ({described}), diffusers folder layout, "
        f"saved with float32 and with bf16 weights; prompt {args.prompt!r}, seed {args.seed}, {args.steps} steps, "
        f"max sequence length {args.max_sequence_length}. Ratio = diffusers / Schnell (above 1: Schnell is faster). "
        "Each Schnell run is a fresh process (start-up = process start to its exit, the image written); diffusers "
        "runs in one process per dtype and size, its start-up is process start to the first PNG. End to end = text "
        "encoders through image encode, without load. Peak RSS from getrusage, per process. The cores may be "
        "shared: the 1-minute load average when each system started is in the last row (above the thread "
        "count, the timings include waiting for the CPU).", "",
        *sections,
        "Image agreement against diffusers float32:", "",
        f"| size | Schnell f32 max abs diff | Schnell {bf16_label} PSNR | diffusers bf16 PSNR |",
        "| --- | --- | --- | --- |", *agreement, "",
        f"Start-up to first image with the bundled tiny model (`Weights/tiny-flux-schnell`, {tiny_size}×{tiny_size}): "
        f"Schnell {tiny_schnell['start-up']:.2f} s, diffusers float32 {tiny_diffusers['start-up']:.2f} s "
        "(Python imports included).", ""]
    text = "\n".join(markdown)
    print("\n" + text)
    if args.write_results:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text)
        print("appended to Benchmarks/RESULTS.md")


if __name__ == "__main__":
    main()
