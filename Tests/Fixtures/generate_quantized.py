"""Quantized and fp8 weights against diffusers: GGUF files written by `schnell quantize`, and what
diffusers' FluxPipeline makes with the same weights dequantized by the `gguf` package.

Writes Tests/Fixtures/quantized/:
- tiny-schnell-Q8_0.gguf, tiny-t5-Q8_0.gguf: the bundled tiny pipeline's transformer (128 wide)
  and T5 encoder, quantized to Q8_0;
- wide-schnell-Q4_K.gguf, wide-t5-Q4_K.gguf: a 256-wide transformer (1 + 1 blocks) and T5
  encoder (d_model 256), random, quantized to Q4_K (its blocks are 256 values; the bundled
  model's rows are 128);
- tiny-schnell-fp8-scaled.safetensors: the bundled transformer in BFL names as ComfyUI's scaled
  fp8 (e4m3fn weights, `.scale_weight` per layer, a `scaled_fp8` marker), biases and norms bf16;
- cases/*.safetensors: per case the T5 states, the first transformer call's inputs and output,
  the final packed latents and the image (float and 8-bit), from FluxPipeline in float32 with
  the transformer's and T5's weights replaced by the file's values dequantized.

The GGUF files are Schnell's own output, so this also pins `schnell quantize`: the tests check
that it still writes them byte for byte. Run after generate_pipeline.py, with a built schnell:
    python Tests/Fixtures/generate_quantized.py .build/release/schnell
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import gguf
import numpy as np
import torch
from diffusers import FluxPipeline, FluxTransformer2DModel
from safetensors.torch import save_file
from transformers import T5Config, T5EncoderModel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from generate_transformer import randomise, to_original  # noqa: E402

OUT = os.path.join(HERE, "quantized")
BUNDLED = os.path.join(ROOT, "Weights", "tiny-flux-schnell")
CASE = dict(prompt="a photo of a cat sitting on a red sofa", width=64, height=48, steps=4, seed=42,
            max_sequence_length=256)

# llama.cpp's T5 names -> transformers' (the engine's table is T5WeightNames in
# TextEncoderWeightNames.swift; this is the generator's own copy).
T5_BLOCK = {"attn_q": "layer.0.SelfAttention.q", "attn_k": "layer.0.SelfAttention.k", "attn_v": "layer.0.SelfAttention.v",
            "attn_o": "layer.0.SelfAttention.o", "attn_rel_b": "layer.0.SelfAttention.relative_attention_bias",
            "attn_norm": "layer.0.layer_norm", "ffn_gate": "layer.1.DenseReluDense.wi_0",
            "ffn_up": "layer.1.DenseReluDense.wi_1", "ffn_down": "layer.1.DenseReluDense.wo",
            "ffn_norm": "layer.1.layer_norm"}


def gguf_tensors(path):
    """Every tensor of a GGUF file dequantized by the gguf package, with its row-major shape."""
    reader = gguf.GGUFReader(path)
    out = {}
    for tensor in reader.tensors:
        shape = [int(n) for n in reversed(tensor.shape.tolist())]
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        out[tensor.name] = torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(shape).copy())
    return out


def from_original(original, template):
    """BFL names -> diffusers names: the inverse of to_original, found by sending row numbers
    through it (each diffusers row lands on one original row)."""
    inner = template["x_embedder.weight"].shape[0]
    numbered, owner, start = {}, [], 0
    for name, tensor in template.items():
        rows = tensor.shape[0]
        numbered[name] = torch.arange(start, start + rows, dtype=torch.float64).reshape(
            [rows] + [1] * (tensor.ndim - 1)).expand(tensor.shape).contiguous()
        owner += [(name, r) for r in range(rows)]
        start += rows
    placed = to_original(numbered, inner, 4 * inner)
    out = {name: torch.empty(tensor.shape, dtype=torch.float32) for name, tensor in template.items()}
    for name, ids in placed.items():
        rows = ids.reshape(ids.shape[0], -1)[:, 0].long().tolist()
        for target_row, source in enumerate(rows):
            key, row = owner[source]
            out[key][row] = original[name][target_row].reshape(out[key][row].shape)
    return out


def t5_from_llama(tensors):
    out = {}
    for name, value in tensors.items():
        if name == "token_embd.weight":
            out["shared.weight"] = value
        elif name == "enc.output_norm.weight":
            out["encoder.final_layer_norm.weight"] = value
        else:
            _, _, index, kind, _ = name.split(".")
            out[f"encoder.block.{index}.{T5_BLOCK[kind]}.weight"] = value
    out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


def quantize(schnell, source, target, qtype, component):
    subprocess.run([schnell, "quantize", source, target, "--type", qtype, "--component", component, "--quiet"],
                   check=True, stdout=subprocess.DEVNULL)


def fp8_scaled(transformer_state, inner):
    """The transformer in BFL names as ComfyUI's scaled fp8 e4m3fn, and its dequantized values."""
    original = {k: v.float() for k, v in to_original(transformer_state, inner, 4 * inner).items()}
    stored, dequantized = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}, {}
    for name, value in original.items():
        if name.endswith(".weight") and value.ndim == 2:
            scale = value.abs().max() / 448.0
            fp8 = (value / scale).to(torch.float8_e4m3fn)
            stored[name] = fp8
            stored[name[:-len(".weight")] + ".scale_weight"] = scale.reshape([]).float()
            stored[name[:-len(".weight")] + ".scale_input"] = torch.ones([], dtype=torch.float32)
            dequantized[name] = fp8.float() * scale
        else:
            stored[name] = value.to(torch.bfloat16)
            dequantized[name] = stored[name].float()
    return stored, dequantized


def run_case(name, folder, transformer_state, t5_state):
    pipe = FluxPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if transformer_state is not None:
        pipe.transformer.load_state_dict(transformer_state)
    if t5_state is not None:
        pipe.text_encoder_2.load_state_dict(t5_state, strict=False)
    calls = []

    def hook(module, args, kwargs, output):
        if not calls:
            calls.append({"hidden_states": kwargs["hidden_states"][0], "encoder_hidden_states": kwargs["encoder_hidden_states"][0],
                          "pooled_projections": kwargs["pooled_projections"][0], "timestep": kwargs["timestep"],
                          "velocity": output[0][0]})
    pipe.transformer.register_forward_hook(hook, with_kwargs=True)
    common = dict(prompt=CASE["prompt"], height=CASE["height"], width=CASE["width"], num_inference_steps=CASE["steps"],
                  guidance_scale=0.0, max_sequence_length=CASE["max_sequence_length"])
    prompt_embeds, pooled, _ = pipe.encode_prompt(prompt=CASE["prompt"], prompt_2=None,
                                                  max_sequence_length=CASE["max_sequence_length"])
    latents = pipe(**common, generator=torch.Generator("cpu").manual_seed(CASE["seed"]), output_type="latent").images
    images = pipe(**common, generator=torch.Generator("cpu").manual_seed(CASE["seed"]), output_type="np").images
    first = calls[0]
    tensors = {
        "prompt_embeds": prompt_embeds[0].contiguous(), "pooled": pooled[0].contiguous(), "latents": latents[0].contiguous(),
        "image": torch.from_numpy(np.ascontiguousarray(images[0])).float(),
        "image_u8": torch.from_numpy(np.ascontiguousarray((images[0] * 255).round().astype("float32"))),
        "call_latents": first["hidden_states"].contiguous(), "call_text": first["encoder_hidden_states"].contiguous(),
        "call_pooled": first["pooled_projections"].contiguous(), "call_timestep": first["timestep"].reshape(1).float(),
        "call_velocity": first["velocity"].contiguous(),
    }
    os.makedirs(os.path.join(OUT, "cases"), exist_ok=True)
    save_file(tensors, os.path.join(OUT, "cases", name + ".safetensors"))
    with open(os.path.join(OUT, "cases", name + ".json"), "w") as f:
        json.dump(CASE, f, indent=1)


def wide_pipeline(folder):
    """The bundled pipeline with a 256-wide transformer and T5 encoder (random, float32)."""
    shutil.copytree(BUNDLED, folder)
    generator = torch.Generator().manual_seed(21)
    torch.manual_seed(21)
    t5_vocab = T5EncoderModel.from_pretrained(os.path.join(BUNDLED, "text_encoder_2")).config.vocab_size
    t5 = T5EncoderModel(T5Config(vocab_size=t5_vocab, d_model=256, d_kv=64, d_ff=512, num_layers=2, num_heads=4,
                                 feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                                 relative_attention_max_distance=128, dropout_rate=0.0)).eval()
    with torch.no_grad():
        for parameter in t5.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05 + (1.0 if parameter.ndim == 1 else 0.0))
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                         attention_head_dim=128, num_attention_heads=2, joint_attention_dim=256,
                                         pooled_projection_dim=16, guidance_embeds=False, axes_dims_rope=[16, 56, 56]).eval()
    randomise(transformer, generator)
    for component, model in [("transformer", transformer), ("text_encoder_2", t5)]:
        shutil.rmtree(os.path.join(folder, component))
        model.save_pretrained(os.path.join(folder, component))


def main(schnell):
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with tempfile.TemporaryDirectory() as scratch:
        # Q8_0 on the bundled pipeline.
        bundled = FluxPipeline.from_pretrained(BUNDLED, torch_dtype=torch.float32)
        template = bundled.transformer.state_dict()
        for component, file in [("transformer", "tiny-schnell-Q8_0.gguf"), ("t5", "tiny-t5-Q8_0.gguf")]:
            quantize(schnell, BUNDLED, os.path.join(OUT, file), "q8_0", component)
        run_case("tiny-Q8_0", BUNDLED, from_original(gguf_tensors(os.path.join(OUT, "tiny-schnell-Q8_0.gguf")), template),
                 t5_from_llama(gguf_tensors(os.path.join(OUT, "tiny-t5-Q8_0.gguf"))))
        # Q4_K on the 256-wide pipeline.
        wide = os.path.join(scratch, "wide")
        wide_pipeline(wide)
        for component, file in [("transformer", "wide-schnell-Q4_K.gguf"), ("t5", "wide-t5-Q4_K.gguf")]:
            quantize(schnell, wide, os.path.join(OUT, file), "q4_k", component)
        wide_template = FluxTransformer2DModel.from_pretrained(os.path.join(wide, "transformer")).state_dict()
        run_case("wide-Q4_K", wide, from_original(gguf_tensors(os.path.join(OUT, "wide-schnell-Q4_K.gguf")), wide_template),
                 t5_from_llama(gguf_tensors(os.path.join(OUT, "wide-t5-Q4_K.gguf"))))
        # Scaled fp8 on the bundled transformer.
        inner = template["x_embedder.weight"].shape[0]
        stored, dequantized = fp8_scaled(template, inner)
        save_file(stored, os.path.join(OUT, "tiny-schnell-fp8-scaled.safetensors"))
        run_case("tiny-fp8-scaled", BUNDLED, from_original(dequantized, template), None)


if __name__ == "__main__":
    main(os.path.abspath(sys.argv[1]))
