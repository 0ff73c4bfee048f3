"""Writes the FLUX transformer fixtures: tiny random FluxTransformer2DModel configurations in
the diffusers layout and in the original single-file layout, the inputs and outputs of one
forward call (with per-stage goldens), and name/shape manifests of the real FLUX.1 models.

Run with the pinned requirements (requirements.txt beside this file):
    python Tests/Fixtures/generate_transformer.py
CI never runs this; it uses the committed output under Tests/Fixtures/transformer/.
"""
import json
import os
import shutil

import torch
from diffusers import FluxTransformer2DModel
from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "transformer")

# Two tiny configurations: different head counts and widths, one with guidance (dev-like),
# one without (schnell-like), each with a non-square latent grid.
CONFIGS = {
    "tiny-schnell": dict(
        config=dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=3,
                    attention_head_dim=16, num_attention_heads=2, joint_attention_dim=24,
                    pooled_projection_dim=20, guidance_embeds=False, axes_dims_rope=[4, 6, 6]),
        grid=(6, 4), text_tokens=7, timestep=0.75, guidance=None, shard=None),
    "tiny-dev": dict(
        config=dict(patch_size=1, in_channels=8, num_layers=1, num_single_layers=2,
                    attention_head_dim=8, num_attention_heads=3, joint_attention_dim=16,
                    pooled_projection_dim=12, guidance_embeds=True, axes_dims_rope=[2, 2, 4]),
        grid=(3, 5), text_tokens=5, timestep=0.5, guidance=3.5, shard="20KB"),
}

REAL = {
    "flux1-schnell": dict(guidance_embeds=False),
    "flux1-dev": dict(guidance_embeds=True),
}


def to_original(state, inner, mlp):
    """diffusers names -> the original (single-file) names, fusing q|k|v and q|k|v|mlp."""
    out = {}

    def put(name, tensor):
        out[name] = tensor.contiguous()

    def linear(source, target):
        put(target + ".weight", state[source + ".weight"])
        put(target + ".bias", state[source + ".bias"])

    def fused(sources, target):
        put(target + ".weight", torch.cat([state[s + ".weight"] for s in sources]))
        put(target + ".bias", torch.cat([state[s + ".bias"] for s in sources]))

    linear("x_embedder", "img_in")
    linear("context_embedder", "txt_in")
    linear("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer")
    linear("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer")
    linear("time_text_embed.text_embedder.linear_1", "vector_in.in_layer")
    linear("time_text_embed.text_embedder.linear_2", "vector_in.out_layer")
    if "time_text_embed.guidance_embedder.linear_1.weight" in state:
        linear("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer")
        linear("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("transformer_blocks.")}
    for i in sorted(blocks):
        d, o = f"transformer_blocks.{i}", f"double_blocks.{i}"
        linear(f"{d}.norm1.linear", f"{o}.img_mod.lin")
        linear(f"{d}.norm1_context.linear", f"{o}.txt_mod.lin")
        fused([f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v"], f"{o}.img_attn.qkv")
        fused([f"{d}.attn.add_q_proj", f"{d}.attn.add_k_proj", f"{d}.attn.add_v_proj"], f"{o}.txt_attn.qkv")
        put(f"{o}.img_attn.norm.query_norm.scale", state[f"{d}.attn.norm_q.weight"])
        put(f"{o}.img_attn.norm.key_norm.scale", state[f"{d}.attn.norm_k.weight"])
        put(f"{o}.txt_attn.norm.query_norm.scale", state[f"{d}.attn.norm_added_q.weight"])
        put(f"{o}.txt_attn.norm.key_norm.scale", state[f"{d}.attn.norm_added_k.weight"])
        linear(f"{d}.attn.to_out.0", f"{o}.img_attn.proj")
        linear(f"{d}.attn.to_add_out", f"{o}.txt_attn.proj")
        linear(f"{d}.ff.net.0.proj", f"{o}.img_mlp.0")
        linear(f"{d}.ff.net.2", f"{o}.img_mlp.2")
        linear(f"{d}.ff_context.net.0.proj", f"{o}.txt_mlp.0")
        linear(f"{d}.ff_context.net.2", f"{o}.txt_mlp.2")
    singles = {int(k.split(".")[1]) for k in state if k.startswith("single_transformer_blocks.")}
    for i in sorted(singles):
        d, o = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        linear(f"{d}.norm.linear", f"{o}.modulation.lin")
        fused([f"{d}.attn.to_q", f"{d}.attn.to_k", f"{d}.attn.to_v", f"{d}.proj_mlp"], f"{o}.linear1")
        linear(f"{d}.proj_out", f"{o}.linear2")
        put(f"{o}.norm.query_norm.scale", state[f"{d}.attn.norm_q.weight"])
        put(f"{o}.norm.key_norm.scale", state[f"{d}.attn.norm_k.weight"])
    # The final AdaLN stores (shift, scale) in the original files, (scale, shift) in diffusers.
    scale, shift = state["norm_out.linear.weight"].chunk(2)
    put("final_layer.adaLN_modulation.1.weight", torch.cat([shift, scale]))
    scale, shift = state["norm_out.linear.bias"].chunk(2)
    put("final_layer.adaLN_modulation.1.bias", torch.cat([shift, scale]))
    linear("proj_out", "final_layer.linear")
    return out


def image_ids(height, width):
    ids = torch.zeros(height, width, 3)
    ids[..., 1] = torch.arange(height)[:, None]
    ids[..., 2] = torch.arange(width)[None, :]
    return ids.reshape(height * width, 3)


def randomise(model, generator):
    # Default inits leave norms at 1 and some projections at 0; random values everywhere make
    # every weight matter to the output.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator) * 0.2
            if "norm" in name and parameter.ndim == 1:
                parameter.copy_(1.0 + noise)
            else:
                parameter.copy_(noise)


def write_tiny(name, spec):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    generator = torch.Generator().manual_seed(1234)
    model = FluxTransformer2DModel(**spec["config"]).eval()
    randomise(model, generator)
    kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
    model.save_pretrained(os.path.join(folder, "transformer"), **kwargs)

    state = model.state_dict()
    inner = model.config.num_attention_heads * model.config.attention_head_dim
    original = to_original(state, inner, inner * 4)
    save_file(original, os.path.join(folder, f"{name}.safetensors"))
    check_round_trip(original, state)

    height, width = spec["grid"]
    config = spec["config"]
    inputs = {
        "hidden_states": torch.randn(1, height * width, config["in_channels"], generator=generator),
        "encoder_hidden_states": torch.randn(1, spec["text_tokens"], config["joint_attention_dim"], generator=generator),
        "pooled_projections": torch.randn(1, config["pooled_projection_dim"], generator=generator),
        "timestep": torch.tensor([spec["timestep"]]),
        "img_ids": image_ids(height, width),
        "txt_ids": torch.zeros(spec["text_tokens"], 3),
    }
    if spec["guidance"] is not None:
        inputs["guidance"] = torch.tensor([spec["guidance"]])

    stages = {}

    def keep(*names):
        # A forward hook that returns a value replaces the module's output: store, return None.
        def hook(module, args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            stages.update(zip(names, outputs))
        return hook

    model.time_text_embed.register_forward_hook(keep("temb"))
    model.transformer_blocks[0].register_forward_hook(keep("double0_txt", "double0_img"))
    model.single_transformer_blocks[0].register_forward_hook(keep("single0_txt", "single0_img"))
    with torch.no_grad():
        output = model(**inputs, return_dict=False)[0]
    tensors = {k: v.float().contiguous() for k, v in inputs.items()}
    tensors["output"] = output
    tensors.update({k: v.contiguous() for k, v in stages.items()})
    save_file(tensors, os.path.join(folder, "io.safetensors"))
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump({"grid": list(spec["grid"]), "text_tokens": spec["text_tokens"],
                   "axes_dims_rope": config["axes_dims_rope"]}, f, indent=1)


def check_round_trip(original, state):
    # diffusers' own single-file conversion hard-codes the real width (3072); run it on a
    # copy of the source with that constant patched to this model's width.
    import inspect
    import diffusers.loaders.single_file_utils as utils
    inner = state["x_embedder.weight"].shape[0]
    source = inspect.getsource(utils.convert_flux_transformer_checkpoint_to_diffusers)
    source = source.replace("inner_dim = 3072", f"inner_dim = {inner}")
    namespace = dict(vars(utils))
    exec(source, namespace)
    converted = namespace["convert_flux_transformer_checkpoint_to_diffusers"](dict(original))
    assert set(converted) == set(state), set(converted) ^ set(state)
    for key, value in converted.items():
        assert torch.equal(value, state[key]), key


def write_manifests():
    for name, overrides in REAL.items():
        with torch.device("meta"):
            model = FluxTransformer2DModel(
                patch_size=1, in_channels=64, num_layers=19, num_single_layers=38,
                attention_head_dim=128, num_attention_heads=24, joint_attention_dim=4096,
                pooled_projection_dim=768, axes_dims_rope=[16, 56, 56], **overrides)
        state = model.state_dict()
        diffusers_names = {k: list(v.shape) for k, v in state.items()}
        original = to_original(state, 3072, 12288)
        original_names = {k: list(v.shape) for k, v in original.items()}
        # The real single files convert back to exactly the diffusers names and shapes.
        converted = convert_flux_transformer_checkpoint_to_diffusers(dict(original))
        assert {k: list(v.shape) for k, v in converted.items()} == diffusers_names
        with open(os.path.join(OUT, f"manifest-{name}.json"), "w") as f:
            json.dump({"diffusers": diffusers_names, "original": original_names}, f, indent=0, sort_keys=True)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    for case, spec in CONFIGS.items():
        write_tiny(case, spec)
    write_manifests()
