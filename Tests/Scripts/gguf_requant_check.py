#!/usr/bin/env python3
"""End-to-end check on a real model (needs the shared GGUF; not a unit test).

usage: gguf_requant_check.py SOURCE.gguf QOPT_OUT.gguf TYPE

qopt imported SOURCE (dequantizing it to f32) and wrote QOPT_OUT with every 2-D tensor in TYPE.
This script does the same with the `gguf` package: dequantize each SOURCE tensor, quantize it to
TYPE with gguf.quants.quantize, and compares names, shapes, types and bytes with QOPT_OUT.
"""
import sys

try:
    import numpy as np
    import gguf
except ImportError:
    # Never installs anything: the Swift tests pick a Python that has the packages (python3,
    # or a virtual environment under .build/venv they create).
    sys.exit("error: this check needs the gguf and numpy packages; run it with a Python that has them "
             "(python3 -m venv .build/venv && .build/venv/bin/pip install gguf numpy)")

from gguf import GGUFReader, GGMLQuantizationType, quants

src_path, out_path, type_name = sys.argv[1], sys.argv[2], sys.argv[3].upper()
qtype = GGMLQuantizationType[type_name]
src = GGUFReader(src_path)
out = GGUFReader(out_path)
out_by_name = {t.name: t for t in out.tensors}
errors = []
if [t.name for t in src.tensors] != [t.name for t in out.tensors]:
    errors.append("tensor lists differ:\n  source %s\n  qopt   %s" % ([t.name for t in src.tensors][:8], [t.name for t in out.tensors][:8]))
same = 0
for t in src.tensors:
    o = out_by_name.get(t.name)
    if o is None:
        continue
    if list(t.shape) != list(o.shape):
        errors.append(f"{t.name}: shape {list(o.shape)} vs source {list(t.shape)}")
        continue
    shape = tuple(int(x) for x in reversed(t.shape.tolist()))
    f = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
    want_type = qtype if len(shape) == 2 else GGMLQuantizationType.F32
    if o.tensor_type != want_type:
        errors.append(f"{t.name}: type {o.tensor_type.name}, expected {want_type.name}")
        continue
    q = quants.quantize(f, want_type)
    if q.tobytes() != np.asarray(o.data).tobytes():
        a = np.frombuffer(q.tobytes(), np.uint8)
        b = np.frombuffer(np.asarray(o.data).tobytes(), np.uint8)
        errors.append(f"{t.name}: {int((a != b).sum())} of {a.size} bytes differ from gguf.quants.quantize")
    else:
        same += 1
for k in ["general.architecture", "llama.block_count", "llama.embedding_length", "llama.attention.head_count",
          "llama.attention.head_count_kv", "llama.rope.freq_base", "tokenizer.ggml.model", "tokenizer.ggml.pre",
          "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]:
    a = src.fields[k].contents() if k in src.fields else None
    b = out.fields[k].contents() if k in out.fields else None
    if a != b:
        errors.append(f"metadata {k}: qopt {b!r}, source {a!r}")
for k in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"]:
    if src.fields[k].contents() != out.fields[k].contents():
        errors.append(f"metadata {k} differs")
print(f"{same} of {len(src.tensors)} tensors byte-identical to gguf.quants.quantize ({type_name})")
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print("ok")
