#!/usr/bin/env python3
"""Cross-checks a GGUF written by qopt against the `gguf` package (gguf-py).

usage: gguf_crosscheck.py FILE.gguf EXPECTED.safetensors

EXPECTED holds, per GGUF tensor name N (GGUF row order, row-major shape):
  deq:N  qopt's dequantized weights (f32)      -> must equal gguf.quants.dequantize exactly
  src:N  the f32 weights qopt quantized (opt.) -> gguf.quants.quantize(src) must equal the bytes
Exits 1 with a report on the first class of mismatch; prints a summary on success.
"""
import json
import struct
import sys

try:
    import numpy as np
    import gguf
except ImportError:
    # Never installs anything: the Swift tests pick a Python that has the packages (python3,
    # or a virtual environment under .build/venv they create).
    sys.exit("error: this check needs the gguf and numpy packages; run it with a Python that has them "
             "(python3 -m venv .build/venv && .build/venv/bin/pip install gguf numpy)")

from gguf import GGUFReader, quants

DT = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "I8": np.int8}


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[base + a:base + b], dtype=DT[v["dtype"]]).reshape(v["shape"])
    return out


def main():
    path, expected_path = sys.argv[1], sys.argv[2]
    exp = load_safetensors(expected_path)
    r = GGUFReader(path)
    errors = []
    arch = r.fields["general.architecture"].contents()
    if arch != "llama":
        errors.append(f"general.architecture = {arch!r}")
    align = r.fields.get("general.alignment")
    if align is not None and align.contents() != 32:
        errors.append(f"general.alignment = {align.contents()}")
    names = [t.name for t in r.tensors]
    want = sorted(k[4:] for k in exp if k.startswith("deq:"))
    if sorted(names) != want:
        errors.append(f"tensor names differ: file {sorted(names)} expected {want}")
    checked = requantized = 0
    for t in r.tensors:
        key = "deq:" + t.name
        if key not in exp:
            continue
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))
        want_deq = exp[key]
        if tuple(want_deq.shape) != shape:
            errors.append(f"{t.name}: shape {shape}, expected {tuple(want_deq.shape)}")
            continue
        got = np.asarray(quants.dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        # Exact equality of values (no tolerance); +0 and -0 compare equal (q4_1 computes
        # d*n + m, the IR scale*(q - zp): the same number, the sign of a zero may differ).
        if not np.array_equal(got, want_deq.astype(np.float32)):
            bad = np.argwhere(got != want_deq)[0]
            errors.append(f"{t.name} ({t.tensor_type.name}): dequantized differs first at {tuple(bad)}: "
                          f"gguf {got[tuple(bad)]!r} qopt {want_deq[tuple(bad)]!r}")
        checked += 1
        src = exp.get("src:" + t.name)
        if src is not None:
            q = quants.quantize(src.astype(np.float32), t.tensor_type)
            if q.tobytes() != np.asarray(t.data).tobytes():
                a = np.frombuffer(q.tobytes(), np.uint8)
                b = np.frombuffer(np.asarray(t.data).tobytes(), np.uint8)
                i = int(np.argmax(a != b)) if a.size == b.size else -1
                errors.append(f"{t.name} ({t.tensor_type.name}): bytes differ from gguf.quants.quantize at byte {i}")
            requantized += 1
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print(f"ok: {checked} tensors dequantize identically, {requantized} byte-identical to gguf.quants.quantize")


if __name__ == "__main__":
    main()
