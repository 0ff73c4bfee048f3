#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU: build libschnell_cuda.so, check every CUDA op
# against its float32 CPU reference, then time the two ops that dominate a FLUX step:
#   - bf16 GEMM (+bias) at M=4096, K=3072, N=3072 and N=12288 (the transformer's projections
#     and MLP at 1024x1024: 4096 image tokens, hidden 3072), reported in TFLOP/s;
#   - attention at L=4608 tokens (4096 image + 512 text), 24 heads x 128.
# The benchmark runs only when every op check passes, so a wrong kernel is never timed.
#
# Future work: an end-to-end comparison against diffusers (seconds per image, per stage), once
# the FLUX model runs on the CUDA backend.
#
# Usage: bash Benchmarks/cuda/run_gpu_checks.sh    (from anywhere; exits non-zero on failure)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
else
    echo "note: nvidia-smi not found; the harness will say whether a device is usable"
fi

bash "$root/Kernels/cuda/build.sh"

harness="$root/Kernels/cuda/build/test_cuda_ops"
output="$("$harness" --bench)" || { echo "$output"; exit 1; }
echo "$output"
if grep -q '^SKIP' <<<"$output"; then
    echo "error: no usable CUDA device, so nothing was checked or timed" >&2
    exit 1
fi
