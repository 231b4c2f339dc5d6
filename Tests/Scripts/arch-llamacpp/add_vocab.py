"""Copies a tokenizer-less GGUF adding a placeholder 256-token vocabulary (llama.cpp refuses a
model without tokenizer.ggml.model; token ids go in directly). Usage: add_vocab.py SRC DST"""
import sys, gguf, numpy as np
from gguf import GGUFReader, GGUFWriter, GGUFValueType
src, dst = sys.argv[1], sys.argv[2]
r = GGUFReader(src)
arch = bytes(r.fields['general.architecture'].parts[-1]).decode()
w = GGUFWriter(dst, arch)
for k, f in r.fields.items():
    if k.startswith('GGUF.') or k == 'general.architecture': continue
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        et = f.types[1]
        vals = [f.parts[i][0].item() for i in f.data]
        w.add_array(k, [bool(v) for v in vals] if et == GGUFValueType.BOOL else vals)
    elif t == GGUFValueType.STRING:
        w.add_string(k, bytes(f.parts[-1]).decode())
    else:
        w.add_key_value(k, f.parts[-1][0].item(), t)
V = 256
w.add_tokenizer_model('llama')
w.add_token_list([f'<0x{i:02X}>' for i in range(V)])
w.add_token_scores([0.0]*V)
w.add_token_types([6]*V)
for t in r.tensors:
    w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
