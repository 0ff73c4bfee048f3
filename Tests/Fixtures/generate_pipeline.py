"""Writes tiny random FLUX pipelines and what diffusers' FluxPipeline makes with them.

- Weights/tiny-flux-schnell/: a schnell-like pipeline (no guidance embedding, unshifted
  schedule) in the diffusers folder layout. It is also the engine's bundled default model: a
  smoke-test model with the real architecture whose pictures are noise.
- Tests/Fixtures/pipeline/tiny-flux-schnell-files/: the same pipeline as original single files
  (flux transformer, ae.safetensors, clip_l.safetensors, t5xxl.safetensors).
- Tests/Fixtures/pipeline/tiny-flux-dev/: a dev-like pipeline (guidance embedding, dynamic shift).
- Tests/Fixtures/pipeline/cases/*.safetensors: per case the noise, text embeddings, final
  packed latents and the decoded image (float and 8-bit), from FluxPipeline in float32 on CPU.

Run with the pinned requirements (requirements.txt beside this file), after
generate_tokenizers.py (whose real CLIP vocabulary and T5-style tokenizer it reuses):
    python Tests/Fixtures/generate_pipeline.py
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from generate_transformer import randomise, to_original  # noqa: E402
from generate_vae import make_vae, to_ldm  # noqa: E402

OUT = os.path.join(HERE, "pipeline")
TOKENIZERS = os.path.join(HERE, "tokenizers")

PIPELINES = {
    # 128-wide heads, so the single file's rotary axes are FLUX.1's 16/56/56 without a config.
    "tiny-flux-schnell": dict(
        folder=os.path.join(ROOT, "Weights", "tiny-flux-schnell"), seed=11,
        transformer=dict(num_layers=1, num_single_layers=2, attention_head_dim=128, num_attention_heads=1,
                         guidance_embeds=False, axes_dims_rope=[16, 56, 56]),
        scheduler=dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)),
    "tiny-flux-dev": dict(
        folder=os.path.join(OUT, "tiny-flux-dev"), seed=12,
        transformer=dict(num_layers=2, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                         guidance_embeds=True, axes_dims_rope=[4, 6, 6]),
        scheduler=dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                       max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)),
}

CASES = [
    dict(name="schnell-64x48", pipeline="tiny-flux-schnell", prompt="a photo of a cat sitting on a red sofa",
         width=64, height=48, steps=4, seeds=[42], guidance=0.0, max_sequence_length=256),
    dict(name="schnell-48x48-n2", pipeline="tiny-flux-schnell", prompt="Ein Fuchs im Schnee, 雪の中の狐",
         width=48, height=48, steps=2, seeds=[7, 8], guidance=0.0, max_sequence_length=256),
    dict(name="dev-32x64", pipeline="tiny-flux-dev", prompt="a red cube on a blue table, studio light",
         width=32, height=64, steps=3, seeds=[3], guidance=3.5, max_sequence_length=512),
]

CLIP = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=2,
            pad_token_id=1, projection_dim=16)
VAE = dict(block_out_channels=[8, 16, 16, 16], norm_num_groups=4, layers_per_block=1)


def build(name, spec):
    folder = spec["folder"]
    shutil.rmtree(folder, ignore_errors=True)
    torch.manual_seed(spec["seed"])
    generator = torch.Generator().manual_seed(spec["seed"])

    shutil.copytree(os.path.join(TOKENIZERS, "clip-vocab-merges"), os.path.join(folder, "tokenizer"))
    shutil.copytree(os.path.join(TOKENIZERS, "t5-tokenizer-json"), os.path.join(folder, "tokenizer_2"))
    t5_vocab = len(T5TokenizerFast.from_pretrained(os.path.join(folder, "tokenizer_2")))

    clip = CLIPTextModel(CLIPTextConfig(**CLIP)).eval()
    t5 = T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                                 relative_attention_max_distance=128, dropout_rate=0.0)).eval()
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, joint_attention_dim=32,
                                         pooled_projection_dim=CLIP["hidden_size"], **spec["transformer"]).eval()
    randomise(transformer, generator)
    vae = make_vae(VAE)
    # Stored dtypes as the real repositories have them: bf16 transformer, f16 CLIP (its
    # 49,408-row embedding table dominates the fixture size).
    transformer.to(torch.bfloat16).save_pretrained(os.path.join(folder, "transformer"))
    clip.to(torch.float16).save_pretrained(os.path.join(folder, "text_encoder"))
    t5.save_pretrained(os.path.join(folder, "text_encoder_2"))
    vae.save_pretrained(os.path.join(folder, "vae"))
    FlowMatchEulerDiscreteScheduler(**spec["scheduler"]).save_pretrained(os.path.join(folder, "scheduler"))
    with open(os.path.join(folder, "model_index.json"), "w") as f:
        json.dump({"_class_name": "FluxPipeline", "_diffusers_version": "0.42.1",
                   "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
                   "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
                   "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}, f, indent=2)


def write_single_files(folder, target):
    """The pipeline's components in the original single-file layouts."""
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    pipe = FluxPipeline.from_pretrained(folder, torch_dtype=None)
    # The same stored dtypes as the folder: bf16 transformer, f16 CLIP.
    transformer = {k: v.to(torch.bfloat16) for k, v in pipe.transformer.state_dict().items()}
    inner = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
    save_file(to_original(transformer, inner, 4 * inner), os.path.join(target, "flux1-tiny-schnell.safetensors"))
    blocks = len(pipe.vae.config.block_out_channels)
    save_file(to_ldm(pipe.vae.state_dict(), blocks), os.path.join(target, "ae.safetensors"))
    clip = {("text_model." + k if not k.startswith("text_model.") else k): v.to(torch.float16).contiguous()
            for k, v in pipe.text_encoder.state_dict().items()}
    save_file(clip, os.path.join(target, "clip_l.safetensors"))
    t5 = {k: v.contiguous() for k, v in pipe.text_encoder_2.state_dict().items() if k != "encoder.embed_tokens.weight"}
    save_file(t5, os.path.join(target, "t5xxl.safetensors"))


def run_case(case):
    spec = PIPELINES[case["pipeline"]]
    pipe = FluxPipeline.from_pretrained(spec["folder"], torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    generators = [torch.Generator("cpu").manual_seed(s) for s in case["seeds"]]
    common = dict(prompt=case["prompt"], height=case["height"], width=case["width"],
                  num_inference_steps=case["steps"], guidance_scale=case["guidance"],
                  max_sequence_length=case["max_sequence_length"], num_images_per_prompt=len(case["seeds"]))
    prompt_embeds, pooled, _ = pipe.encode_prompt(prompt=case["prompt"], prompt_2=None,
                                                  max_sequence_length=case["max_sequence_length"])
    latents = pipe(**common, generator=generators, output_type="latent").images
    generators = [torch.Generator("cpu").manual_seed(s) for s in case["seeds"]]
    images = pipe(**common, generator=generators, output_type="np").images  # [n, H, W, 3] in [0, 1]
    tensors = {
        "prompt_embeds": prompt_embeds[0].contiguous(),
        "pooled": pooled[0].contiguous(),
        "latents": latents.contiguous(),
        "image": torch.from_numpy(np.ascontiguousarray(images)).float(),
        "image_u8": torch.from_numpy(np.ascontiguousarray((images * 255).round().astype("uint8").astype("float32"))),
    }
    for index, seed in enumerate(case["seeds"]):
        channels = pipe.transformer.config.in_channels // 4
        shape = (1, channels, 2 * (case["height"] // 16), 2 * (case["width"] // 16))
        tensors[f"noise_{index}"] = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))[0]
    os.makedirs(os.path.join(OUT, "cases"), exist_ok=True)
    save_file(tensors, os.path.join(OUT, "cases", case["name"] + ".safetensors"))
    meta = {k: v for k, v in case.items()}
    with open(os.path.join(OUT, "cases", case["name"] + ".json"), "w") as f:
        json.dump(meta, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    for name, spec in PIPELINES.items():
        build(name, spec)
    write_single_files(PIPELINES["tiny-flux-schnell"]["folder"], os.path.join(OUT, "tiny-flux-schnell-files"))
    for case in CASES:
        run_case(case)
