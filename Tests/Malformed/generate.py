#!/usr/bin/env python3
"""Writes the malformed-input corpus (Tests/Malformed/<format>/...) and the fuzz seeds
(Fuzz/corpus/<target>/...). Deterministic; standard library only. Run from anywhere:

    python3 Tests/Malformed/generate.py

Each corpus input `X` gets its expectation in `X.expect` (one substring per line that qopt's
error message must contain: the file name plus a byte offset, line or key). Expectations are
written here, beside the input they describe. Big inputs (100k-deep JSON, 100k-deep IR) are not
committed: MalformedCorpusTests builds them at test time.
"""
import json, os, shutil, struct

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))

def out(path, data, expect=None):
    full = os.path.join(ROOT, path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    if expect is not None:
        with open(full + ".expect", "w") as f:
            f.write("\n".join(expect if isinstance(expect, list) else [expect]) + "\n")

# ---------------------------------------------------------------- safetensors

def st(entries, meta=None, header=None, raw_len=None):
    """entries: (name, dtype, shape, bytes); offsets tile the data in order."""
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dtype, shape, b in entries:
        h[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    hb = (header if header is not None else json.dumps(h, separators=(",", ":"))).encode()
    hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", raw_len if raw_len is not None else len(hb)) + hb + data

def f32(n, v=0.5):
    return struct.pack("<%df" % n, *([v] * n))

D, F, V, H, KV, HD = 8, 16, 16, 2, 1, 4

def tiny_tensors():
    p = "model.layers.0."
    shapes = [("model.embed_tokens.weight", [V, D]), ("model.norm.weight", [D]),
              (p + "input_layernorm.weight", [D]), (p + "post_attention_layernorm.weight", [D]),
              (p + "self_attn.q_proj.weight", [H * HD, D]), (p + "self_attn.k_proj.weight", [KV * HD, D]),
              (p + "self_attn.v_proj.weight", [KV * HD, D]), (p + "self_attn.o_proj.weight", [D, H * HD]),
              (p + "mlp.gate_proj.weight", [F, D]), (p + "mlp.up_proj.weight", [F, D]),
              (p + "mlp.down_proj.weight", [D, F])]
    out = []
    for name, shape in shapes:
        n = 1
        for s in shape: n *= s
        out.append((name, "F32", shape, f32(n, 0.01)))
    return out

TINY_CONFIG = {"model_type": "llama", "hidden_size": D, "intermediate_size": F, "num_hidden_layers": 1,
               "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": HD, "vocab_size": V,
               "rms_norm_eps": 1e-5, "tie_word_embeddings": True}

def cfg(**kw):
    c = dict(TINY_CONFIG)
    for k, v in kw.items():
        if v is None: c.pop(k, None)
        else: c[k] = v
    return json.dumps(c, indent=1)

# ---------------------------------------------------------------- gguf

def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b

def gval(t, v):
    if t == 4: return struct.pack("<I", v)
    if t == 5: return struct.pack("<i", v)
    if t == 6: return struct.pack("<f", v)
    if t == 7: return struct.pack("<B", v)
    if t == 8: return gstr(v)
    if t == 10: return struct.pack("<Q", v)
    if t == 9:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(gval(et, x) for x in items)
    raise ValueError(t)

LLAMA_KV = [("general.architecture", 8, "llama"), ("llama.embedding_length", 4, D),
            ("llama.feed_forward_length", 4, F), ("llama.block_count", 4, 1),
            ("llama.attention.head_count", 4, H), ("llama.attention.head_count_kv", 4, KV),
            ("llama.context_length", 4, 64), ("llama.vocab_size", 4, V)]

def gguf_tensors():
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    m = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
         "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    out = []
    for name, _, shape, b in tiny_tensors():
        if name in names: g = names[name]
        else:
            part = name[len("model.layers.0."):-len(".weight")]
            g = "blk.0.%s.weight" % m[part]
        out.append((g, list(reversed(shape)), 0, b))
    return out

def gguf(kvs=None, tensors=None, version=3, tensor_count=None, kv_count=None, align=32, infos_override=None,
         magic=b"GGUF"):
    kvs = LLAMA_KV if kvs is None else kvs
    tensors = gguf_tensors() if tensors is None else tensors
    b = magic + struct.pack("<I", version)
    b += struct.pack("<QQ", len(tensors) if tensor_count is None else tensor_count,
                     len(kvs) if kv_count is None else kv_count)
    for k, t, v in kvs:
        b += gstr(k) + struct.pack("<I", t) + gval(t, v)
    offs, off = [], 0
    for name, dims, typ, data in tensors:
        offs.append(off)
        off += len(data)
        off += -off % align
    for i, (name, dims, typ, data) in enumerate(tensors):
        o = offs[i] if infos_override is None or i not in infos_override else infos_override[i]
        b += gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        b += struct.pack("<IQ", typ, o)
    b += b"\0" * (-len(b) % align)
    for i, (name, dims, typ, data) in enumerate(tensors):
        b += data + b"\0" * (-len(data) % align)
    return b

def gguf_boundaries():
    """Byte offsets of every structural boundary of the default file (for truncations)."""
    b = b"GGUF" + struct.pack("<I", 3)
    marks = [("magic", 2), ("version", 4), ("tensor-count", 8), ("kv-count", 16)]
    pos = 24
    for k, t, v in LLAMA_KV[:2]:
        marks.append(("kv-key-" + k, pos + 8 + 3)); pos += 8 + len(k)
        marks.append(("kv-type-" + k, pos + 2)); pos += 4
        marks.append(("kv-value-" + k, pos + 3)); pos += len(gval(t, v))
    return marks

# ---------------------------------------------------------------- tokenizer

def tokenizer(**kw):
    t = {"version": "1.0", "added_tokens": [], "normalizer": None,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
         "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}}
    for k, v in kw.items():
        if k.startswith("model_"):
            t["model"][k[6:]] = v
        elif v is None:
            t.pop(k)
        else:
            t[k] = v
    return json.dumps(t)

# ---------------------------------------------------------------- IR

IR_OK = """module @m attributes {arch = "llama"}

func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {
  %w = param @w : tensor<4x4xf32>
  %y = linear %x, %w : (tensor<?x4xf32>, tensor<4x4xf32>) -> tensor<?x4xf32>
  return %y : tensor<?x4xf32>
}
"""

def main():
    for d in ["ir", "pipeline", "safetensors", "gguf", "config", "tokenizer", "compressed-tensors"]:
        shutil.rmtree(os.path.join(ROOT, d), ignore_errors=True)

    # --- IR text: truncations at structural boundaries, bad UTF-8, bad dims, sidecar pairs.
    cuts = {"after-attributes-open": IR_OK.index("arch"), "mid-attributes": IR_OK.index("\"llama\""),
            "after-func-header": IR_OK.index("{\n  %w") + 1, "mid-type": IR_OK.index("4xf32>\n  %y") + 1,
            "mid-op": IR_OK.index("linear") + 6, "before-close": IR_OK.rindex("}")}
    for name, at in cuts.items():
        out("ir/truncated-%s.ir" % name, IR_OK[:at], "truncated-%s.ir:" % name)
    out("ir/invalid-utf8.ir", IR_OK.encode().replace(b"@f", b"@f\xff\xfe"), "invalid-utf8.ir:@")
    out("ir/huge-dimension.ir", IR_OK.replace("tensor<4x4xf32>\n", "tensor<99999999999999999999999x4xf32>\n"), "huge-dimension.ir:4:")
    big = IR_OK.replace("4x4", "4294967296x4294967296").replace("?x4x", "?x4294967296x")
    out("ir/shape-product-overflow.ir", big, "shape-product-overflow.safetensors:@8")
    out("ir/shape-product-overflow.safetensors",
        st([], header='{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}') + f32(4))
    out("ir/shape-product-overflow-inline.ir", big.replace("xf32>\n  %y", "xf32> = dense<[1.0]>\n  %y"),
        "shape-product-overflow-inline.ir:4:")
    out("ir/negative-dimension.ir", IR_OK.replace("tensor<4x4xf32>\n", "tensor<-4x4xf32>\n"), "negative-dimension.ir:4:")
    out("ir/duplicate-function.ir", IR_OK + IR_OK[IR_OK.index("func"):], "duplicate-function.ir:")
    out("ir/duplicate-value.ir", IR_OK.replace("%y = linear", "%w = linear").replace("return %y", "return %w"), "duplicate-value.ir:5:")
    out("ir/dense-count.ir", IR_OK.replace("tensor<4x4xf32>\n", "tensor<4x4xf32> = dense<[1.0, 2.0]>\n"), "dense-count.ir:4:")
    # Sidecar problems: missing, truncated, wrong shape, wrong dtype, duplicate names.
    out("ir/missing-sidecar.ir", IR_OK, "missing-sidecar.ir:4:")
    out("ir/truncated-sidecar.ir", IR_OK, "truncated-sidecar.safetensors:@")
    out("ir/truncated-sidecar.safetensors", st([("w", "F32", [4, 4], f32(16))])[:-10])
    out("ir/sidecar-wrong-shape.ir", IR_OK, ["sidecar-wrong-shape.ir:4:", "@w"])
    out("ir/sidecar-wrong-shape.safetensors", st([("w", "F32", [4, 3], f32(12))]))
    out("ir/sidecar-wrong-dtype.ir", IR_OK, ["sidecar-wrong-dtype.ir:4:", "@w"])
    out("ir/sidecar-wrong-dtype.safetensors", st([("w", "I32", [4, 4], f32(16))]))
    dup = '{"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]},"w":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}'
    out("ir/sidecar-duplicate-name.ir", IR_OK, ["sidecar-duplicate-name.safetensors:@%d" % (8 + dup.index('"w"', 2)), "duplicate key"])
    out("ir/sidecar-duplicate-name.safetensors", st([], header=dup) + f32(16))

    # --- Pipelines (-passes= text).
    pipes = {"unbalanced-paren": "dce(dce", "unknown-pass": "rtn,not-a-pass", "bad-option": "rtn<bits=banana>",
             "unknown-option": "rtn<bitz=4>", "empty-element": "dce,,dce", "unclosed-options": "rtn<bits=4",
             "invalid-utf8": b"rtn<bits=\xff>", "huge-number": "rtn<bits=99999999999999999999999999>"}
    for name, text in pipes.items():
        out("pipeline/%s.txt" % name, text, "-passes:1:")

    # --- safetensors (as model.safetensors of a checkpoint with a valid tiny config).
    good = tiny_tensors()
    out("safetensors/_config.json", cfg())
    s = st(good)
    hlen = struct.unpack("<Q", s[:8])[0]
    out("safetensors/truncated-length.safetensors", s[:5], "model.safetensors:@0")
    out("safetensors/truncated-header.safetensors", s[:8 + hlen // 2], "model.safetensors:@0")
    out("safetensors/truncated-data.safetensors", s[:-3], "model.safetensors:@")
    out("safetensors/truncated-at-data-start.safetensors", s[:8 + hlen], "model.safetensors:@")
    out("safetensors/header-1GB.safetensors", st(good, raw_len=1 << 30)[:4096], ["model.safetensors:@0", "exceeds the limit"])
    out("safetensors/header-length-2-64.safetensors", struct.pack("<Q", 2**64 - 1) + b"{}", "model.safetensors:@0")
    out("safetensors/trillion-elements.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[1000000,1000000],"data_offsets":[0,4000000000000]}}') + f32(4),
        ["model.safetensors:@", "run past the end"])
    out("safetensors/shape-overflow.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}') + f32(4),
        ["model.safetensors:@8", "overflows"])
    out("safetensors/negative-dim.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,16]}}') + f32(4), "model.safetensors:@8")
    out("safetensors/lying-offsets.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,32]}}') + f32(4), "model.safetensors:@")
    out("safetensors/overlapping.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"y":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}') + f32(6),
        ["model.safetensors:@", "overlaps"])
    out("safetensors/out-of-range.safetensors",
        st([], header='{"x":{"dtype":"F32","shape":[4],"data_offsets":[1000,1016]}}') + f32(4), "model.safetensors:@")
    out("safetensors/wrong-dtype.safetensors",
        st([], header='{"x":{"dtype":"F33","shape":[4],"data_offsets":[0,16]}}') + f32(4), ["model.safetensors:@8", "F33"])
    out("safetensors/unsupported-dtype-for-import.safetensors",
        st([(n, "I32" if "norm" in n else d, sh, b) for n, d, sh, b in good]), ["model.safetensors", "I32"])
    dup = '{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"x":{"dtype":"F32","shape":[4],"data_offsets":[16,32]}}'
    out("safetensors/duplicate-name.safetensors", st([], header=dup) + f32(8),
        ["model.safetensors:@%d" % (8 + dup.index('"x"', 2)), "duplicate key"])
    out("safetensors/invalid-utf8-header.safetensors",
        st([], header='{"x?":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}').replace(b"x?", b"x\xff") + f32(4),
        "model.safetensors:@")
    out("safetensors/header-not-object.safetensors", st([], header="[1,2,3]"), "model.safetensors:@8")
    out("safetensors/wrong-shape-for-config.safetensors",
        st([(n, d, [2 * D, D] if n.endswith("q_proj.weight") else sh, f32(2 * D * D) if n.endswith("q_proj.weight") else b) for n, d, sh, b in good]),
        ["q_proj.weight", "shape"])

    # --- GGUF.
    g = gguf()
    g0 = gguf(tensors=[])  # no tensor infos: the counts do not give a truncation away early
    for name, at in gguf_boundaries():
        out("gguf/truncated-%s.gguf" % name, g0[:at], "truncated-%s.gguf:@" % name)
    first_info = g.index(b"token_embd.weight") - 8
    out("gguf/truncated-tensor-info.gguf", g[:first_info + 12], "truncated-tensor-info.gguf:@")
    out("gguf/truncated-data.gguf", g[:-40], ["truncated-data.gguf:@", "truncated tensor data"])
    out("gguf/bad-magic.gguf", gguf(magic=b"GGUX"), "bad-magic.gguf:@0")
    out("gguf/version-1.gguf", gguf(version=1), "version-1.gguf:@4")
    out("gguf/big-endian.gguf", gguf(version=0x03000000), ["big-endian.gguf:@4", "big-endian"])
    out("gguf/tensor-count-2-40.gguf", gguf(tensor_count=1 << 40), ["tensor-count-2-40.gguf:@8", "tensor count 1099511627776"])
    out("gguf/kv-count-huge.gguf", gguf(kv_count=(1 << 63) + 5), ["kv-count-huge.gguf:@16", "metadata count"])
    big_str = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62) + b"general.architecture"
    out("gguf/string-length-2-62.gguf", big_str, ["string-length-2-62.gguf:@24", "string length 4611686018427387904"])
    out("gguf/array-length-huge.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1)
        + gstr("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 1 << 50), ["array-length-huge.gguf:@", "array length"])
    out("gguf/unknown-value-type.gguf", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + gstr("x.y") + struct.pack("<I", 99) + b"\0" * 8, ["unknown-value-type.gguf:@", "unknown metadata value type 99"])
    out("gguf/duplicate-key.gguf", gguf(kvs=LLAMA_KV + [LLAMA_KV[1]]), ["duplicate-key.gguf:@", "duplicate metadata key"])
    t = gguf_tensors()
    out("gguf/duplicate-tensor.gguf", gguf(tensors=t + [t[0]]), ["duplicate-tensor.gguf:@", "duplicate tensor name"])
    out("gguf/invalid-utf8-key.gguf", gguf().replace(b"general.architecture", b"general.architectur\xff"),
        ["invalid-utf8-key.gguf:@24", "UTF-8"])
    out("gguf/bad-bool.gguf", gguf(kvs=LLAMA_KV + [("x.flag", 7, 2)]), ["bad-bool.gguf:@", "bool"])
    t2 = list(t); t2[0] = (t[0][0], [D, V, 1, 1, 1], 0, t[0][3])
    out("gguf/five-dims.gguf", gguf(tensors=t2), ["five-dims.gguf:@", "dimensions"])
    t2 = list(t); t2[0] = (t[0][0], [D, 1 << 33], 0, t[0][3])
    out("gguf/huge-dimension.gguf", gguf(tensors=t2), ["huge-dimension.gguf:@", "too large"])
    t2 = list(t); t2[0] = (t[0][0], [1 << 31 - 1, 1 << 31 - 1, 1 << 31 - 1], 0, t[0][3])
    out("gguf/element-count-overflow.gguf", gguf(tensors=t2), ["element-count-overflow.gguf:@", "overflows"])
    t2 = list(t); t2[0] = (t[0][0], t[0][1], 77, t[0][3])
    out("gguf/unknown-tensor-type.gguf", gguf(tensors=t2), ["unknown-tensor-type.gguf:@", "unknown ggml tensor type 77"])
    t2 = list(t); t2[0] = (t[0][0], [D * 2, V // 2], 8, t[0][3])
    out("gguf/block-size-mismatch.gguf", gguf(tensors=t2), ["block-size-mismatch.gguf:@", "block size"])
    out("gguf/misaligned-offset.gguf", gguf(infos_override={1: 4}), ["misaligned-offset.gguf:@", "alignment"])
    out("gguf/overlapping.gguf", gguf(infos_override={1: 0}), ["overlapping.gguf:@", "overlaps"])
    out("gguf/offset-out-of-range.gguf", gguf(infos_override={1: 1 << 40}), ["offset-out-of-range.gguf:@", "runs past the end"])
    out("gguf/offset-huge.gguf", gguf(infos_override={1: 1 << 63}), ["offset-huge.gguf:@", "out of range"])
    out("gguf/bad-alignment.gguf", gguf(kvs=LLAMA_KV + [("general.alignment", 4, 3)]), ["bad-alignment.gguf:@", "general.alignment"])
    out("gguf/missing-architecture.gguf", gguf(kvs=LLAMA_KV[1:]), ["missing-architecture.gguf", "general.architecture"])
    out("gguf/head-count-overflow.gguf", gguf(kvs=[kv if kv[0] != "llama.attention.head_count" else (kv[0], 10, 1 << 62) for kv in LLAMA_KV]
        + [("llama.rope.dimension_count", 10, 1 << 62)]), ["head-count-overflow.gguf", "llama."])
    out("gguf/tensor-shape-vs-config.gguf", gguf(kvs=[kv if kv[0] != "llama.embedding_length" else (kv[0], 4, 16) for kv in LLAMA_KV]),
        ["tensor-shape-vs-config.gguf", "shape"])
    tok_kv = LLAMA_KV + [("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.tokens", 9, (8, ["a", "b"])),
                         ("tokenizer.ggml.merges", 9, (4, [1, 2]))]
    out("gguf/vocab-merges-not-strings.gguf", gguf(kvs=tok_kv), ["vocab-merges-not-strings.gguf:@", "tokenizer.ggml.merges"])

    # --- config.json (beside a valid tiny model.safetensors).
    out("config/_model.safetensors", st(good))
    out("config/not-json.json", '{"model_type": "llama", "hidden_size": 8,,}', "config.json:@")
    out("config/truncated.json", cfg()[:40], "config.json:@")
    out("config/not-object.json", "[1, 2]", "config.json:@0")
    out("config/invalid-utf8.json", cfg().encode().replace(b'"llama"', b'"ll\xffma"'), "config.json:@")
    out("config/missing-hidden-size.json", cfg(hidden_size=None), "config.json: error: key 'hidden_size'")
    out("config/negative-layers.json", cfg(num_hidden_layers=-3), "config.json: error: key 'num_hidden_layers'")
    out("config/string-heads.json", cfg(num_attention_heads="2"), "config.json: error: key 'num_attention_heads'")
    out("config/huge-heads.json", cfg(num_attention_heads=1 << 62, num_key_value_heads=1 << 62, head_dim=1 << 62),
        "config.json: error: key '")
    out("config/huge-vocab.json", cfg(vocab_size=10**18), "config.json: error: key 'vocab_size'")
    out("config/float-overflow-int.json", cfg(hidden_size=1e300), "config.json: error: key 'hidden_size'")
    out("config/kv-does-not-divide.json", cfg(num_key_value_heads=3, num_attention_heads=2), "config.json: error: key 'num_key_value_heads'")
    out("config/unknown-model-type.json", cfg(model_type="gpt-neox"), "config.json: error: key 'model_type'")
    out("config/duplicate-key.json", cfg()[:-2] + ',\n "hidden_size": 16\n}', ["config.json:@", "duplicate key"])
    out("config/bad-rope-scaling.json", cfg(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "config.json: error: key 'rope_scaling.")

    # --- tokenizer.json (beside a valid tiny model; read by `qopt eval`).
    out("tokenizer/_model.safetensors", st(good))
    out("tokenizer/_config.json", cfg())
    out("tokenizer/not-json.json", tokenizer()[:-5], "tokenizer.json:@")
    out("tokenizer/no-model.json", tokenizer(model=None), "tokenizer.json: error: key 'model'")
    out("tokenizer/vocab-not-object.json", tokenizer(model_vocab=[1, 2]), "tokenizer.json: error: key 'model.vocab'")
    out("tokenizer/negative-id.json", tokenizer(model_vocab={"a": -1}), "tokenizer.json: error: key 'model.vocab'")
    out("tokenizer/merge-missing-token.json", tokenizer(model_merges=["a c"]), "tokenizer.json: error: key 'model.merges'")
    out("tokenizer/bad-merge-entry.json", tokenizer(model_merges=[42]), "tokenizer.json: error: key 'model.merges'")
    out("tokenizer/added-token-huge-id.json", tokenizer(added_tokens=[{"id": 1 << 40, "content": "<x>"}]), "tokenizer.json: error: key 'added_tokens'")
    out("tokenizer/added-token-max-id.json", tokenizer(added_tokens=[{"id": 2**63 - 1, "content": "<x>"}]), "tokenizer.json: error: key 'added_tokens'")
    out("tokenizer/added-token-empty.json", tokenizer(added_tokens=[{"id": 3, "content": ""}]), "tokenizer.json: error: key 'added_tokens'")
    out("tokenizer/unsupported-pre.json", tokenizer(pre_tokenizer={"type": "Metaspace"}), "tokenizer.json: error: key 'pre_tokenizer'")
    out("tokenizer/invalid-utf8.json", tokenizer().encode().replace(b'"ab"', b'"a\xffb"'), "tokenizer.json:@")

    # --- compressed-tensors directories.
    ct_cfg = json.loads(cfg())
    ct_cfg["quantization_config"] = {"quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "symmetric": True,
                                                                          "strategy": "group", "group_size": 8}}}}
    base = "model.layers.0.mlp.up_proj.weight"
    def ct(name, tensors, config=None, expect=None, extra=None):
        d = "compressed-tensors/" + name
        out(d + "/config.json", json.dumps(config if config is not None else ct_cfg))
        if tensors is not None:
            out(d + "/model.safetensors", tensors if isinstance(tensors, bytes) else st(tensors))
        for k, v in (extra or {}).items(): out(d + "/" + k, v)
        with open(os.path.join(ROOT, d + ".expect"), "w") as f:
            f.write("\n".join(expect) + "\n")
    packed = (base + "_packed", "I32", [F, 1], b"\x11" * 4 * F)
    scale = (base + "_scale", "F32", [F, 1], f32(F, 0.1))
    shape = (base + "_shape", "I64", [2], struct.pack("<qq", F, D))
    ct("packed-rows-mismatch", [(packed[0], "I32", [F - 1, 1], b"\x11" * 4 * (F - 1)), scale, shape],
       expect=["model.safetensors", "'%s_packed'" % base])
    ct("shape-negative", [packed, scale, (shape[0], "I64", [2], struct.pack("<qq", F, -8))], expect=["model.safetensors", "columns"])
    ct("shape-huge", [packed, scale, (shape[0], "I64", [2], struct.pack("<qq", 1 << 62, 1 << 62))], expect=["model.safetensors", base])
    ct("missing-scale", [packed, shape], expect=["model.safetensors", "_scale"])
    ct("wrong-shape-dtype", [packed, scale, (shape[0], "F32", [2], f32(2))], expect=["model.safetensors", "_shape"])
    ct("scale-groups-mismatch", [packed, (scale[0], "F32", [F, 3], f32(3 * F)), shape], expect=["model.safetensors", "scale"])
    ct("nvfp4-bad-scale", [(base + "_packed", "U8", [F, 4], b"\0" * 4 * F), scale], expect=["model.safetensors", "_scale"])
    ct("bad-quant-method", [packed, scale, shape], config=dict(ct_cfg, quantization_config={"quant_method": "gptq"}),
       expect=["config.json", "quant_method"])
    # A config.json regex is input too: no back-references (no linear-time matcher), and a
    # pattern that backtracks exponentially must match in linear time (a test would hang).
    rx = json.loads(json.dumps(ct_cfg))
    rx["quantization_config"]["config_groups"]["group_0"]["targets"] = ["re:(a)\\1"]
    ct("regex-backreference", [packed, scale, shape], config=rx, expect=["config.json", "targets", "back-references"])
    rx2 = json.loads(json.dumps(ct_cfg))
    rx2["quantization_config"]["config_groups"]["group_0"]["targets"] = ["re:(m+)+x", "Linear"]
    rx2["quantization_config"]["config_groups"]["group_0"]["input_activations"] = {"num_bits": 8, "type": "int", "symmetric": True, "dynamic": False, "strategy": "tensor"}
    mm = "m" * 40 + ".weight"
    ct("regex-exponential", [(mm + "_packed", "I32", [F, 1], b"\x11" * 4 * F), (mm + "_scale", "F32", [F, 1], f32(F, 0.1)),
                             (mm + "_shape", "I64", [2], struct.pack("<qq", F, D))], config=rx2, expect=["config.json", "input_scale"])
    ct("config-not-json", [packed, scale, shape], config=None, expect=["config.json:@"],
       extra={"config.json": b'{"quantization_config": {'})
    ct("truncated-safetensors", st([packed, scale, shape])[:-7], expect=["model.safetensors:@"])
    ct("index-escapes-dir", None, expect=["model.safetensors.index.json", "weight_map"],
       extra={"model.safetensors.index.json": json.dumps({"weight_map": {"x": "../../../etc/passwd"}})})
    ct("missing-shard", None, expect=["shard-1.safetensors", "does not exist"],
       extra={"model.safetensors.index.json": json.dumps({"weight_map": {"x": "shard-1.safetensors"}})})

    # --- fuzz seeds.
    seeds = os.path.join(REPO, "Fuzz", "corpus")
    def seed(target, name, data):
        os.makedirs(os.path.join(seeds, target), exist_ok=True)
        with open(os.path.join(seeds, target, name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
    seed("gguf", "tiny-llama.gguf", gguf())
    q8 = [("blk.0.ffn_up.weight", [32, 2], 8, b"\x00\x3c" + bytes(range(32)) + b"\x00\x38" + bytes(range(32, 64)))]
    seed("gguf", "q8_0.gguf", gguf(kvs=LLAMA_KV[:1], tensors=q8))
    seed("gguf", "gpt2-vocab.gguf", gguf(kvs=LLAMA_KV + [("tokenizer.ggml.model", 8, "gpt2"), ("tokenizer.ggml.pre", 8, "smollm"),
        ("tokenizer.ggml.tokens", 9, (8, ["H", "e", "l", "o", "He", "ll"])), ("tokenizer.ggml.merges", 9, (8, ["H e", "l l"])),
        ("tokenizer.ggml.token_type", 9, (5, [1, 1, 1, 1, 3, 1]))]))
    seed("config", "tiny.json", cfg())
    seed("config", "llama3-rope.json", cfg(rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}))
    seed("tokenizer", "bpe.json", tokenizer())
    seed("tokenizer", "llama3.json", tokenizer(added_tokens=[{"id": 3, "content": "<|endoftext|>"}],
        pre_tokenizer={"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}))
    seed("tokenizer", "digits.json", tokenizer(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]}))
    seed("compressed-tensors", "weights", b"\0" + st([packed, scale, shape]))
    seed("compressed-tensors", "config", b"\1" + json.dumps(ct_cfg).encode())

if __name__ == "__main__":
    main()
