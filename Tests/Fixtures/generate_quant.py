"""Writes the quantization fixtures under Tests/Fixtures/quant/ (run with the pinned gguf and torch).

All files are raw little-endian arrays, named by type:
  <type>.blocks        random blocks of a GGUF block type (edge cases first, see `edge_blocks`)
  <type>.dequant.f32   gguf.quants.dequantize of them (ggml's dequantize_row_*), float32
  simple.input.f32     float32 inputs for the types gguf quantizes (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)
  <type>.quant         gguf.quants.quantize of them (ggml's quantize_row_*_ref bytes)
  fp8.input.f32        chosen floats: every e4m3fn and e5m2 value, the midpoints between neighbours
                       (ties), values past the largest finite, infinities, NaNs, random floats
  e4m3fn.quant, e5m2.quant   torch's .to(torch.float8_e4m3fn / float8_e5m2) of them (bytes)
  e4m3fn.all.f32, e5m2.all.f32   torch's float32 of every byte 0x00 ... 0xff
"""
import importlib.metadata
import pathlib

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T

OUT = pathlib.Path(__file__).parent / "quant"
SIMPLE = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q8_0": T.Q8_0}
K_TYPES = {"q2_k": T.Q2_K, "q3_k": T.Q3_K, "q4_k": T.Q4_K, "q5_k": T.Q5_K, "q6_k": T.Q6_K}
SIMPLE_BLOCKS = 48
K_BLOCKS = 12
# Byte offsets of each type's f16 fields (d, and m / dmin where it has one) in one block.
HALF_FIELDS = {"q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0],
               "q2_k": [80, 82], "q3_k": [108], "q4_k": [0, 2], "q5_k": [0, 2], "q6_k": [208]}
# f16 scales worth a block each: zero, the smallest and largest subnormal, the smallest normal,
# 65504 (the largest finite), negative ones, and ordinary values.
EDGE_HALVES = [0x0000, 0x0001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x8001, 0xBC00, 0x3C00, 0x2E66]


def random_halves(rng, count):
    """Finite f16 bit patterns of both signs over the whole exponent range."""
    exponent = rng.integers(0, 31, count)  # 31 would be infinity/NaN
    return (rng.integers(0, 2, count) << 15 | exponent << 10 | rng.integers(0, 1024, count)).astype(np.uint16)


def edge_blocks(rng, name, qtype):
    """Blocks as bytes: all zero; all ones bits (every nibble and level at its max, f16 fields
    made finite); then one block per edge scale; then random blocks with random finite f16 fields."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    count = SIMPLE_BLOCKS if name in SIMPLE else K_BLOCKS
    blocks = rng.integers(0, 256, (count, type_size), dtype=np.uint8)
    blocks[0] = 0
    blocks[1] = 0xFF
    fields = HALF_FIELDS[name]
    for row in range(1, count):
        for offset in fields:
            if row == 1:
                half = 0x3C00
            elif row - 2 < len(EDGE_HALVES):
                half = EDGE_HALVES[(row - 2 + offset) % len(EDGE_HALVES)]
            else:
                half = int(random_halves(rng, 1)[0])
            blocks[row, offset:offset + 2] = np.frombuffer(np.uint16(half).tobytes(), dtype=np.uint8)
    return blocks


def quantize_inputs(rng):
    """float32 inputs for the simple types, 32 a block: a zero block, a constant block, one whose
    largest magnitude is negative, exact ties at scale 1, tiny values (subnormal f16 scales), large
    ones (the f16 scale overflows to infinity), then Gaussian blocks of assorted widths."""
    blocks = [np.zeros(32), np.full(32, 0.75), np.linspace(-3, 2, 32),
              np.arange(-16, 16) + 0.5, rng.standard_normal(32) * 1e-6,
              rng.standard_normal(32) * 3e5]
    while len(blocks) < SIMPLE_BLOCKS:
        blocks.append(rng.standard_normal(32) * 10.0 ** rng.uniform(-3, 3))
    return np.concatenate(blocks).astype(np.float32)


def fp8_inputs(rng):
    values = []
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        every = torch.arange(256, dtype=torch.uint8).view(dtype).float().numpy()
        finite = np.unique(every[np.isfinite(every)])
        values += [finite, (finite[1:] + finite[:-1]) / 2]
    values.append(np.array([464, 479.9, 480, 500, 57344, 61439, 61440, 65536, 1e6, 3e38,
                            np.inf, -np.inf, np.nan, -np.nan, 0.0, -0.0, 2.0 ** -10, 2.0 ** -17,
                            2.0 ** -18, 1.5 * 2.0 ** -17, 2.0 ** -149]))
    values.append(rng.standard_normal(512) * 10.0 ** rng.uniform(-6, 5, 512))
    return np.concatenate(values).astype(np.float32)


def main():
    OUT.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261129)
    for name, qtype in {**SIMPLE, **K_TYPES}.items():
        blocks = edge_blocks(rng, name, qtype)
        dequantized = gguf.quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32)
        assert np.all(np.isfinite(dequantized)), name
        (OUT / f"{name}.blocks").write_bytes(blocks.tobytes())
        (OUT / f"{name}.dequant.f32").write_bytes(dequantized.tobytes())
    inputs = quantize_inputs(rng)
    (OUT / "simple.input.f32").write_bytes(inputs.tobytes())
    for name, qtype in SIMPLE.items():
        with np.errstate(over="ignore"):  # the large block's f16 scale overflows on purpose
            quantized = gguf.quants.quantize(inputs.reshape(1, -1), qtype)
        (OUT / f"{name}.quant").write_bytes(quantized.tobytes())
    values = fp8_inputs(rng)
    (OUT / "fp8.input.f32").write_bytes(values.tobytes())
    for name, dtype in (("e4m3fn", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
        cast = torch.from_numpy(values).to(dtype).view(torch.uint8).numpy()
        (OUT / f"{name}.quant").write_bytes(cast.tobytes())
        every = torch.arange(256, dtype=torch.uint8).view(dtype).float().numpy()
        (OUT / f"{name}.all.f32").write_bytes(every.astype(np.float32).tobytes())
    total = sum(path.stat().st_size for path in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, "
          f"gguf {importlib.metadata.version('gguf')}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
