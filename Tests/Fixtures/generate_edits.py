"""Writes what diffusers' FluxImg2ImgPipeline and FluxInpaintPipeline make with the bundled tiny
pipeline (Weights/tiny-flux-schnell), float32 on CPU, into Tests/Fixtures/pipeline/edits/.

Each case's .safetensors holds its inputs as 8-bit values stored as float32 (init image [H, W, 3],
for inpainting the RGBA mask [H, W, 4] as the OpenAI edits endpoint takes it) and the expected
8-bit image(s) [n, height, width, 3], and per seed the starting latents [16, h, w] (the init image's
latent sample noised to the first sigma that runs), so a failure can tell the start from the loop. resize.safetensors holds PIL's Lanczos resizes, which
diffusers' VaeImageProcessor applies when the init image is not width x height.

The OpenAI mask marks what to regenerate with transparent pixels; diffusers' mask is white where
it regenerates. The conversion is L = 255 - alpha, which diffusers binarises at 0.5 (alpha < 128
regenerates).

Run with the pinned requirements (requirements.txt beside this file), after generate_pipeline.py:
    python Tests/Fixtures/generate_edits.py
"""
import json
import os

import numpy as np
import torch
from diffusers import FluxImg2ImgPipeline, FluxInpaintPipeline
from PIL import Image
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PIPELINE = os.path.join(ROOT, "Weights", "tiny-flux-schnell")
OUT = os.path.join(HERE, "pipeline", "edits")

CASES = [
    # An 80x60 upload resized to 64x48; default strength 0.6 of 4 steps runs the last 3; n = 2.
    dict(name="img2img-80x60-to-64x48", kind="img2img", prompt="a watercolor of a lighthouse at dusk",
         source_width=80, source_height=60, width=64, height=48, steps=4, strength=0.6, seeds=[5, 6]),
    dict(name="inpaint-64x48", kind="inpaint", prompt="a bowl of oranges on a wooden table",
         source_width=64, source_height=48, width=64, height=48, steps=4, strength=0.75, seeds=[9]),
]


def init_image(width, height):
    """Gradients with a disc and a bar, so every channel and region differs."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    red = 255 * x / (width - 1)
    green = 255 * y / (height - 1)
    blue = np.full_like(x, 60.0)
    disc = (x - width * 0.35) ** 2 + (y - height * 0.5) ** 2 < (height * 0.3) ** 2
    blue[disc] = 230
    red[(x > width * 0.7) & (x < width * 0.8)] = 20
    return np.stack([red, green, blue], axis=-1).round().astype(np.uint8)


def mask_rgba(width, height):
    """Opaque white with a transparent rectangle (regenerate) and, in the bottom rows, alpha rising
    across the threshold: at the pixels nearest-neighbour downsampling reads (multiples of 8) the
    alphas are 0, 32, ..., 224, so 128 sits on a sampled pixel."""
    rgba = np.full((height, width, 4), 255, dtype=np.uint8)
    rgba[8:32, 16:48, 3] = 0
    rgba[height - 8:, :, 3] = (np.arange(width) * 4).clip(0, 255).astype(np.uint8)
    return rgba


def run(case):
    source = init_image(case["source_width"], case["source_height"])
    common = dict(prompt=case["prompt"], height=case["height"], width=case["width"],
                  num_inference_steps=case["steps"], strength=case["strength"], guidance_scale=0.0,
                  max_sequence_length=256, output_type="np")
    tensors = {"init_image": torch.from_numpy(source.astype(np.float32))}
    if case["kind"] == "img2img":
        pipe = FluxImg2ImgPipeline.from_pretrained(PIPELINE, torch_dtype=torch.float32)
        extra = {}
    else:
        pipe = FluxInpaintPipeline.from_pretrained(PIPELINE, torch_dtype=torch.float32)
        rgba = mask_rgba(case["source_width"], case["source_height"])
        tensors["mask_rgba"] = torch.from_numpy(rgba.astype(np.float32))
        extra = {"mask_image": Image.fromarray(255 - rgba[:, :, 3], mode="L")}
    pipe.set_progress_bar_config(disable=True)
    # The first scale_noise call of a run makes its starting latents.
    noised = []
    scale_noise = pipe.scheduler.scale_noise
    pipe.scheduler.scale_noise = lambda *args, **kwargs: noised.append(scale_noise(*args, **kwargs)) or noised[-1]
    images = []
    for index, seed in enumerate(case["seeds"]):
        generator = torch.Generator("cpu").manual_seed(seed)
        noised.clear()
        images.append(pipe(image=Image.fromarray(source), generator=generator, **common, **extra).images[0])
        tensors[f"start_latents_{index}"] = noised[0][0].contiguous()
    images = np.stack(images)  # [n, H, W, 3] in [0, 1]
    tensors["image_u8"] = torch.from_numpy(np.ascontiguousarray((images * 255).round().astype(np.uint8).astype(np.float32)))
    save_file(tensors, os.path.join(OUT, case["name"] + ".safetensors"))
    with open(os.path.join(OUT, case["name"] + ".json"), "w") as f:
        json.dump(case, f, indent=1)


def write_resizes():
    """PIL Lanczos resizes (downscale and upscale) of the test pattern, as the image processor makes them."""
    tensors = {}
    for name, (source_size, target_size) in {"down": ((80, 60), (64, 48)), "up": ((40, 30), (64, 48))}.items():
        source = init_image(*source_size)
        resized = np.array(Image.fromarray(source).resize(target_size, resample=Image.LANCZOS))
        tensors[f"{name}_source"] = torch.from_numpy(source.astype(np.float32))
        tensors[f"{name}_resized"] = torch.from_numpy(resized.astype(np.float32))
    save_file(tensors, os.path.join(OUT, "resize.safetensors"))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    write_resizes()
    for case in CASES:
        run(case)
