"""qopt against its peers, side by side in one run (driven by scripts/bench-peers).

Each row runs qopt and the peer alternately (medians of --runs runs for short rows; one run of
the first blocks for AutoRound), on the same inputs, with 2 threads each, and prints the table
with this run's FMA-peak and sgemm rates (qopt-bench kernels, before and after) beside it.
The peers' numbers are checked to be the same work: eval prints both perplexities, the emit
rows the output sizes.
"""

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time

p = argparse.ArgumentParser()
p.add_argument("--root", required=True)
p.add_argument("--work", required=True)
p.add_argument("--llama-bin", required=True)
p.add_argument("--rows", default="eval,autoround,gguf,ct")
p.add_argument("--runs", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--ar-iters", type=int, default=50, help="AutoRound iterations (fewer only to try the script)")
args = p.parse_args()

root, work = args.root, args.work
shared = os.path.join(root, "..", "shared")
model = os.path.join(shared, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
data = os.path.join(shared, "data")
qopt = os.path.join(root, ".build", "release", "qopt")
qopt_bench = os.path.join(root, ".build", "release", "qopt-bench")
quantize = os.path.join(args.llama_bin, "llama-quantize")
py = sys.executable
rows = args.rows.split(",")
T = str(args.threads)
os.makedirs(work, exist_ok=True)
env = dict(os.environ, OMP_NUM_THREADS=T, LD_LIBRARY_PATH=args.llama_bin, TOKENIZERS_PARALLELISM="false",
           HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def run(cmd, settle=False, **kw):
    """Runs cmd; returns (wall s, CPU s of the child, its stdout). Fails loudly.

    settle: first write back every file still dirty in the page cache (`sync`), so that a
    short run is not timed while the kernel writes out the previous tool's output (100+ MB for
    the emit rows: their runs took 10-30 % longer right after the other tool's run). Neither
    tool's own write-back is timed, as before."""
    if settle:
        os.sync()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, **kw)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"bench-peers: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, r.stdout


def rm(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def kernels():
    _, _, out = run([qopt_bench, "kernels"])
    peak = re.search(r"FMA peak GFLOP/s, 2 threads\s*\|\s*([\d.]+)", out)
    sgemm = re.search(r"sgemm 512×1536×576[^|]*\|\s*([\d.]+)", out)
    return float(peak.group(1)), float(sgemm.group(1))


# MARK: inputs
f32_gguf = os.path.join(work, "F32.gguf")
hf = os.path.join(work, "hf-f32")
hf3 = os.path.join(work, "hf-f32-3blocks")
if not os.path.exists(f32_gguf):
    run([quantize, "--allow-requantize", model, f32_gguf, "F32", T])
if not os.path.exists(os.path.join(hf, "config.json")):
    rm(hf)
    run([qopt, model, "-emit=safetensors", "-dense-dtype=f32", "-o", hf])
if not os.path.exists(os.path.join(hf3, "config.json")):
    rm(hf3)
    run([py, "-c", textwrap.dedent(f"""
        import json, os, re, shutil
        from safetensors.numpy import load_file, save_file
        src, dst = {hf!r}, {hf3!r}
        os.makedirs(dst)
        cfg = json.load(open(os.path.join(src, "config.json")))
        cfg["num_hidden_layers"] = 3
        json.dump(cfg, open(os.path.join(dst, "config.json"), "w"), indent=2)
        t = {{}}
        for f in sorted(os.listdir(src)):
            if f.endswith(".safetensors"):
                t.update(load_file(os.path.join(src, f)))
        keep = {{k: v for k, v in t.items()
                 if not (m := re.match(r"model\\.layers\\.(\\d+)\\.", k)) or int(m.group(1)) < 3}}
        save_file(keep, os.path.join(dst, "model.safetensors"), metadata={{"format": "pt"}})
        for f in os.listdir(src):
            if f.startswith(("tokenizer", "special_tokens", "generation_config", "chat_template")):
                shutil.copy(os.path.join(src, f), dst)
        """)])

peak0, sgemm0 = kernels()
table = []

# MARK: 1. f32 eval, 8 × 512 windows
if "eval" in rows:
    windows = 8
    tokens = os.path.join(data, "dev_eval.tokens.json")
    hf_eval = textwrap.dedent(f"""
        import json, math, time, torch
        from transformers import AutoModelForCausalLM
        torch.set_num_threads({args.threads})
        ids = json.load(open({tokens!r}))
        m = AutoModelForCausalLM.from_pretrained({hf!r}, dtype=torch.float32).eval()
        wins = [torch.tensor(ids[i * 512:(i + 1) * 512]).unsqueeze(0) for i in range({windows})]
        nll, n = 0.0, 0
        t = time.perf_counter()
        with torch.inference_mode():
            for w in wins:
                logits = m(w).logits[0, :-1].float()
                nll += torch.nn.functional.cross_entropy(logits, w[0, 1:], reduction="sum").item()
                n += w.shape[1] - 1
        dt = time.perf_counter() - t
        print(json.dumps({{"tokens_per_s": {windows} * 512 / dt, "ppl": math.exp(nll / n)}}))
        """)
    q, h = [], []
    for _ in range(args.runs):
        _, _, out = run([qopt, "eval", hf, "-data", tokens, "-windows", str(windows), "-threads", T, "-json"])
        qj = json.loads(out[out.index("{"):out.rindex("}") + 1])
        q.append(qj["tokens_per_s"])
        _, _, out = run([py, "-c", hf_eval])
        hj = json.loads(out.strip().splitlines()[-1])
        h.append(hj["tokens_per_s"])
    if abs(qj["ppl"] - hj["ppl"]) > 1e-2 * hj["ppl"]:
        sys.exit(f"bench-peers: eval perplexities differ: qopt {qj['ppl']} transformers {hj['ppl']}")
    qm, hm = statistics.median(q), statistics.median(h)
    # FLOPs per token: 2 per weight of every linear and the head, plus causal attention's two
    # products (2 · 2 · d · T/2 per layer on average over the window).
    cfg = json.load(open(os.path.join(hf, "config.json")))
    d, L, V, I = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"], cfg["intermediate_size"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]
    per_tok = 2 * (L * (d * d * 2 + d * kv * 2 + 3 * d * I) + d * V) + L * 2 * d * 512
    table.append(("f32 eval, shared model, 8 × 512 windows", f"{qm:.0f} tok/s", f"transformers {hm:.0f} tok/s",
                  qm / hm, 1.5, f"{qm * per_tok / 1e9:.1f} GFLOP/s = {qm * per_tok / 1e9 / peak0 * 100:.0f} % of FMA peak",
                  f"ppl {qj['ppl']:.3f} / {hj['ppl']:.3f}"))

# MARK: 2. AutoRound W4 g128, 32 × 512, batch 8, 50 iterations, the first 3 blocks
if "autoround" in rows:
    calib = os.path.join(data, "calib_samples_32x512.json")
    # Group 128 does not divide the 576-wide rows, so compressed-tensors refuses the result;
    # qopt writes its IR (auto-round, which makes the last group 64 wide, saves nothing either).
    out_q = os.path.join(work, "ar-qopt.ir")
    wall, cpu, _ = run([qopt, hf3, "-passes=calibrate<data=" + calib + ">,autoround<bits=4;group-size=128;iters=" + str(args.ar_iters) + ";batch-size=8>",
                        "-threads", T, "-o", out_q])
    rm(out_q)
    rm(out_q[:-3] + ".safetensors")
    ar = textwrap.dedent(f"""
        import json, time, torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from auto_round import AutoRound
        torch.set_num_threads({args.threads})
        m = AutoModelForCausalLM.from_pretrained({hf3!r}, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained({hf3!r})
        windows = json.load(open({calib!r}))
        data = [{{"input_ids": torch.tensor(w).unsqueeze(0), "attention_mask": torch.ones(1, len(w), dtype=torch.long)}} for w in windows]
        t = time.perf_counter()
        a = AutoRound(m, tok, bits=4, group_size=128, sym=True, iters={args.ar_iters}, nsamples=32, seqlen=512,
                      batch_size=8, dataset=data, amp=False, device_map="cpu")
        a.quantize()
        print(json.dumps({{"seconds": time.perf_counter() - t}}))
        """)
    w2, c2, out = run([py, "-c", ar])
    table.append((f"AutoRound W4 g128, 32 × 512, bs 8, iters {args.ar_iters}, first 3 blocks",
                  f"{wall / 3:.1f} s/block (whole process)", f"auto-round {w2 / 3:.1f} s/block (whole process)",
                  w2 / wall, 1.5, f"CPU {cpu:.0f} s vs {c2:.0f} s", ""))

# MARK: 3. shared GGUF → Q4_0 GGUF
if "gguf" in rows:
    q, l, qc, lc = [], [], [], []
    a, b = os.path.join(work, "q.gguf"), os.path.join(work, "l.gguf")
    for _ in range(max(args.runs, 5)):
        # Each tool writes a new file, as the compressed-tensors row does: over an existing one,
        # ext4 forces the new file's blocks to be allocated and written back at the rename
        # (qopt) or the close after truncating (llama-quantize), 0.1 s here for either tool.
        rm(a); rm(b)
        w, c, _ = run([qopt, model, "-emit=gguf:q4_0", "-threads", T, "-o", a], settle=True)
        q.append(w); qc.append(c)
        w, c, _ = run([quantize, f32_gguf, b, "Q4_0", T], settle=True)
        l.append(w); lc.append(c)
    same = os.path.getsize(a) == os.path.getsize(b)
    rm(a); rm(b)
    qm, lm = statistics.median(q), statistics.median(l)
    table.append(("shared GGUF → Q4_0 GGUF, whole process", f"{qm:.2f} s", f"llama-quantize (F32 GGUF) {lm:.2f} s",
                  lm / qm, 3.0, f"CPU {statistics.median(qc):.2f} s vs {statistics.median(lc):.2f} s",
                  "same size" if same else "SIZES DIFFER"))

# MARK: 4. shared GGUF → W4A16 g64 compressed-tensors
if "ct" in rows:
    # Both write bf16 for what stays unquantized (the embedding, the norms): llm-compressor's
    # model loaded in bf16 as users load it, qopt with -dense-dtype=bf16.
    a, b = os.path.join(work, "ct-qopt"), os.path.join(work, "ct-llmc")
    lc_script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import QuantizationModifier
        torch.set_num_threads({args.threads})
        m = AutoModelForCausalLM.from_pretrained({hf!r}, dtype=torch.bfloat16)
        tok = AutoTokenizer.from_pretrained({hf!r})
        recipe = QuantizationModifier(ignore=["lm_head"], config_groups={{"group_0": {{
            "targets": ["Linear"],
            "weights": {{"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group", "group_size": 64}}}}}})
        oneshot(model=m, recipe=recipe)
        m.save_pretrained({b!r}, save_compressed=True)
        tok.save_pretrained({b!r})
        """)
    q, l = [], []
    for _ in range(args.runs):
        rm(a); rm(b)
        w, _, _ = run([qopt, model, "-passes=rtn<bits=4;group-size=64>", "-threads", T, "-emit=compressed-tensors",
                        "-dense-dtype=bf16", "-o", a], settle=True)
        q.append(w)
        w, _, _ = run([py, "-c", lc_script], settle=True)
        l.append(w)
    size = lambda d: sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
    sizes = f"weights {size(a) / 2**20:.1f} / {size(b) / 2**20:.1f} MiB"
    rm(a); rm(b)
    qm, lm = statistics.median(q), statistics.median(l)
    table.append(("shared GGUF → W4A16 g64 compressed-tensors, whole process", f"{qm:.2f} s",
                  f"llm-compressor oneshot {lm:.1f} s", lm / qm, 50.0, "", sizes))

peak1, sgemm1 = kernels()
print(f"\nin-run rates (qopt-bench kernels, before / after): FMA peak {peak0:.1f} / {peak1:.1f} GFLOP/s, "
      f"sgemm 512×1536×576 {sgemm0:.1f} / {sgemm1:.1f} GFLOP/s ({sgemm0 / peak0 * 100:.0f} % of peak)")
print(f"load average at the end: {os.getloadavg()[0]:.2f}\n")
print("| work | qopt | peer | ratio | goal | met | bound / CPU | check |")
print("|---|---|---|---|---|---|---|---|")
for work_, qs, ps, ratio, goal, bound, check in table:
    print(f"| {work_} | {qs} | {ps} | {ratio:.2f}× | ≥ {goal:g}× | {'yes' if ratio >= goal else 'no'} | {bound} | {check} |")
