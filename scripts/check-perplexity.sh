#!/bin/sh
# The anchors.md acceptance check: float32 perplexity of the shared SmolLM2-135M GGUF on
# dev_eval.txt, 40 windows of 512 tokens, must be 43.345 within 0.1 %.
# Usage: scripts/check-perplexity.sh [threads]   (run from the repository root)
set -eu
threads="${1:-2}"
swift build -c release --product qopt >/dev/null
json=$(./.build/release/qopt eval ../shared/models/SmolLM2-135M-Instruct.Q4_1.gguf \
  -data ../shared/data/dev_eval.txt -seqlen 512 -windows 40 -threads "$threads" -json)
echo "$json"
ppl=$(echo "$json" | sed 's/.*"ppl":\([0-9.eE+-]*\).*/\1/')
awk -v p="$ppl" 'BEGIN { d = p / 43.345 - 1; if (d < 0) d = -d; if (d > 0.001) { print "FAIL: ppl " p " differs from 43.345 by more than 0.1 %"; exit 1 } print "ok: ppl " p }'
