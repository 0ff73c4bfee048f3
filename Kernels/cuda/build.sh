#!/usr/bin/env bash
# Builds libschnell_cuda.so and the op test harness into Kernels/cuda/build/.
#
# nvcc: a system CUDA toolkit when there is one (nvcc on PATH, or /usr/local/cuda), otherwise
# the CUDA 13 wheels from PyPI in a venv this script creates (no GPU or driver needed to build).
# Targets: SASS for sm_80, sm_86, sm_89 and sm_90a, plus compute_90 PTX. SASS is what runs on
# the GPU machines: their driver (CUDA 13.0) cannot JIT PTX from a newer nvcc.
#
# Environment: SCHNELL_CUDA_VENV (default Kernels/cuda/build/venv), SCHNELL_CUDA_JOBS
# (parallel nvcc processes, default 2), PYTHON (default python3).
set -euo pipefail

source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
build_dir="$source_dir/build"
venv="${SCHNELL_CUDA_VENV:-$build_dir/venv}"
jobs="${SCHNELL_CUDA_JOBS:-2}"
mkdir -p "$build_dir/objects"

find_toolkit() {
    if command -v nvcc >/dev/null 2>&1; then
        cuda_home="$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)"
    elif [ -x /usr/local/cuda/bin/nvcc ]; then
        cuda_home=/usr/local/cuda
    else
        return 1
    fi
    nvcc="$cuda_home/bin/nvcc"
}

install_wheels() {
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv"
        "${PYTHON:-python3}" -m venv "$venv"
    fi
    local site
    site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    cuda_home="$site/nvidia/cu13"
    if [ ! -x "$cuda_home/bin/nvcc" ] || [ ! -e "$cuda_home/include/cublasLt.h" ]; then
        echo "installing the CUDA 13 toolchain wheels into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            nvidia-cuda-nvcc nvidia-cuda-runtime nvidia-cuda-cccl nvidia-cublas
    fi
    nvcc="$cuda_home/bin/nvcc"
}

# Prints the first directory holding $1: the toolkit's own, then the CUDA wheels of the
# default python3 (a system toolkit may come without cuBLAS while PyTorch's wheels carry it).
find_in_toolkit() {
    local name="$1" site directory
    site="$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' \
            2>/dev/null || true)"
    for directory in "$cuda_home/lib64" "$cuda_home/lib" "$cuda_home/targets/x86_64-linux/lib" \
                     "$cuda_home/include" "$cuda_home/targets/x86_64-linux/include" \
                     "$site/nvidia/cu13/lib" "$site/nvidia/cu13/include" \
                     "$site/nvidia/cublas/lib" "$site/nvidia/cublas/include" \
                     "$site/nvidia/cuda_runtime/lib"; do
        if [ -e "$directory/$name" ]; then
            echo "$directory"
            return 0
        fi
    done
    return 1
}

if find_toolkit; then
    echo "using the system CUDA toolkit at $cuda_home"
else
    install_wheels
fi
"$nvcc" --version | tail -n 1

# The wheels ship only versioned names (libcudart.so.13), so link against those explicitly.
cudart_dir="$(find_in_toolkit libcudart.so.13)" || { echo "error: libcudart.so.13 not found" >&2; exit 1; }
cublas_dir="$(find_in_toolkit libcublasLt.so.13)" || { echo "error: libcublasLt.so.13 not found" >&2; exit 1; }
cublas_include="$(find_in_toolkit cublasLt.h)" || { echo "error: cublasLt.h not found" >&2; exit 1; }

gencode=(
    -gencode=arch=compute_80,code=sm_80
    -gencode=arch=compute_86,code=sm_86
    -gencode=arch=compute_89,code=sm_89
    -gencode=arch=compute_90a,code=sm_90a
    -gencode=arch=compute_90,code=compute_90
)
common=(-O3 -std=c++17 -Xcompiler=-fPIC,-fvisibility=hidden -I"$source_dir" -I"$cublas_include")
sources=(arena gemm attention norm rope elementwise conv graph)

compile() {
    local name="$1"
    if "$nvcc" "${common[@]}" "${gencode[@]}" -c "$source_dir/$name.cu" \
        -o "$build_dir/objects/$name.o"; then
        echo "  compiled $name.cu"
    else
        touch "$build_dir/objects/$name.failed"
    fi
}

echo "compiling ${#sources[@]} sources, $jobs at a time"
rm -f "$build_dir"/objects/*.failed
for name in "${sources[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 0.2; done
    compile "$name" &
done
wait
if compgen -G "$build_dir/objects/*.failed" >/dev/null; then
    echo "error: failed to compile:" "$build_dir"/objects/*.failed >&2
    exit 1
fi

# The runtime libraries are found through an rpath to their directories, so the
# library loads without LD_LIBRARY_PATH wherever the build ran.
link_libraries=(-L"$cublas_dir" -L"$cudart_dir" -l:libcublasLt.so.13 -l:libcudart.so.13 -ldl
                -Xlinker "-rpath,$cublas_dir:$cudart_dir")
"$nvcc" -shared -cudart none "${gencode[@]}" -o "$build_dir/libschnell_cuda.so" \
    "$build_dir"/objects/*.o "${link_libraries[@]}"
echo "built $build_dir/libschnell_cuda.so"

# The harness is host code calling only the exported table, as every other user does.
"$nvcc" -x c++ -O2 -std=c++17 -I"$source_dir" -cudart none -o "$build_dir/test_cuda_ops" \
    "$source_dir/test_cuda_ops.cu" -L"$build_dir" -l:libschnell_cuda.so \
    -Xlinker "-rpath,$build_dir:$cublas_dir:$cudart_dir"
echo "built $build_dir/test_cuda_ops"
