#!/usr/bin/env python3
"""Full-size FLUX.1-schnell files with random weights, for shape, memory and speed checks.

    python make_models.py OUT_DIR [--only NAME ...] [--sdcpp-vocab-dir DIR] [--seed S]

Writes into OUT_DIR (real sizes; the numbers mean nothing):
  flux1-schnell-Q8_0.gguf, flux1-schnell-Q4_K.gguf
      the transformer under the original BFL names (double_blocks.N.img_attn.qkv.weight, ...), laid out
      as city96's converter keeps them: 1-D and small tensors F32; img_in, txt_in, time_in, vector_in
      and final_layer F16; the rest in the quantized type. Blocks are written directly as bytes
      (random quants, f16 scales sized for a weight std of about 0.02), one tensor at a time.
  t5xxl-Q8_0.gguf
      the T5-XXL encoder under llama.cpp's names (general.architecture "t5encoder"): norms and the
      relative-position bias F32, everything else Q8_0.
  clip_l.safetensors      CLIP-L text model, transformers names with the text_model. prefix, f16
  ae.safetensors          the FLUX VAE under the original names (decoder.up.N.block.M...), f16
  tokenizers/             what `schnell generate --tokenizers DIR` reads beside single files:
                          tokenizer/ (CLIP BPE), tokenizer_2/ (T5 unigram) and the component configs
                          of the real FLUX.1-schnell pipeline

There is no real T5 vocabulary on these machines, so tokenizer_2 is the repository's small
T5-style unigram fixture padded to T5's real layout: 32000 pieces (the fixture's, then filler
pieces that never match ordinary text) and 100 <extra_id_N> tokens, 32100 ids in all below the
encoder's 32128 embedding rows, as in google/t5-v1_1-xxl.

--sdcpp-vocab-dir DIR writes the vocabulary headers stable-diffusion.cpp compiles in
(src/tokenizers/vocab/): t5.hpp from the padded T5 tokenizer (in the older tokenizer.json
pre_tokenizer form its parser reads) and empty stand-ins for the tokenizers FLUX does not use. Its
CLIP merges header ships with its source.
"""

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures" / "tokenizers"
TINY = REPO / "Weights" / "tiny-flux-schnell"

# FLUX.1-schnell
HIDDEN, HEADS, HEAD_DIM, MLP = 3072, 24, 128, 12288
IN_CHANNELS, CONTEXT, POOLED, TIME_CHANNELS = 64, 4096, 768, 256
DOUBLE_BLOCKS, SINGLE_BLOCKS = 19, 38

# T5-XXL encoder (google/t5-v1_1-xxl)
T5_VOCAB_ROWS, T5_D, T5_FF, T5_LAYERS, T5_HEADS, T5_HEAD_DIM, T5_BUCKETS = 32128, 4096, 10240, 24, 64, 64, 32
T5_PIECES, T5_EXTRA_IDS = 32000, 100

# CLIP-L text model (openai/clip-vit-large-patch14)
CLIP_CONFIG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                   num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                   layer_norm_eps=1e-5, projection_dim=768, bos_token_id=0, eos_token_id=2, pad_token_id=1)

# FLUX VAE
VAE_CONFIG = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
                  layers_per_block=2, norm_num_groups=32, scaling_factor=0.3611, shift_factor=0.1159)

WEIGHT_STD = 0.02
QUANTIZATION_THRESHOLD = 1024  # city96: tensors this small stay F32
HIGH_PRECISION = ("img_in.", "txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.")


# ----------------------------------------------------------------------------- quantized blocks

def q8_0_bytes(rng, n_values):
    """Q8_0: per 32 values an f16 scale d and 32 int8 quants; value = d * q."""
    assert n_values % 32 == 0
    blocks = n_values // 32
    out = np.empty((blocks, 34), dtype=np.uint8)
    # uniform int8 quants have std ~73.9; scales vary by +-50% around the mean that gives WEIGHT_STD.
    d = (WEIGHT_STD / 73.9) * rng.uniform(0.5, 1.5, size=blocks)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(blocks, 2)
    out[:, 2:] = np.frombuffer(rng.bytes(blocks * 32), dtype=np.uint8).reshape(blocks, 32)
    return out


def q4_k_bytes(rng, n_values):
    """Q4_K: per 256 values f16 d and dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
    128 bytes of 4-bit quants; value = d * sc * q - dmin * m. Each sub-block's min equals its scale and
    dmin = 7.5 d, so values are d * sc * (q - 7.5): zero mean, no inf or NaN."""
    assert n_values % 256 == 0
    blocks = n_values // 256
    out = np.empty((blocks, 144), dtype=np.uint8)
    sc = rng.integers(32, 64, size=(blocks, 8), dtype=np.uint8)  # 6-bit scales, rms ~48.5
    m = sc
    # q uniform 0..15 has std 4.61 about its mean 7.5
    d = (WEIGHT_STD / (48.5 * 4.61)) * rng.uniform(0.75, 1.25, size=blocks)
    out[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(blocks, 2)
    out[:, 2:4] = (7.5 * d.astype("<f2").astype(np.float64)).astype("<f2").view(np.uint8).reshape(blocks, 2)
    scales = out[:, 4:16]
    # ggml's get_scale_min_k4 packing
    scales[:, 0:4] = (sc[:, 0:4] & 63) | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = (m[:, 0:4] & 63) | ((m[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0xF) | ((m[:, 4:8] & 0xF) << 4)
    out[:, 16:] = np.frombuffer(rng.bytes(blocks * 128), dtype=np.uint8).reshape(blocks, 128)
    return out


# ----------------------------------------------------------------------------- tensor lists

def flux_tensors():
    """(name, numpy-order shape) of the FLUX.1-schnell transformer, original names, sorted as in the file."""
    t = []

    def linear(name, out_f, in_f):
        t.append((f"{name}.weight", (out_f, in_f)))
        t.append((f"{name}.bias", (out_f,)))

    linear("img_in", HIDDEN, IN_CHANNELS)
    linear("txt_in", HIDDEN, CONTEXT)
    linear("time_in.in_layer", HIDDEN, TIME_CHANNELS)
    linear("time_in.out_layer", HIDDEN, HIDDEN)
    linear("vector_in.in_layer", HIDDEN, POOLED)
    linear("vector_in.out_layer", HIDDEN, HIDDEN)
    for i in range(DOUBLE_BLOCKS):
        for s in ("img", "txt"):
            p = f"double_blocks.{i}.{s}"
            linear(f"{p}_mod.lin", 6 * HIDDEN, HIDDEN)
            linear(f"{p}_attn.qkv", 3 * HIDDEN, HIDDEN)
            t.append((f"{p}_attn.norm.query_norm.scale", (HEAD_DIM,)))
            t.append((f"{p}_attn.norm.key_norm.scale", (HEAD_DIM,)))
            linear(f"{p}_attn.proj", HIDDEN, HIDDEN)
            linear(f"{p}_mlp.0", MLP, HIDDEN)
            linear(f"{p}_mlp.2", HIDDEN, MLP)
    for i in range(SINGLE_BLOCKS):
        p = f"single_blocks.{i}"
        linear(f"{p}.linear1", 3 * HIDDEN + MLP, HIDDEN)
        linear(f"{p}.linear2", HIDDEN, HIDDEN + MLP)
        t.append((f"{p}.norm.query_norm.scale", (HEAD_DIM,)))
        t.append((f"{p}.norm.key_norm.scale", (HEAD_DIM,)))
        linear(f"{p}.modulation.lin", 3 * HIDDEN, HIDDEN)
    linear("final_layer.linear", IN_CHANNELS, HIDDEN)
    linear("final_layer.adaLN_modulation.1", 2 * HIDDEN, HIDDEN)
    return sorted(t)


def flux_type(name, shape, quant):
    import gguf
    n = int(np.prod(shape))
    if len(shape) == 1 or n <= QUANTIZATION_THRESHOLD:
        return gguf.GGMLQuantizationType.F32
    if any(name.startswith(p) for p in HIGH_PRECISION):
        return gguf.GGMLQuantizationType.F16
    return quant


def t5_tensors():
    t = [("token_embd.weight", (T5_VOCAB_ROWS, T5_D))]
    inner = T5_HEADS * T5_HEAD_DIM
    for i in range(T5_LAYERS):
        p = f"enc.blk.{i}"
        t.append((f"{p}.attn_norm.weight", (T5_D,)))
        t.append((f"{p}.attn_q.weight", (inner, T5_D)))
        t.append((f"{p}.attn_k.weight", (inner, T5_D)))
        t.append((f"{p}.attn_v.weight", (inner, T5_D)))
        t.append((f"{p}.attn_o.weight", (T5_D, inner)))
        if i == 0:
            t.append((f"{p}.attn_rel_b.weight", (T5_BUCKETS, T5_HEADS)))
        t.append((f"{p}.ffn_norm.weight", (T5_D,)))
        t.append((f"{p}.ffn_gate.weight", (T5_FF, T5_D)))
        t.append((f"{p}.ffn_up.weight", (T5_FF, T5_D)))
        t.append((f"{p}.ffn_down.weight", (T5_D, T5_FF)))
    t.append(("enc.output_norm.weight", (T5_D,)))
    return t


def t5_type(name, shape):
    import gguf
    if len(shape) == 1 or "attn_rel_b" in name:
        return gguf.GGMLQuantizationType.F32
    return gguf.GGMLQuantizationType.Q8_0


# ----------------------------------------------------------------------------- writers

def float_values(rng, name, shape, dtype):
    """Random float tensor: norm scales 1, biases and other vectors small, matrices std WEIGHT_STD."""
    if name.endswith(".scale") or "norm" in name:
        return np.ones(shape, dtype=dtype)
    if name.endswith("attn_rel_b.weight"):
        return rng.normal(0.0, 1.0, size=shape).astype(dtype)
    if len(shape) == 1:
        return (rng.normal(0.0, WEIGHT_STD, size=shape)).astype(dtype)
    return (rng.standard_normal(size=shape, dtype=np.float32) * WEIGHT_STD).astype(dtype)


def tensor_bytes(rng, name, shape, qtype):
    import gguf
    n = int(np.prod(shape))
    if qtype == gguf.GGMLQuantizationType.F32:
        return float_values(rng, name, shape, np.float32).reshape(-1).view(np.uint8)
    if qtype == gguf.GGMLQuantizationType.F16:
        return float_values(rng, name, shape, np.float16).reshape(-1).view(np.uint8)
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        return q8_0_bytes(rng, n).reshape(-1)
    if qtype == gguf.GGMLQuantizationType.Q4_K:
        return q4_k_bytes(rng, n).reshape(-1)
    raise ValueError(qtype)


def write_gguf(path, arch, tensors, type_of, metadata, seed):
    """Tensor infos first, then each tensor's bytes, generated and written one at a time."""
    import gguf
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), arch)
    for key, (kind, value) in metadata.items():
        getattr(writer, f"add_{kind}")(key, value)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    plan = []
    for name, shape in tensors:
        qtype = type_of(name, shape)
        block, size = gguf.GGML_QUANT_SIZES[qtype]
        assert shape[-1] % block == 0, (name, shape, qtype)
        nbytes = int(np.prod(shape)) // block * size
        # numpy-order shape; the writer stores it innermost first (ne0 = row width)
        writer.add_tensor_info(name, shape, np.float32, nbytes, raw_dtype=qtype)
        plan.append((name, shape, qtype, nbytes))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    start = time.time()
    for index, (name, shape, qtype, nbytes) in enumerate(plan):
        rng = np.random.default_rng([seed, index])
        data = tensor_bytes(rng, name, shape, qtype)
        assert data.nbytes == nbytes, (name, data.nbytes, nbytes)
        writer.write_tensor_data(data)
    writer.close()
    os.replace(tmp, path)
    print(f"  {path.name}: {len(plan)} tensors, {path.stat().st_size / 1e9:.2f} GB, {time.time() - start:.0f} s",
          flush=True)
    return plan


def check_gguf(path, plan, arch):
    """Read the file back: every tensor with its shape and type, and sample blocks dequantized."""
    import gguf
    reader = gguf.GGUFReader(str(path))
    field = reader.fields["general.architecture"]
    assert bytes(field.parts[field.data[0]]).decode() == arch
    by_name = {t.name: t for t in reader.tensors}
    assert len(by_name) == len(plan), (len(by_name), len(plan))
    for name, shape, qtype, nbytes in plan:
        t = by_name[name]
        assert t.tensor_type == qtype, (name, t.tensor_type, qtype)
        assert tuple(int(x) for x in t.shape) == tuple(reversed(shape)), (name, t.shape, shape)  # ne0 first
        assert int(t.n_bytes) == nbytes, (name, t.n_bytes, nbytes)
    # dequantize the first rows of a few tensors of each type
    seen = {}
    for name, shape, qtype, nbytes in plan:
        if seen.get(qtype, 0) >= 2:
            continue
        seen[qtype] = seen.get(qtype, 0) + 1
        t = by_name[name]
        raw = np.asarray(t.data)
        if len(shape) > 1:
            raw = raw[:4]
        values = gguf.quants.dequantize(raw, qtype).astype(np.float64)
        assert np.isfinite(values).all(), name
        print(f"    {name} {qtype.name} {list(shape)}: sample mean {values.mean():+.4f} std {values.std():.4f}")


def write_flux(out, quant, suffix, file_type, seed):
    import gguf
    path = out / f"flux1-schnell-{suffix}.gguf"
    plan = write_gguf(path, "flux", flux_tensors(), lambda n, s: flux_type(n, s, quant),
                      {"general.name": ("string", "FLUX.1-schnell (random weights)"),
                       "general.file_type": ("uint32", file_type)}, seed)
    check_gguf(path, plan, "flux")


def write_t5(out, seed):
    path = out / "t5xxl-Q8_0.gguf"
    metadata = {
        "general.name": ("string", "t5-v1_1-xxl encoder (random weights)"),
        "general.file_type": ("uint32", 7),
        "t5encoder.context_length": ("uint32", 512),
        "t5encoder.embedding_length": ("uint32", T5_D),
        "t5encoder.feed_forward_length": ("uint32", T5_FF),
        "t5encoder.block_count": ("uint32", T5_LAYERS),
        "t5encoder.attention.head_count": ("uint32", T5_HEADS),
        "t5encoder.attention.key_length": ("uint32", T5_HEAD_DIM),
        "t5encoder.attention.value_length": ("uint32", T5_HEAD_DIM),
        "t5encoder.attention.layer_norm_epsilon": ("float32", 1e-6),
        "t5encoder.attention.relative_buckets_count": ("uint32", T5_BUCKETS),
        "t5encoder.decoder_start_token_id": ("uint32", 0),
    }
    plan = write_gguf(path, "t5encoder", t5_tensors(), t5_type, metadata, seed + 1)
    check_gguf(path, plan, "t5encoder")


def write_safetensors(path, tensors, seed):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(seed)
    arrays = {name: make(rng) for name, make in tensors}
    tmp = path.with_name(path.name + ".partial")
    save_file(arrays, str(tmp))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    total = sum(a.size for a in arrays.values())
    print(f"  {path.name}: {len(arrays)} tensors, {total / 1e6:.1f} M values, {path.stat().st_size / 1e9:.2f} GB",
          flush=True)


def write_clip(out, seed):
    """CLIPTextModel's own names and shapes (instantiated without storage), text_model. prefix, f16."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel
    config = CLIPTextConfig(**CLIP_CONFIG)
    with torch.device("meta"):
        model = CLIPTextModel(config)
    tensors = []
    for name, value in model.state_dict().items():
        if name.endswith("position_ids"):
            continue
        full = name if name.startswith("text_model.") else "text_model." + name
        shape = tuple(value.shape)
        if "layer_norm" in name:
            make = (lambda s, w: (lambda rng: np.full(s, 1.0 if w else 0.0, np.float16)))(shape, name.endswith(".weight"))
        elif "embedding" in name:
            make = (lambda s: (lambda rng: (rng.standard_normal(s, dtype=np.float32) * 0.02).astype(np.float16)))(shape)
        elif len(shape) == 1:
            make = (lambda s: (lambda rng: np.zeros(s, np.float16)))(shape)
        else:
            std = shape[1] ** -0.5
            make = (lambda s, sd: (lambda rng: (rng.standard_normal(s, dtype=np.float32) * sd).astype(np.float16)))(shape, std)
        tensors.append((full, make))
    write_safetensors(out / "clip_l.safetensors", sorted(tensors, key=lambda x: x[0]), seed + 2)


def vae_tensors():
    """The FLUX autoencoder under the original ae.safetensors names (as VAEWeightNames' original
    layout): decoder up blocks numbered from the output end, attention projections as 1x1 convs."""
    t = []
    c = VAE_CONFIG
    widths, layers, latent = c["block_out_channels"], c["layers_per_block"], c["latent_channels"]

    def norm(name, ch):
        t.append((f"{name}.weight", (ch,), "one"))
        t.append((f"{name}.bias", (ch,), "zero"))

    def conv(name, cin, cout, k):
        t.append((f"{name}.weight", (cout, cin, k, k), "conv"))
        t.append((f"{name}.bias", (cout,), "zero"))

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin)
        conv(f"{name}.conv1", cin, cout, 3)
        norm(f"{name}.norm2", cout)
        conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cin, cout, 1)

    def mid(name, ch):
        resnet(f"{name}.block_1", ch, ch)
        norm(f"{name}.attn_1.norm", ch)
        for p in ("q", "k", "v", "proj_out"):
            conv(f"{name}.attn_1.{p}", ch, ch, 1)
        resnet(f"{name}.block_2", ch, ch)

    ch = widths[0]
    conv("encoder.conv_in", c["in_channels"], ch, 3)
    for i, w in enumerate(widths):
        for j in range(layers):
            resnet(f"encoder.down.{i}.block.{j}", ch, w)
            ch = w
        if i < len(widths) - 1:
            conv(f"encoder.down.{i}.downsample.conv", w, w, 3)
    mid("encoder.mid", ch)
    norm("encoder.norm_out", ch)
    conv("encoder.conv_out", ch, 2 * latent, 3)

    ch = widths[-1]
    conv("decoder.conv_in", latent, ch, 3)
    mid("decoder.mid", ch)
    for index, w in enumerate(reversed(widths)):
        o = len(widths) - 1 - index
        for j in range(layers + 1):
            resnet(f"decoder.up.{o}.block.{j}", ch, w)
            ch = w
        if index < len(widths) - 1:
            conv(f"decoder.up.{o}.upsample.conv", w, w, 3)
    norm("decoder.norm_out", ch)
    conv("decoder.conv_out", ch, c["out_channels"], 3)
    return t


def write_vae(out, seed):
    tensors = []
    for name, shape, kind in vae_tensors():
        if kind == "one":
            make = (lambda s: (lambda rng: np.ones(s, np.float16)))(shape)
        elif kind == "zero":
            make = (lambda s: (lambda rng: np.zeros(s, np.float16)))(shape)
        else:
            std = (shape[1] * shape[2] * shape[3]) ** -0.5  # variance-preserving for a conv
            make = (lambda s, sd: (lambda rng: (rng.standard_normal(s, dtype=np.float32) * sd).astype(np.float16)))(shape, std)
        tensors.append((name, make))
    write_safetensors(out / "ae.safetensors", sorted(tensors, key=lambda x: x[0]), seed + 3)


# ----------------------------------------------------------------------------- tokenizers and configs

def padded_t5_tokenizer():
    """The fixture's unigram tokenizer.json grown to T5's id layout: its pieces, filler pieces up to
    32000, then <extra_id_99> ... <extra_id_0> at 32000..32099."""
    source = json.loads((FIXTURES / "t5-tokenizer-json" / "tokenizer.json").read_text())
    vocab = source["model"]["vocab"]
    pieces = [v for v in vocab if not v[0].startswith("<extra_id_")]
    extras = [v for v in vocab if v[0].startswith("<extra_id_")]
    assert len(extras) == T5_EXTRA_IDS and len(pieces) <= T5_PIECES
    lowest = min(score for _, score in pieces[3:])
    # Filler pieces: private-use characters (U+F0000 plane), scored below every real piece.
    fillers = [[f"<unused_{chr(0xF0000 + i)}>", lowest - 10.0] for i in range(T5_PIECES - len(pieces))]
    new_vocab = pieces + fillers + extras
    assert len(new_vocab) == T5_PIECES + T5_EXTRA_IDS
    out = dict(source)
    out["model"] = dict(source["model"], vocab=new_vocab)
    ids = {piece: i for i, (piece, _) in enumerate(new_vocab)}
    out["added_tokens"] = [dict(t, id=ids[t["content"]]) for t in source["added_tokens"]]
    return out


def sdcpp_t5_json(tokenizer):
    """The same vocabulary with the pre_tokenizer spelled as older tokenizer.json files did (a bare
    Metaspace with add_prefix_space), which is what stable-diffusion.cpp's T5 parser reads."""
    old = dict(tokenizer)
    old["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    old["decoder"] = {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True}
    return old


def c_array(name, data):
    body = ",".join(f"0x{b:02x}" for b in data)
    lines = [body[i:i + 120] for i in range(0, len(body), 120)]
    return f"static const unsigned char {name}[] = {{\n" + "\n".join(lines) + "\n};\n"


def write_sdcpp_vocab(directory, tokenizer):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    t5 = json.dumps(sdcpp_t5_json(tokenizer), ensure_ascii=False).encode("utf-8")
    (directory / "t5.hpp").write_text(c_array("t5_tokenizer_json_str", t5))
    stubs = {  # tokenizers of models other than FLUX.1: minimal stand-ins so the source compiles
        "umt5.hpp": [("umt5_tokenizer_json_str", b'{"model":{"vocab":[]}}')],
        "qwen_merges.hpp": [("qwen2_merges_utf8_c_str", b"#version: 0.2\n")],
        "mistral_merges.hpp": [("mistral_merges_utf8_c_str", b"#version: 0.2\n")],
        "mistral_vocab.hpp": [("mistral_vocab_json_utf8_c_str", b"{}")],
        "gemma_merges.hpp": [("gemma_merges_utf8_c_str", b"#version: 0.2\n")],
        "gemma_vocab.hpp": [("gemma_vocab_json_utf8_c_str", b"{}")],
        "gemma2_merges.hpp": [("gemma2_merges_utf8_c_str", b"#version: 0.2\n")],
        "gemma2_vocab.hpp": [("gemma2_vocab_json_utf8_c_str", b"{}")],
        "gpt_oss_merges.hpp": [("gpt_oss_merges_utf8_c_str", b"#version: 0.2\n")],
        "gpt_oss_vocab.hpp": [("gpt_oss_vocab_json_utf8_c_str", b"{}")],
    }
    for file, arrays in stubs.items():
        (directory / file).write_text("// stand-in: not used by FLUX.1\n" + "".join(c_array(n, d) for n, d in arrays))
    print(f"  sd.cpp vocabulary headers in {directory} (t5.hpp: {len(tokenizer['model']['vocab'])} pieces)")


def write_tokenizers(out):
    folder = out / "tokenizers"
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(TINY / "tokenizer", folder / "tokenizer")  # the real CLIP BPE vocabulary (49408)
    (folder / "tokenizer_2").mkdir(parents=True)
    tokenizer = padded_t5_tokenizer()
    (folder / "tokenizer_2" / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    shutil.copy(FIXTURES / "t5-tokenizer-json" / "tokenizer_config.json", folder / "tokenizer_2")
    shutil.copytree(TINY / "scheduler", folder / "scheduler")
    shutil.copy(TINY / "model_index.json", folder)
    configs = {
        "transformer/config.json": {
            "_class_name": "FluxTransformer2DModel", "attention_head_dim": HEAD_DIM, "axes_dims_rope": [16, 56, 56],
            "guidance_embeds": False, "in_channels": IN_CHANNELS, "joint_attention_dim": CONTEXT,
            "num_attention_heads": HEADS, "num_layers": DOUBLE_BLOCKS, "num_single_layers": SINGLE_BLOCKS,
            "out_channels": None, "patch_size": 1, "pooled_projection_dim": POOLED},
        "vae/config.json": {
            "_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": VAE_CONFIG["block_out_channels"],
            "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True,
            "in_channels": 3, "latent_channels": 16, "latents_mean": None, "latents_std": None,
            "layers_per_block": 2, "mid_block_add_attention": True, "norm_num_groups": 32, "out_channels": 3,
            "sample_size": 1024, "scaling_factor": VAE_CONFIG["scaling_factor"],
            "shift_factor": VAE_CONFIG["shift_factor"], "up_block_types": ["UpDecoderBlock2D"] * 4,
            "use_post_quant_conv": False, "use_quant_conv": False},
        "text_encoder/config.json": dict(
            {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", "attention_dropout": 0.0,
             "initializer_factor": 1.0, "initializer_range": 0.02, "torch_dtype": "bfloat16"}, **CLIP_CONFIG),
        "text_encoder_2/config.json": {
            "architectures": ["T5EncoderModel"], "model_type": "t5", "d_ff": T5_FF, "d_kv": T5_HEAD_DIM,
            "d_model": T5_D, "decoder_start_token_id": 0, "dense_act_fn": "gelu_new", "dropout_rate": 0.1,
            "eos_token_id": 1, "feed_forward_proj": "gated-gelu", "initializer_factor": 1.0,
            "is_encoder_decoder": True, "is_gated_act": True, "layer_norm_epsilon": 1e-6,
            "num_decoder_layers": 24, "num_heads": T5_HEADS, "num_layers": T5_LAYERS, "output_past": True,
            "pad_token_id": 0, "relative_attention_max_distance": 128, "relative_attention_num_buckets": T5_BUCKETS,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16", "vocab_size": T5_VOCAB_ROWS},
    }
    for relative, config in configs.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"  tokenizers/ and configs in {folder}")
    return tokenizer


PARTS = ["tokenizers", "clip", "vae", "t5", "flux-q8_0", "flux-q4_k"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--only", nargs="+", choices=PARTS, help="write only these parts")
    parser.add_argument("--sdcpp-vocab-dir", type=Path, help="also write sd.cpp's vocabulary headers here")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    parts = args.only or PARTS
    args.out.mkdir(parents=True, exist_ok=True)
    import gguf
    tokenizer = None
    if "tokenizers" in parts:
        tokenizer = write_tokenizers(args.out)
    if args.sdcpp_vocab_dir:
        write_sdcpp_vocab(args.sdcpp_vocab_dir, tokenizer or padded_t5_tokenizer())
    if "clip" in parts:
        write_clip(args.out, args.seed)
    if "vae" in parts:
        write_vae(args.out, args.seed)
    if "t5" in parts:
        write_t5(args.out, args.seed)
    if "flux-q8_0" in parts:
        write_flux(args.out, gguf.GGMLQuantizationType.Q8_0, "Q8_0", 7, args.seed)
    if "flux-q4_k" in parts:
        write_flux(args.out, gguf.GGMLQuantizationType.Q4_K, "Q4_K", 14, args.seed)


if __name__ == "__main__":
    sys.exit(main())
