"""Tiny random AutoencoderKL fixtures with FLUX's VAE structure (16 latent channels, 4 blocks,
no quant convs, mid-block attention), in both checkpoint layouts, plus diffusers' outputs.

Run with the pinned environment (Tests/Fixtures/requirements.txt):
    python Tests/Fixtures/generate_vae.py
Writes Tests/Fixtures/vae/<name>/:
    vae/config.json, vae/diffusion_pytorch_model.safetensors   diffusers layout
    ae.safetensors                                             original single-file layout
    parity.safetensors                                         latents -> decoded, image -> encoded_mean/_logvar
and Tests/Fixtures/vae/manifest-flux1.json: names and shapes of the real FLUX.1 VAE in both layouts.
"""
import json
import os

import torch
from diffusers import AutoencoderKL
from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS = {
    # Widths growing then flat like FLUX's [128, 256, 512, 512]; one resnet per down block.
    "tiny": dict(block_out_channels=[8, 16, 16, 16], norm_num_groups=4, layers_per_block=1),
    # FLUX's two resnets per down block (three per up block); weights stored as bfloat16 in
    # the diffusers layout, as the FLUX.1 repositories store them.
    "tiny-bf16": dict(block_out_channels=[8, 16, 24, 24], norm_num_groups=8, layers_per_block=2),
}


def make_vae(settings):
    blocks = len(settings["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * blocks,
        up_block_types=["UpDecoderBlock2D"] * blocks,
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=True,
        sample_size=1024,
        **settings,
    )
    # Norm affines away from (1, 0) so a swapped weight/bias cannot pass.
    with torch.no_grad():
        for name, parameter in vae.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                parameter.copy_(1 + 0.2 * torch.randn_like(parameter))
            elif name.endswith(".bias"):
                parameter.copy_(0.1 * torch.randn_like(parameter))
    return vae.eval()


def ldm_name(name, up_blocks):
    """diffusers AutoencoderKL name -> original (ae.safetensors) name."""
    parts = name.split(".")
    if parts[1] == "up_blocks":
        parts[1:3] = ["up", str(up_blocks - 1 - int(parts[2]))]
    elif parts[1] == "down_blocks":
        parts[1] = "down"
    name = ".".join(parts)
    for new, old in [
        ("mid_block.resnets.0.", "mid.block_1."),
        ("mid_block.resnets.1.", "mid.block_2."),
        ("mid_block.attentions.0.group_norm.", "mid.attn_1.norm."),
        ("mid_block.attentions.0.to_q.", "mid.attn_1.q."),
        ("mid_block.attentions.0.to_k.", "mid.attn_1.k."),
        ("mid_block.attentions.0.to_v.", "mid.attn_1.v."),
        ("mid_block.attentions.0.to_out.0.", "mid.attn_1.proj_out."),
        (".resnets.", ".block."),
        (".conv_shortcut.", ".nin_shortcut."),
        (".downsamplers.0.", ".downsample."),
        (".upsamplers.0.", ".upsample."),
        (".conv_norm_out.", ".norm_out."),
    ]:
        name = name.replace(new, old)
    return name


def to_ldm(state, up_blocks):
    converted = {}
    for name, tensor in state.items():
        if ".attentions.0.to_" in name and name.endswith(".weight"):
            tensor = tensor[:, :, None, None]  # the original stores q/k/v/proj_out as 1x1 convs
        converted[ldm_name(name, up_blocks)] = tensor.contiguous()
    return converted


def write_manifest():
    blocks = 4
    with torch.device("meta"):
        vae = AutoencoderKL(
            down_block_types=["DownEncoderBlock2D"] * blocks, up_block_types=["UpDecoderBlock2D"] * blocks,
            block_out_channels=[128, 256, 512, 512], layers_per_block=2, norm_num_groups=32,
            latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)
    state = vae.state_dict()
    original = to_ldm(state, blocks)
    back = convert_ldm_vae_checkpoint(original, dict(vae.config))
    assert {k: list(v.shape) for k, v in back.items()} == {k: list(v.shape) for k, v in state.items()}
    with open(os.path.join(HERE, "vae", "manifest-flux1.json"), "w") as f:
        json.dump({"diffusers": {k: list(v.shape) for k, v in state.items()},
                   "original": {k: list(v.shape) for k, v in original.items()}}, f, indent=0, sort_keys=True)


def main():
    torch.manual_seed(0)
    for name, settings in CONFIGS.items():
        folder = os.path.join(HERE, "vae", name)
        vae = make_vae(settings)
        bf16 = name.endswith("bf16")
        if bf16:
            with torch.no_grad():
                for parameter in vae.parameters():
                    parameter.copy_(parameter.to(torch.bfloat16).float())
        state = {k: v.detach().clone() for k, v in vae.state_dict().items()}

        vae.save_pretrained(os.path.join(folder, "vae"))
        if bf16:
            save_file({k: v.to(torch.bfloat16) for k, v in state.items()},
                      os.path.join(folder, "vae", "diffusion_pytorch_model.safetensors"),
                      metadata={"format": "pt"})
        ldm = to_ldm(state, len(settings["block_out_channels"]))
        save_file(ldm, os.path.join(folder, "ae.safetensors"))

        # The converter must invert diffusers' own single-file conversion exactly.
        back = convert_ldm_vae_checkpoint(ldm, dict(vae.config))
        assert set(back) == set(state), set(back) ^ set(state)
        for key in state:
            assert torch.equal(back[key].reshape(state[key].shape), state[key]), key

        generator = torch.Generator("cpu").manual_seed(1)
        latents = torch.randn(1, 16, 6, 4, generator=generator)
        image = torch.rand(1, 3, 48, 32, generator=generator) * 2 - 1
        with torch.no_grad():
            decoded = vae.decode(latents).sample
            distribution = vae.encode(image).latent_dist
        save_file({"latents": latents[0].contiguous(), "decoded": decoded[0].contiguous(),
                   "image": image[0].contiguous(),
                   "encoded_mean": distribution.mean[0].contiguous(),
                   "encoded_logvar": distribution.logvar[0].contiguous()},
                  os.path.join(folder, "parity.safetensors"))

        # The single file loads through diffusers' own loader to the same outputs.
        single = AutoencoderKL.from_single_file(os.path.join(folder, "ae.safetensors"),
                                                config=folder, subfolder="vae").eval()
        with torch.no_grad():
            assert torch.allclose(single.decode(latents).sample, decoded, atol=1e-6)
        print(name, "decoded", tuple(decoded.shape), "mean", tuple(distribution.mean.shape))
    write_manifest()


if __name__ == "__main__":
    main()
