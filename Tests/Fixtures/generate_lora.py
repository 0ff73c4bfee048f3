"""Writes small LoRA files for the bundled tiny pipeline (Weights/tiny-flux-schnell) and what
diffusers' FluxPipeline makes with them, for the LoRA reader tests and the parity tests.

Files under Tests/Fixtures/lora/ (each LoRA is loaded back with `FluxPipeline.load_lora_weights`,
i.e. through diffusers' own key converters, before its references are made; a file diffusers
refuses stops the script):
- peft.safetensors: diffusers/PEFT format written by peft + `FluxPipeline.save_lora_weights`:
  rank 4, lora_alpha 8 (scale 2, recorded only in the `lora_adapter_metadata` JSON of the
  safetensors metadata), on every linear of the double and single blocks that diffusers
  names (to_q/k/v, add_q/k/v_proj, to_out.0, to_add_out, ff(_context).net.0.proj/net.2,
  norm1(_context).linear, norm.linear, proj_mlp, proj_out) and the final norm_out.linear;
  random non-zero A and B, stored in bf16.
- peft-small.safetensors: a second PEFT LoRA (rank 2, alpha = rank, f32) on to_q, to_v,
  proj_out, for the two-at-once case.
- kohya.safetensors: kohya's `lora_unet_<BFL name with _>.lora_down/lora_up.weight` + `.alpha`
  (alpha != rank, alpha / rank a power of two: diffusers folds it into the f16 tensors in f16,
  exactly only then) in f16, written here from random tensors: double block qkv/proj/mlp/mod of
  both streams, single blocks' linear2 and modulation_lin. Two kinds of keys are left out
  because diffusers 0.42 cannot take them: single_blocks_N_linear1 (its converter hard-codes
  FLUX.1's row split 3072, 3072, 3072, 12288) and final_layer_* (its converter names them
  without the `transformer.` prefix, so load_lora_weights drops them without a word).
- kohya-te.safetensors: a kohya CLIP LoRA (`lora_te1_text_model_encoder_layers_N_...`: q/k/v/
  out_proj, mlp_fc1/fc2; alphas 1 to 4 at rank 2, 1.5 among the scales), f32.
- xlabs.safetensors: XLabs' `double_blocks.N.processor.{qkv,proj}_lora{1,2}.{down,up}.weight`
  and `single_blocks.N.processor.{qkv,proj}_lora.{down,up}.weight` (diffusers maps proj_lora to
  single_transformer_blocks.N.proj_out, i.e. linear2); XLabs files carry no alpha (scale 1); f16.
- layer-deltas.safetensors: per LoRA file and per layer diffusers put it on, that layer's LoRA
  term at adapter scale 1 for a fixed probe input `probe_<in features>`:
  `<file>:<transformer|text_encoder>.<module>` = layer(x) - base_layer(x), i.e.
  (alpha / rank) B (A x) as diffusers converted the file. It checks the reader's engine
  deltas (names, rows, scale) against diffusers' own reading, layer by layer.
- references.safetensors: fixed transformer inputs (`hidden_states` [12, 64] for a 3x4 grid,
  `encoder_hidden_states` [5, 32], `pooled_projections` [1, 16], `timestep` [0.75] (diffusers'
  convention: FluxTransformer2DModel scales it by 1000 itself), `img_ids`,
  `txt_ids`), the plain transformer `output_base` and per LoRA `output_<name>` at scale 0.8
  (`output_peft+peft-small` at 0.8 and 0.5; kohya-te changes no transformer output and has
  none); `image_<name>` (8-bit values stored as f16, [48, 64, 3]) for the pipeline case
  schnell-64x48 of generate_pipeline.py (same prompt, seed 42, 64x48, 4 steps, guidance 0,
  max_sequence_length 256) with that LoRA at 0.8, `image_base` without, and `image_peft+peft-small`.

Scale semantics of the references: `pipe.set_adapters([names], [weights])`, so a layer computes
W x + sum_i weight_i * (alpha_i / rank_i) * B_i (A_i x); for kohya files diffusers folds
alpha / rank into A and B when it converts them. All runs are float32 on CPU.

Run with the pinned requirements (requirements.txt beside this file; peft for this script):
    python Tests/Fixtures/generate_lora.py
"""
import json
import os

import numpy as np
import torch
from diffusers import FluxPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(ROOT, "Weights", "tiny-flux-schnell")
OUT = os.path.join(HERE, "lora")

CASE = dict(prompt="a photo of a cat sitting on a red sofa", width=64, height=48, num_inference_steps=4,
            guidance_scale=0.0, max_sequence_length=256)
SEED = 42
SCALE = 0.8

PEFT_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2", "norm1.linear",
                "norm1_context.linear", "norm.linear", "proj_mlp", "proj_out", "norm_out.linear"]


def load_pipe():
    pipe = FluxPipeline.from_pretrained(MODEL, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_peft(name, rank, alpha, targets, seed, dtype):
    """A LoRA made by peft on the transformer, saved by diffusers."""
    pipe = load_pipe()
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
    pipe.transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module_name, parameter in pipe.transformer.named_parameters():
            if "lora_" in module_name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    state = {k: v.to(dtype).contiguous() for k, v in get_peft_model_state_dict(pipe.transformer).items()}
    # target_modules is a set: sorted, so the values do not change with Python's hash seed (the
    # order of the two metadata entries in the header still may: safetensors keeps them in a map).
    metadata = dict(config.to_dict(), target_modules=sorted(config.target_modules))
    FluxPipeline.save_lora_weights(OUT, transformer_lora_layers=state, weight_name=name + ".safetensors",
                                   transformer_lora_adapter_metadata=metadata)


def random_pair(generator, rank, in_features, out_features):
    return (torch.randn(rank, in_features, generator=generator) * 0.1,
            torch.randn(out_features, rank, generator=generator) * 0.1)


def write_kohya(config):
    inner = config.num_attention_heads * config.attention_head_dim
    mlp = 4 * inner
    generator = torch.Generator().manual_seed(21)
    rank = 4
    modules = []  # (kohya name, in, out, alpha)
    for i in range(config.num_layers):
        for stream in ["img", "txt"]:
            modules += [(f"double_blocks_{i}_{stream}_attn_qkv", inner, 3 * inner, 2.0),
                        (f"double_blocks_{i}_{stream}_attn_proj", inner, inner, 8.0),
                        (f"double_blocks_{i}_{stream}_mlp_0", inner, mlp, 4.0),
                        (f"double_blocks_{i}_{stream}_mlp_2", mlp, inner, 1.0),
                        (f"double_blocks_{i}_{stream}_mod_lin", inner, 6 * inner, 2.0)]
    for i in range(config.num_single_layers):
        modules += [(f"single_blocks_{i}_linear2", inner + mlp, inner, 2.0),
                    (f"single_blocks_{i}_modulation_lin", inner, 3 * inner, 8.0)]
    state = {}
    for name, in_features, out_features, alpha in modules:
        down, up = random_pair(generator, rank, in_features, out_features)
        state[f"lora_unet_{name}.lora_down.weight"] = down.half()
        state[f"lora_unet_{name}.lora_up.weight"] = up.half()
        state[f"lora_unet_{name}.alpha"] = torch.tensor(alpha, dtype=torch.float16)
    save_file(state, os.path.join(OUT, "kohya.safetensors"))


def write_kohya_te(clip_config):
    hidden, intermediate = clip_config.hidden_size, clip_config.intermediate_size
    generator = torch.Generator().manual_seed(22)
    rank = 2
    state = {}
    for i in range(clip_config.num_hidden_layers):
        layer = f"lora_te1_text_model_encoder_layers_{i}"
        for name, in_features, out_features, alpha in [("self_attn_q_proj", hidden, hidden, 1.0),
                                                       ("self_attn_k_proj", hidden, hidden, 4.0),
                                                       ("self_attn_v_proj", hidden, hidden, 2.0),
                                                       ("self_attn_out_proj", hidden, hidden, 2.0),
                                                       ("mlp_fc1", hidden, intermediate, 3.0),
                                                       ("mlp_fc2", intermediate, hidden, 2.0)]:
            down, up = random_pair(generator, rank, in_features, out_features)
            # Larger than the transformer's: CLIP's 16-wide features move little otherwise.
            state[f"{layer}_{name}.lora_down.weight"] = down * 5
            state[f"{layer}_{name}.lora_up.weight"] = up * 5
            state[f"{layer}_{name}.alpha"] = torch.tensor(alpha)
    save_file(state, os.path.join(OUT, "kohya-te.safetensors"))


def write_xlabs(config):
    inner = config.num_attention_heads * config.attention_head_dim
    mlp = 4 * inner
    generator = torch.Generator().manual_seed(23)
    rank = 4
    state = {}
    for i in range(config.num_layers):
        for stream in ["1", "2"]:
            for kind, out_features in [("qkv", 3 * inner), ("proj", inner)]:
                down, up = random_pair(generator, rank, inner, out_features)
                state[f"double_blocks.{i}.processor.{kind}_lora{stream}.down.weight"] = down.half()
                state[f"double_blocks.{i}.processor.{kind}_lora{stream}.up.weight"] = up.half()
    for i in range(config.num_single_layers):
        down, up = random_pair(generator, rank, inner, 3 * inner)
        state[f"single_blocks.{i}.processor.qkv_lora.down.weight"] = down.half()
        state[f"single_blocks.{i}.processor.qkv_lora.up.weight"] = up.half()
        down, up = random_pair(generator, rank, inner + mlp, inner)
        state[f"single_blocks.{i}.processor.proj_lora.down.weight"] = down.half()
        state[f"single_blocks.{i}.processor.proj_lora.up.weight"] = up.half()
    save_file(state, os.path.join(OUT, "xlabs.safetensors"))


def image_ids(height, width):
    ids = torch.zeros(height, width, 3)
    ids[..., 1] = torch.arange(height)[:, None]
    ids[..., 2] = torch.arange(width)[None, :]
    return ids.reshape(height * width, 3)


def transformer_inputs(config):
    generator = torch.Generator().manual_seed(31)
    height, width, text = 3, 4, 5
    return {
        "hidden_states": torch.randn(1, height * width, config.in_channels, generator=generator),
        "encoder_hidden_states": torch.randn(1, text, config.joint_attention_dim, generator=generator),
        "pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=generator),
        "timestep": torch.tensor([0.75]),
        "img_ids": image_ids(height, width),
        "txt_ids": torch.zeros(text, 3),
    }


def references(runs):
    """`runs`: name -> [(file, scale)]. Each run loads its files into a fresh pipeline."""
    pipe = load_pipe()
    inputs = transformer_inputs(pipe.transformer.config)
    tensors = {k: v[0].contiguous() if v.ndim > 2 else v.contiguous() for k, v in inputs.items()}
    for name, loras in runs.items():
        pipe = load_pipe()
        adapters = []
        for index, (file, scale) in enumerate(loras):
            adapter = f"a{index}"
            pipe.load_lora_weights(OUT, weight_name=file + ".safetensors", adapter_name=adapter)
            adapters.append((adapter, scale))
        if adapters:
            pipe.set_adapters([a for a, _ in adapters], [s for _, s in adapters])
        touches_transformer = name == "base" or any(f != "kohya-te" for f, _ in loras)
        with torch.no_grad():
            if touches_transformer:
                tensors["output_" + name] = pipe.transformer(**inputs, return_dict=False)[0][0].contiguous()
            image = pipe(**CASE, generator=torch.Generator("cpu").manual_seed(SEED), output_type="np").images[0]
        tensors["image_" + name] = torch.from_numpy(np.ascontiguousarray((image * 255).round().astype(np.float16)))
        print(name, "image mean", float(image.mean()))
    for name in runs:
        if name != "base":
            assert not torch.equal(tensors["image_" + name], tensors["image_base"]), f"{name} changed nothing"
            if "output_" + name in tensors:
                change = (tensors["output_" + name] - tensors["output_base"]).norm() / tensors["output_base"].norm()
                print(name, "relative change of the transformer output", float(change))
                assert change > 1e-3, f"{name} barely changes the transformer output"
    save_file(tensors, os.path.join(OUT, "references.safetensors"))


def layer_deltas(files, probes):
    """Per LoRA and per diffusers layer it reaches, the layer's LoRA term at adapter scale 1 on a
    fixed probe input: layer(x) - base_layer(x) = (alpha / rank) * B (A x), as diffusers converted
    the file. Keys `<file>:<component>.<diffusers or transformers module>`."""
    tensors = {f"probe_{n}": probe for n, probe in probes.items()}
    for file in files:
        pipe = load_pipe()
        pipe.load_lora_weights(OUT, weight_name=file + ".safetensors", adapter_name="probe")
        for component in ["transformer", "text_encoder"]:
            for name, module in getattr(pipe, component).named_modules():
                if hasattr(module, "lora_A") and "probe" in module.lora_A:
                    x = probes[module.in_features]
                    with torch.no_grad():
                        tensors[f"{file}:{component}.{name}"] = (module(x) - module.base_layer(x)).contiguous()
    save_file(tensors, os.path.join(OUT, "layer-deltas.safetensors"))


def check_loaded(file, component_counts):
    """diffusers must convert every pair of `file` (it refuses or warns about unknown keys)."""
    pipe = load_pipe()
    pipe.load_lora_weights(OUT, weight_name=file + ".safetensors", adapter_name="check")
    for component, expected in component_counts.items():
        model = getattr(pipe, component)
        layers = sum(1 for _, m in model.named_modules() if hasattr(m, "lora_A") and "check" in m.lora_A)
        assert layers == expected, f"{file}: {layers} {component} layers got the LoRA, expected {expected}"
        print(file, component, layers, "layers")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    base = load_pipe()
    config, clip_config = base.transformer.config, base.text_encoder.config
    write_peft("peft", rank=4, alpha=8, targets=PEFT_TARGETS, seed=41, dtype=torch.bfloat16)
    write_peft("peft-small", rank=2, alpha=2, targets=["to_q", "to_v", "proj_out"], seed=42, dtype=torch.float32)
    write_kohya(config)
    write_kohya_te(clip_config)
    write_xlabs(config)
    layers, singles = config.num_layers, config.num_single_layers
    check_loaded("peft", {"transformer": 14 * layers + 6 * singles + 2})
    check_loaded("peft-small", {"transformer": 2 * layers + 3 * singles + 1})
    # kohya's fused qkv becomes 3 diffusers layers per stream.
    check_loaded("kohya", {"transformer": 14 * layers + 2 * singles})
    check_loaded("kohya-te", {"text_encoder": 6 * clip_config.num_hidden_layers})
    check_loaded("xlabs", {"transformer": 8 * layers + 4 * singles})
    generator = torch.Generator().manual_seed(51)
    widths = sorted({m.in_features for c in [base.transformer, base.text_encoder] for m in c.modules()
                     if isinstance(m, torch.nn.Linear)})
    layer_deltas(["peft", "peft-small", "kohya", "kohya-te", "xlabs"],
                 {n: torch.randn(n, generator=generator) for n in widths})
    with open(os.path.join(OUT, "peft.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    print("peft metadata:", header.get("__metadata__", {}).get("lora_adapter_metadata", "")[:300])
    references({"base": [], "peft": [("peft", SCALE)], "peft-small": [("peft-small", SCALE)],
                "kohya": [("kohya", SCALE)], "kohya-te": [("kohya-te", SCALE)], "xlabs": [("xlabs", SCALE)],
                "peft+peft-small": [("peft", 0.8), ("peft-small", 0.5)]})
