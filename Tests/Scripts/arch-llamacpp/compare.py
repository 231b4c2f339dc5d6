"""Max |llama.cpp - transformers| over reference.json's sequences.
Usage: compare.py LOGITS_BINARY MODEL.gguf REFERENCE_JSON"""
import json, subprocess, sys, numpy as np
binary, model, reference = sys.argv[1:4]
ref = json.load(open(reference))
worst = 0
for s, ids in enumerate(ref['input_ids']):
    out = subprocess.run([binary, model] + [str(i) for i in ids], capture_output=True, text=True)
    if out.returncode: print(out.stderr[-2000:]); sys.exit(1)
    got = np.array([[float(x) for x in l.split()] for l in out.stdout.strip().split('\n')])
    want = np.array(ref['logits'][s])
    worst = max(worst, np.abs(got - want).max())
print(model, 'max |llama.cpp - transformers| =', worst)
