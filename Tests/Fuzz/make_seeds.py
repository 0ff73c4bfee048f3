#!/usr/bin/env python3
"""Writes the small seed corpora of Tests/Fuzz/corpus/TARGET (standard library only).

Each seed is a small valid input of the format its harness parses, so the fuzzer starts inside
the format instead of searching for it. The JPEG and WebP seeds are 16x16 images from the
bundled model: `schnell generate seed --size 16x16 --steps 1 --seed 1 -o noise16.jpg` (and .webp),
run here when .build/debug/schnell exists.
"""
import base64
import json
import os
import struct
import subprocess
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
SEPARATOR = b"\n=====\n"  # between a tokenizer seed's files (see tokenizers.swift)


def write(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as file:
        file.write(data if isinstance(data, bytes) else data.encode())


def png(width, height, color_type, depth, rows, palette=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
    if palette:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(b"".join(b"\0" + row for row in rows))) + chunk(b"IEND", b"")


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def charsmap():
    """A darts-clone trie with one rule, "A" -> "a": root unit 0 (offset 0); unit 65 has label
    0x41, the leaf bit and offset 1, so the value sits at 65 ^ 1 = 64 (top bit set, index 0)."""
    units = [0] * 66
    units[65] = (1 << 10) | (1 << 8) | 0x41
    units[64] = 0x80000000
    trie = struct.pack("<%dI" % len(units), *units)
    return struct.pack("<I", len(trie)) + trie + b"a\0"


def varint(value):
    out = b""
    while value >= 0x80:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def spiece_model(pieces):
    out = b""
    for text, score, kind in pieces:
        piece = field(1, text.encode()) + varint(2 << 3 | 5) + struct.pack("<f", score) + varint(3 << 3) + varint(kind)
        out += field(1, piece)
    out += field(2, varint(3 << 3) + varint(1) + varint(40 << 3) + varint(2))
    return out + field(3, field(2, charsmap()))


def main():
    write("json", "request.json", json.dumps({
        "prompt": "a cat", "n": 2, "size": "512x512", "seed": 18446744073709551615, "guidance_scale": 3.5,
        "x": [None, True, False, -1.5e300, "\u00e9\U0001F600"]}))
    write("json", "nested.json", '[1,{"a":{"b":[]}},"x"]')

    write("multipart", "edit.txt",
          b'multipart/form-data; boundary=XyZ\n--XyZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na cat\r\n'
          b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
          b'\x89PNG\r\n\x1a\n\r\n--XyZ\r\nContent-Disposition: form-data; name="n"\r\n\r\n2\r\n--XyZ--\r\n')
    write("multipart", "quoted.txt",
          b'multipart/form-data; boundary="quoted b"\n--quoted b\r\ncontent-disposition: form-data; name=mask; '
          b'filename=m.webp\r\n\r\nRIFF\r\n--quoted b--')

    write("image", "rgb.png", png(3, 2, 2, 8, [bytes(range(9)), bytes(range(9, 18))]))
    write("image", "palette.png", png(2, 2, 3, 8, [b"\0\1", b"\1\0"], palette=b"\xff\0\0\0\xff\0"))
    write("image", "gray16.png", png(2, 1, 0, 16, [b"\x12\x34\xff\xff"]))
    schnell = os.path.join(ROOT, "..", "..", "..", ".build", "debug", "schnell")
    if os.path.exists(schnell):
        for extension in ("jpg", "webp"):
            subprocess.run([schnell, "generate", "seed", "--size", "16x16", "--steps", "1", "--seed", "1", "-q",
                            "-o", os.path.join(ROOT, "image", "noise16." + extension)], check=True,
                           stdout=subprocess.DEVNULL)

    write("safetensors", "dtypes.safetensors", safetensors({
        "a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "b": ("BF16", [2], b"\x80\x3f\x00\xc0"),
        "c": ("F16", [1], b"\x00\x3c"), "d": ("F8_E4M3", [2], b"\x38\x7e"), "e": ("F32", [0, 3], b"")},
        metadata={"format": "pt"}))
    write("safetensors", "model.safetensors", safetensors({
        "img_in.weight": ("F32", [2, 4], bytes(32)), "double_blocks.0.img_attn.norm.query_norm.scale": ("BF16", [2], bytes(4))}))

    specials = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    letters = {c: i + 2 for i, c in enumerate("acto")}
    words = {c + "</w>": i + 6 for i, c in enumerate("acto")}
    merged = {"ca": 10, "t</w>": 7, "cat</w>": 11, "ph": 12}
    vocab = {**specials, **letters, **words, **merged}
    merges = ["c a", "ca t</w>"]
    config = json.dumps({"pad_token": "<|endoftext|>", "model_max_length": 77,
                         "added_tokens_decoder": {"1": {"content": "<|endoftext|>"}}})
    special_map = json.dumps({"bos_token": {"content": "<|startoftext|>"}, "eos_token": "<|endoftext|>",
                              "additional_special_tokens": ["<x>"]})
    write("tokenizers", "clip-vocab-merges", b"\0" + SEPARATOR.join(
        [json.dumps(vocab).encode(), ("#version: 0.2\n" + "\n".join(merges) + "\n").encode(), config.encode(),
         special_map.encode()]))
    clip_json = {"model": {"type": "BPE", "vocab": vocab, "merges": [merges[0], merges[1].split(" ")]},
                 "added_tokens": [{"id": 0, "content": "<|startoftext|>"}, {"id": 1, "content": "<|endoftext|>"}]}
    write("tokenizers", "clip-tokenizer-json", b"\1" + SEPARATOR.join([json.dumps(clip_json).encode(), config.encode()]))

    pieces = [("<pad>", 0.0, 3), ("</s>", 0.0, 3), ("<unk>", 0.0, 2), ("\u2581", -2.0, 1), ("a", -3.0, 1),
              ("\u2581a", -1.5, 1), ("cat", -2.5, 1), ("\u2581cat", -1.0, 1), ("<x>", 0.0, 4)]
    t5_json = {"model": {"type": "Unigram", "unk_id": 2, "vocab": [[text, score] for text, score, _ in pieces]},
               "normalizer": {"type": "Sequence", "normalizers": [
                   {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap()).decode()}]},
               "added_tokens": [{"id": 0, "content": "<pad>"}, {"id": 1, "content": "</s>"}]}
    t5_config = json.dumps({"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>", "extra_ids": 3,
                            "model_max_length": 512})
    write("tokenizers", "t5-tokenizer-json", b"\2" + SEPARATOR.join([json.dumps(t5_json).encode(), t5_config.encode()]))
    write("tokenizers", "t5-spiece", b"\3" + SEPARATOR.join([spiece_model(pieces), t5_config.encode()]))
    inspect_seeds()
    gguf_seeds()


def gguf(tensors, metadata=(), version=3, alignment=32):
    """A GGUF file: metadata (key, type, packed value), then tensor infos (name, ne innermost
    first, ggml type, raw bytes), the data section at the alignment, each tensor aligned."""
    def string(text):
        return struct.pack("<Q", len(text.encode())) + text.encode()
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(metadata))
    for key, kind, value in metadata:
        out += string(key) + struct.pack("<I", kind) + value
    data = b""
    for name, ne, kind, raw in tensors:
        data += bytes(-len(data) % alignment)
        out += string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", kind, len(data))
        data += raw
    return out + bytes(-len(out) % alignment) + data


def gguf_seeds():
    """Tiny valid GGUF files (gguf.swift's input): each float type, Q8_0 and Q4_0 blocks, a
    custom alignment, version 2, and metadata of every kind including nested arrays."""
    def string(text):
        return struct.pack("<Q", len(text.encode())) + text.encode()
    q8_block = struct.pack("<e", 0.5) + bytes(range(32))
    q4_block = struct.pack("<e", 0.25) + bytes(range(16))
    write("gguf", "floats.gguf", gguf([
        ("a", [2, 2], 0, struct.pack("<4f", 1, 2, 3, 4)), ("b", [2], 1, struct.pack("<2e", 1, -2)),
        ("c", [2, 1, 1], 30, b"\x80\x3f\x00\xc0")],
        metadata=[("general.architecture", 8, string("flux")), ("general.quantization_version", 4, struct.pack("<I", 2))]))
    write("gguf", "blocks.gguf", gguf([
        ("enc.blk.0.attn_q.weight", [32, 2], 8, q8_block * 2), ("token_embd.weight", [32, 1], 2, q4_block)],
        metadata=[("general.architecture", 8, string("t5encoder")), ("general.alignment", 4, struct.pack("<I", 64))],
        alignment=64))
    arrays = struct.pack("<IQ", 8, 2) + string("a") + string("bc")
    nested = struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 5, 2) + struct.pack("<2i", -1, 7)
    write("gguf", "metadata-v2.gguf", gguf([("w", [4], 0, struct.pack("<4f", 0, 1, 2, 3))], version=2, metadata=[
        ("tokens", 9, arrays), ("nested", 9, nested), ("u8", 0, b"\x07"), ("i16", 3, struct.pack("<h", -2)),
        ("f32", 6, struct.pack("<f", 1.5)), ("flag", 7, b"\x01"), ("u64", 10, struct.pack("<Q", 1 << 40)),
        ("f64", 12, struct.pack("<d", 0.25))]))


def inspect_seeds():
    """The headers of the committed tiny checkpoints, each after its data size (inspect.swift's input)."""
    fixtures = os.path.join(ROOT, "..", "..", "Fixtures")
    for source, name in [("transformer/tiny-dev/tiny-dev.safetensors", "transformer-original"),
                         ("pipeline/tiny-flux-schnell-files/ae.safetensors", "vae-original"),
                         ("vae/tiny/vae/diffusion_pytorch_model.safetensors", "vae-diffusers"),
                         ("pipeline/tiny-flux-schnell-files/clip_l.safetensors", "clip"),
                         ("pipeline/tiny-flux-schnell-files/t5xxl.safetensors", "t5")]:
        with open(os.path.join(fixtures, source), "rb") as file:
            data = file.read()
        header_bytes = struct.unpack("<Q", data[:8])[0]
        write("inspect", name, struct.pack("<I", len(data) - 8 - header_bytes) + data[8:8 + header_bytes])


if __name__ == "__main__":
    main()
