"""Writes the text-encoder parity fixtures under Tests/Fixtures/text_encoders/.

Run with the pinned reference environment (torch 2.15, transformers 5.23):
    python Tests/Fixtures/generate_text_encoders.py
CI never runs this; the outputs are committed.

For each tiny random model: the diffusers layout (`text_encoder/` or `text_encoder_2/` with
config.json and safetensors, some sharded, some stored in bf16/f16), a single file in the layout
self-hosters download (`clip_l.safetensors` names with the `text_model.` prefix,
`t5xxl_fp16.safetensors` names), input ids with padding, and float32 outputs in
`expected.safetensors`. Weights stored in bf16/f16 are rounded first and the reference runs in
float32 on the rounded values, so the comparison measures the engine, not the storage.

Also writes manifests (tensor names and shapes) of the real CLIP-L and T5-XXL encoders of
FLUX.1, built on the meta device (no memory).
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel
from transformers.models.t5.modeling_t5 import T5Attention

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "text_encoders")


def rounded(model, dtype):
    """The model's weights rounded to the storage dtype, back in float32."""
    model.to(dtype).to(torch.float32)
    return model


def write_case(folder, ids, tensors):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "input_ids.json"), "w") as f:
        json.dump(ids, f)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "expected.safetensors"))


def clip_case(name, config, dtype, shard, ids, seed):
    torch.manual_seed(seed)
    model = rounded(CLIPTextModel(config).eval(), dtype)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    folder = os.path.join(ROOT, name)
    write_case(folder, ids, {"last_hidden_state": out.last_hidden_state[0], "pooler_output": out.pooler_output[0]})
    stored = model.to(dtype)
    stored.save_pretrained(os.path.join(folder, "text_encoder"), max_shard_size=shard)
    # The single-file layout (and the real FLUX repos) keep transformers 4's prefixed names.
    single = {"text_model." + k: v.contiguous() for k, v in stored.state_dict().items()}
    save_file(single, os.path.join(folder, "clip_l.safetensors"))


def t5_case(name, config, dtype, shard, ids, seed, embed_names):
    torch.manual_seed(seed)
    model = rounded(T5EncoderModel(config).eval(), dtype)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    folder = os.path.join(ROOT, name)
    write_case(folder, ids, {"last_hidden_state": out.last_hidden_state[0]})
    stored = model.to(dtype)
    stored.save_pretrained(os.path.join(folder, "text_encoder_2"), max_shard_size=shard)
    state = {k: v.contiguous() for k, v in stored.state_dict().items()
             if k not in ("shared.weight", "encoder.embed_tokens.weight")}
    for embed_name in embed_names:
        state[embed_name] = stored.shared.weight.detach().clone().contiguous()
    save_file(state, os.path.join(folder, "t5xxl_fp16.safetensors"))


def manifest(model, prefix, skip):
    return {prefix + k: list(v.shape) for k, v in model.state_dict().items() if k not in skip}


def main():
    generator = torch.Generator().manual_seed(1234)

    # CLIP with the legacy eos_token_id 2: pooled at argmax(ids); padded with the end id (999),
    # as FLUX's CLIP tokenizer pads with <|endoftext|>.
    ids = [998] + torch.randint(3, 990, (12,), generator=generator).tolist() + [999] * 64
    clip_case("clip_quick_gelu", CLIPTextConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
        eos_token_id=2, bos_token_id=998, pad_token_id=1), torch.float32, "50GB", ids, 1)

    # CLIP with a real-style eos id (500): pooled at its first occurrence; a larger id (997)
    # before it makes argmax point elsewhere. Stored in bf16, sharded.
    ids = [998, 997] + torch.randint(3, 490, (10,), generator=generator).tolist() + [500] + [0] * 64
    clip_case("clip_gelu_bf16", CLIPTextConfig(
        vocab_size=1000, hidden_size=48, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=77, hidden_act="gelu",
        layer_norm_eps=1e-5, eos_token_id=500, bos_token_id=998, pad_token_id=0),
        torch.bfloat16, "100KB", ids, 2)

    # T5 with gated-GELU (as T5-XXL), 64 ids ending in </s> (1) then padding (0). Sharded.
    ids = torch.randint(2, 1000, (20,), generator=generator).tolist() + [1] + [0] * 43
    t5_case("t5_gated_gelu", T5Config(
        vocab_size=1000, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
        relative_attention_num_buckets=32, relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, is_encoder_decoder=False),
        torch.float32, "60KB", ids, 3, ["shared.weight", "encoder.embed_tokens.weight"])

    # T5 with ReLU, inner dim 64 != d_model 32, other bucket settings, 256 ids, stored in f16.
    ids = torch.randint(2, 1000, (40,), generator=generator).tolist() + [1] + [0] * 215
    t5_case("t5_relu_f16", T5Config(
        vocab_size=1000, d_model=32, d_kv=16, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=20,
        feed_forward_proj="relu", layer_norm_epsilon=1e-5, is_encoder_decoder=False),
        torch.float16, "50GB", ids, 4, ["encoder.embed_tokens.weight"])

    # Manifests of the real encoders (FLUX.1-schnell text_encoder / text_encoder_2 configs).
    with torch.device("meta"):
        clip_l = CLIPTextModel(CLIPTextConfig(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
            eos_token_id=2, projection_dim=768))
        t5_xxl = T5EncoderModel(T5Config(
            vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
            feed_forward_proj="gated-gelu", is_encoder_decoder=False))
    manifests = {
        "clip_l_manifest.json": manifest(clip_l, "text_model.", set()),
        # encoder.embed_tokens.weight is tied to shared.weight and not saved.
        "t5_xxl_manifest.json": manifest(t5_xxl, "", {"encoder.embed_tokens.weight"}),
    }
    for file, names in manifests.items():
        lines = [f"  {json.dumps(name)}: {json.dumps(shape)}" for name, shape in sorted(names.items())]
        with open(os.path.join(ROOT, file), "w") as f:
            f.write("{\n" + ",\n".join(lines) + "\n}\n")

    # T5's relative position buckets as torch computes them (float32 logs), for distances up to
    # 600 either way: the float rounding at exact bucket edges must match.
    distances = torch.arange(-600, 601)
    buckets = {f"{n}_{d}": T5Attention._relative_position_bucket(distances, True, n, d).tolist()
               for n, d in [(32, 128), (16, 20)]}
    with open(os.path.join(ROOT, "t5_buckets.json"), "w") as f:
        json.dump({"distances": [-600, 600], "buckets": buckets}, f)


if __name__ == "__main__":
    main()
