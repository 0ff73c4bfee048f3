#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers that read bytes a user or a client controls, with
# libFuzzer through `swiftc -sanitize=fuzzer` (with AddressSanitizer where raw memory is read). Not part of CI: it takes
# minutes per target. Usage:
#
#   Tests/Fuzz/run.sh TARGET [RUNS]
#
# TARGET is one of safetensors, gguf, json, multipart, image, tokenizers, inspect (each harness is
# Tests/Fuzz/TARGET.swift and says what it checks); RUNS is the number of executions
# (default 1000000). Each harness is compiled together with the package's own source files for
# that parser, so the fuzzer sees their coverage; modules they import come from `swift build`.
# It starts from the committed seeds in Tests/Fuzz/corpus/TARGET and keeps what it finds in
# .build/fuzz/TARGET-corpus; a crashing input is written to .build/fuzz/TARGET-crash-* and
# the script exits non-zero. Reproduce one with: .build/fuzz/TARGET .build/fuzz/TARGET-crash-...
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${1:?"usage: Tests/Fuzz/run.sh safetensors|gguf|json|multipart|image|tokenizers|inspect [RUNS]"}
runs=${2:-1000000}
out=.build/fuzz
mkdir -p "$out" "$out/$target-corpus"
# The safetensors, GGUF and tokenizer harnesses write each input to a file: keep those in memory.
if [ -z "${TMPDIR:-}" ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi

# AddressSanitizer where the parser handles raw pointers or calls C; the Swift-only parsers are
# bounds-checked already and run twice as fast without it.
sanitizers=fuzzer
sources=()
options=()
case "$target" in
    safetensors)
        swift build --target SchnellKernels >/dev/null
        sanitizers=fuzzer,address
        sources=(Sources/Schnell/Weights/SafeTensors.swift Sources/Schnell/Weights/WeightTensor.swift
                 Sources/Schnell/Weights/ModelFile.swift Sources/Schnell/Weights/WeightsError.swift
                 Sources/Schnell/Tensors/DType.swift)
        options=(-Xcc "-fmodule-map-file=.build/debug/SchnellKernels.build/module.modulemap"
                 .build/debug/SchnellKernels.build/*.o -lopenblas -lm -lpthread)
        ;;
    gguf)
        swift build --target SchnellKernels >/dev/null
        sanitizers=fuzzer,address
        sources=(Sources/Schnell/Weights/GGUF.swift Sources/Schnell/Weights/WeightTensor.swift
                 Sources/Schnell/Weights/ModelFile.swift Sources/Schnell/Weights/WeightsError.swift
                 Sources/Schnell/Tensors/DType.swift)
        options=(-Xcc "-fmodule-map-file=.build/debug/SchnellKernels.build/module.modulemap"
                 .build/debug/SchnellKernels.build/*.o -lopenblas -lm -lpthread)
        ;;
    json)
        sources=(Sources/SchnellServer/JSONValue.swift Sources/SchnellServer/JSONParser.swift)
        ;;
    multipart)
        # APIError names the pipeline's errors, so the Schnell module is linked as built.
        swift build --target Schnell >/dev/null
        sources=(Sources/SchnellServer/Multipart.swift Sources/SchnellServer/APIError.swift Sources/SchnellServer/JSONValue.swift
                 Sources/SchnellServer/JSONParser.swift)
        options=(-I .build/debug/Modules -I Kernels/cuda
                 -Xcc "-fmodule-map-file=.build/debug/SchnellKernels.build/module.modulemap"
                 .build/debug/Schnell.build/*.o .build/debug/SchnellKernels.build/*.o -lopenblas -lm -lpthread)
        ;;
    image)
        sanitizers=fuzzer,address
        sources=(Sources/SchnellImageIO/*.swift)
        options=(-I Sources/CPNG -I Sources/CJPEG -I Sources/CWebP)
        ;;
    inspect)
        # The whole engine library: recognition, shape inference and every family's name table.
        swift build --target SchnellKernels >/dev/null
        sources=($(find Sources/Schnell -name '*.swift'))
        options=(-I Kernels/cuda -Xcc "-fmodule-map-file=.build/debug/SchnellKernels.build/module.modulemap"
                 .build/debug/SchnellKernels.build/*.o -lopenblas -lm -lpthread -ldl)
        ;;
    tokenizers)
        sources=(Sources/Schnell/Tokenizers/*.swift Sources/Schnell/Weights/ModelFile.swift
                 Sources/Schnell/Weights/WeightsError.swift)
        ;;
    *)
        echo "unknown target '$target' (safetensors, gguf, json, multipart, image, tokenizers, inspect)" >&2
        exit 2
        ;;
esac

echo "building $out/$target"
swiftc -sanitize="$sanitizers" -parse-as-library -O -g -module-name "Fuzz_$target" \
    -o "$out/$target" "Tests/Fuzz/$target.swift" "${sources[@]}" "${options[@]}"

echo "fuzzing $target for $runs executions"
# Swift's own crash backtracer would take the trap signal first and exit before libFuzzer saves
# the input that caused it.
SWIFT_BACKTRACE=enable=no "$out/$target" -runs="$runs" -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$out/$target-" "$out/$target-corpus" "Tests/Fuzz/corpus/$target"
