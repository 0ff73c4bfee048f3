"""The torch side of compare_diffusers.py, run in the Python that has torch, diffusers and
transformers. Each subcommand runs in its own process, so a generation's peak RSS is its own:

    build OUT_DIR CONFIG_JSON            a random FLUX pipeline in the diffusers folder layout,
                                         OUT_DIR/f32 (float32 weights) and OUT_DIR/bf16 (bfloat16)
    generate MODEL_DIR REQUEST_JSON      FluxPipeline on the CPU; per-stage seconds to a JSON file
    compare REFERENCE.png IMAGE.png      max abs difference (in 1/255) and PSNR as JSON on stdout
"""
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")


def randomise(model, generator):
    """Weights ~ N(0, 1/fan_in) keep activations O(1) through a wide random network (a fixed
    0.2 would blow up at width 1536 and saturate every pixel); norms near 1, small biases."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.ndim == 1:
                parameter.copy_((1.0 + 0.1 * noise) if "norm" in name else 0.02 * noise)
            else:
                fan_in = parameter[0].numel()
                parameter.copy_(noise / math.sqrt(fan_in))


def build(out_dir, config):
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5TokenizerFast

    generator = torch.Generator().manual_seed(config["seed"])
    t5_vocab = len(T5TokenizerFast.from_pretrained(os.path.join(TOKENIZERS, "t5-tokenizer-json")))
    clip = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=config["clip_hidden"], intermediate_size=4 * config["clip_hidden"],
        num_hidden_layers=config["clip_layers"], num_attention_heads=config["clip_hidden"] // 64,
        max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=2, pad_token_id=1,
        projection_dim=config["clip_hidden"])).eval()
    t5 = T5EncoderModel(T5Config(
        vocab_size=t5_vocab, d_model=config["t5_dim"], d_kv=64, d_ff=config["t5_ff"], num_layers=config["t5_layers"],
        num_heads=config["t5_dim"] // 64, feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
        relative_attention_max_distance=128, dropout_rate=0.0)).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=config["double"], num_single_layers=config["single"],
        attention_head_dim=128, num_attention_heads=config["hidden"] // 128, joint_attention_dim=config["t5_dim"],
        pooled_projection_dim=config["clip_hidden"], guidance_embeds=False, axes_dims_rope=[16, 56, 56]).eval()
    channels = config["vae_channels"]
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * len(channels),
        up_block_types=["UpDecoderBlock2D"] * len(channels), block_out_channels=channels,
        layers_per_block=config["vae_layers"], norm_num_groups=config["vae_groups"], latent_channels=16,
        scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=True, sample_size=1024).eval()
    for model in (clip, t5, transformer, vae):
        randomise(model, generator)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)

    for dtype_name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        folder = os.path.join(out_dir, dtype_name)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(os.path.join(TOKENIZERS, "clip-vocab-merges"), os.path.join(folder, "tokenizer"))
        shutil.copytree(os.path.join(TOKENIZERS, "t5-tokenizer-json"), os.path.join(folder, "tokenizer_2"))
        for name, model in (("text_encoder", clip), ("text_encoder_2", t5), ("transformer", transformer), ("vae", vae)):
            model.to(dtype).save_pretrained(os.path.join(folder, name))
        scheduler.save_pretrained(os.path.join(folder, "scheduler"))
        with open(os.path.join(folder, "model_index.json"), "w") as f:
            json.dump({"_class_name": "FluxPipeline", "_diffusers_version": "0.42.1",
                       "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                       "text_encoder": ["transformers", "CLIPTextModel"],
                       "text_encoder_2": ["transformers", "T5EncoderModel"],
                       "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
                       "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]},
                      f, indent=2)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=1)


def generate(model_dir, request):
    """request: dtype ("float32"/"bfloat16"), threads, prompt, seed, size, steps, max_sequence_length,
    runs, output (the PNG), result (where to write the JSON {"load", "runs": [{stage: seconds}],
    "first image at", "peak rss bytes"}; "first image at" is time.time() when the first PNG was written)."""
    from diffusers import FluxPipeline

    torch.set_num_threads(request["threads"])
    load_start = time.perf_counter()
    pipe = FluxPipeline.from_pretrained(model_dir, torch_dtype=getattr(torch, request["dtype"]))
    pipe.set_progress_bar_config(disable=True)
    load_seconds = time.perf_counter() - load_start

    stages = {}
    step_start = []

    def timed(name, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            result = function(*args, **kwargs)
            stages[name] = time.perf_counter() - start
            return result
        return wrapper

    # FluxPipeline calls these through the instance, so instance attributes intercept them.
    pipe.encode_prompt = timed("text encoders", pipe.encode_prompt)
    pipe.vae.decode = timed("vae decode", pipe.vae.decode)
    pipe.transformer.register_forward_pre_hook(lambda module, args: step_start.append(time.perf_counter()))
    pipe.transformer.register_forward_hook(
        lambda module, args, output: stages.__setitem__(f"step {len(step_start)}", time.perf_counter() - step_start[-1]))

    runs, first_image_at = [], None
    for run in range(request["runs"]):
        stages.clear()
        step_start.clear()
        start = time.perf_counter()
        with torch.inference_mode():
            image = pipe(prompt=request["prompt"], height=request["size"], width=request["size"],
                         num_inference_steps=request["steps"], guidance_scale=0.0,
                         max_sequence_length=request["max_sequence_length"],
                         generator=torch.Generator("cpu").manual_seed(request["seed"])).images[0]
        encode_start = time.perf_counter()
        image.save(request["output"])
        stages["image encode"] = time.perf_counter() - encode_start
        stages["end to end"] = time.perf_counter() - start
        first_image_at = first_image_at or time.time()
        runs.append(dict(stages))
    with open(request["result"], "w") as f:
        json.dump({"load": load_seconds, "runs": runs, "first image at": first_image_at,
                   "peak rss bytes": _peak_rss_bytes()}, f)


def _peak_rss_bytes():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kilobytes


def compare(reference_path, image_path):
    reference = np.asarray(Image.open(reference_path).convert("RGB"), dtype=np.float64)
    image = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float64)
    if reference.shape != image.shape:
        raise SystemExit(f"{image_path} is {image.shape}, {reference_path} is {reference.shape}")
    difference = np.abs(reference - image)
    mse = float(np.mean(difference ** 2))
    psnr = float("inf") if mse == 0 else 10 * math.log10(255 ** 2 / mse)
    json.dump({"max abs": float(difference.max()), "mean abs": float(difference.mean()), "psnr": psnr}, sys.stdout)


if __name__ == "__main__":
    command, arguments = sys.argv[1], sys.argv[2:]
    if command == "build":
        build(arguments[0], json.loads(arguments[1]))
    elif command == "generate":
        generate(arguments[0], json.loads(arguments[1]))
    elif command == "compare":
        compare(*arguments)
    else:
        raise SystemExit(f"unknown subcommand {command!r}: build, generate or compare")
