#!/usr/bin/env bash
# llama.cpp itself on the GGUF files qopt writes for the architecture fixtures: emits each
# fixture as f32 GGUF, adds a placeholder vocabulary, runs llama.cpp and compares its logits
# with transformers' (reference.json). Needs a llama.cpp build and a Python with gguf + numpy.
# Usage: run.sh LLAMA_SRC LLAMA_BUILD_BIN PYTHON   (from the repository root, after a build)
set -euo pipefail
src=$1 bin=$2 py=$3
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O1 "$here/logits.c" -I"$src/include" -I"$src/ggml/include" -L"$bin" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$bin" -o "$tmp/logits"
for f in llama3 qwen3 qwen3_moe gemma3_text; do
  .build/release/qopt -quiet ../shared/data/arch/$f -emit=gguf:f32 -o "$tmp/$f.gguf"
  "$py" "$here/add_vocab.py" "$tmp/$f.gguf" "$tmp/$f.v.gguf"
  "$py" "$here/compare.py" "$tmp/logits" "$tmp/$f.v.gguf" ../shared/data/arch/$f/reference.json
done
