"""Writes the sampling fixtures under Tests/Fixtures/sampling/ (run with the pinned torch/diffusers).

noise.json: torch.randn draws from torch.Generator("cpu").manual_seed(seed), float32 and bfloat16,
  as hex bit patterns (float32: 8 hex digits, bfloat16: the upper 4). Long draws keep their first
  `HEAD` values plus an FNV-1a-64 checksum over the float32 bit patterns of every value.
  "sequence" entries draw several shapes one after another from one generator (the small-tensor path
  caches its second Box-Muller value across calls).
scheduler.json: FlowMatchEulerDiscreteScheduler sigmas/timesteps as FluxPipeline sets them.
The CPU capability torch used is recorded: float32 Box-Muller uses glibc's logf/cosf/sinf on the
default and AVX-512 kernels, but avx_mathfun's approximations on AVX2-only CPUs.
"""
import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).parent / "sampling"
HEAD = 1024
SEEDS = [0, 1, 42, 2**32 + 5, 0xDEADBEEFCAFEF00D]
COUNTS = [1, 7, 15, 16, 17, 31, 100, 16 * 4 * 4]
LONG_COUNTS = [16 * 64 * 64 + 3, 16 * 128 * 128]


def fnv1a64(words):
    value = 0xCBF29CE484222325
    for word in words.tolist():
        for shift in (0, 8, 16, 24):
            value ^= (word >> shift) & 0xFF
            value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def bits(tensor):
    return tensor.float().contiguous().view(torch.int32).numpy().astype(np.uint32)


def encode(tensor, dtype):
    words = bits(tensor)
    width = 8 if dtype == "float32" else 4
    head = words[:HEAD] if width == 8 else words[:HEAD] >> 16
    entry = {"hex": "".join(f"{w:0{width}x}" for w in head.tolist())}
    if len(words) > HEAD:
        entry["fnv1a64"] = f"{fnv1a64(words):016x}"
    return entry


def noise():
    entries = []
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    for seed in SEEDS:
        for name, dtype in dtypes.items():
            for count in COUNTS + (LONG_COUNTS if seed in (0, 42) else []):
                generator = torch.Generator("cpu").manual_seed(seed)
                draw = torch.randn((count,), generator=generator, dtype=dtype)
                entries.append({"seed": str(seed), "dtype": name, "counts": [count], **encode(draw, name)})
            generator = torch.Generator("cpu").manual_seed(seed)
            counts = [7, 5, 20, 3, 33, 1]
            draws = [torch.randn((n,), generator=generator, dtype=dtype) for n in counts]
            entries.append({"seed": str(seed), "dtype": name, "counts": counts, **encode(torch.cat(draws), name)})
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "draws": entries}


# scheduler/scheduler_config.json of black-forest-labs/FLUX.1-schnell and FLUX.1-dev.
SCHEDULER_CONFIGS = {
    "schnell": {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
                "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 1.0,
                "use_dynamic_shifting": False},
    "dev": {"_class_name": "FlowMatchEulerDiscreteScheduler", "base_image_seq_len": 256, "base_shift": 0.5,
            "max_image_seq_len": 4096, "max_shift": 1.15, "num_train_timesteps": 1000, "shift": 3.0,
            "use_dynamic_shifting": True},
    "shifted": {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False},
    "linear": {"num_train_timesteps": 1000, "use_dynamic_shifting": True, "time_shift_type": "linear",
               "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096},
}


def f32_hex(tensor):
    return "".join(f"{w:08x}" for w in bits(tensor).tolist())


def scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    cases = []
    for name, config in SCHEDULER_CONFIGS.items():
        for steps in [1, 2, 4, 8, 28, 50]:
            for seq_len in [64, 256, 1024, 4096, 4080, 6400]:
                sched = FlowMatchEulerDiscreteScheduler.from_config(config)
                # As FluxPipeline.__call__ does.
                sigmas = np.linspace(1.0, 1 / steps, steps)
                mu = calculate_shift(seq_len, sched.config.get("base_image_seq_len", 256),
                                     sched.config.get("max_image_seq_len", 4096),
                                     sched.config.get("base_shift", 0.5), sched.config.get("max_shift", 1.15))
                sched.set_timesteps(sigmas=sigmas, mu=mu)
                timesteps = sched.timesteps
                transformer_t = timesteps / 1000  # FluxPipeline passes timestep / 1000 (float32 latents)
                cases.append({"config": name, "steps": steps, "image_seq_len": seq_len, "mu": mu,
                              "sigmas": f32_hex(sched.sigmas), "timesteps": f32_hex(timesteps),
                              "transformer_timesteps": f32_hex(transformer_t)})
    # One Euler step through scheduler.step on the dev schedule.
    sched = FlowMatchEulerDiscreteScheduler.from_config(SCHEDULER_CONFIGS["dev"])
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / 4, 4), mu=calculate_shift(1024))
    generator = torch.Generator("cpu").manual_seed(3)
    sample = torch.randn((64,), generator=generator)
    velocity = torch.randn((64,), generator=generator)
    euler = []
    for index, t in enumerate(sched.timesteps):
        previous = sched.step(velocity, t, sample, return_dict=False)[0]
        euler.append({"index": index, "sample": f32_hex(sample), "velocity": f32_hex(velocity),
                      "prev_sample": f32_hex(previous)})
        sample = previous
    return {"configs": SCHEDULER_CONFIGS, "cases": cases, "euler": {"config": "dev", "steps": 4, "image_seq_len": 1024,
                                                                     "steps_taken": euler}}


def main():
    OUT.mkdir(exist_ok=True)
    (OUT / "noise.json").write_text(json.dumps(noise(), indent=1) + "\n")
    (OUT / "scheduler.json").write_text(json.dumps(scheduler(), indent=1) + "\n")


if __name__ == "__main__":
    main()
