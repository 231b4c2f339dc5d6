// Dumps the tensors llama.cpp computes for the first ubatch of llama-imatrix's run (the same
// context settings as `llama-imatrix -c 512 -t 2`: NSEQ chunks of 512 tokens per batch, one KV
// stream each, ubatches of 512), for comparing qopt's forward op by op. For people, not CI.
//   dump MODEL TEXT OUTDIR LAYERS(comma-separated) [NSEQ=4]
// writes OUTDIR/NAME.OP.bin (raw f32/f16 bytes as ggml holds them), OUTDIR/index.txt (name,
// op, type, ne, nb, contiguity, sources) and OUTDIR/tokens.bin (the first NSEQ·512 token ids).
#include "llama.h"
#include "ggml.h"
#include "ggml-backend.h"
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <set>
#include <fstream>
#include <sstream>
static int ubatch = -1;
static std::set<int> layers;
static std::string dir;
static FILE *idx;
static bool cb(struct ggml_tensor *t, bool ask, void *) {
  std::string name = t->name;
  if (ask) return true;
  if (name == "attn_norm-0" || name == "norm-0") { if (name=="attn_norm-0") ubatch++; }
  if (ubatch != 0) return true;
  int layer = -1;
  auto p = name.rfind('-');
  if (p != std::string::npos) layer = atoi(name.c_str() + p + 1);
  if (!layers.count(layer)) return true;
  fprintf(idx, "%s %s %s %lld %lld %lld %lld %zu %zu %zu %zu %d", name.c_str(), ggml_op_desc(t), ggml_type_name(t->type),
    (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], t->nb[0], t->nb[1], t->nb[2], t->nb[3], ggml_is_contiguous(t));
  for (int i = 0; i < GGML_MAX_SRC; i++) if (t->src[i]) fprintf(idx, " src%d=%s", i, t->src[i]->name);
  fprintf(idx, "\n");
  if (ggml_backend_buffer_is_host(t->buffer)) {
    // dump the whole span the view covers
    size_t span = 0; for (int i = 0; i < 4; i++) span += (t->ne[i] - 1) * t->nb[i];
    span += ggml_type_size(t->type);
    std::string fn = dir + "/" + name + "." + ggml_op_desc(t) + ".bin";
    FILE *f = fopen(fn.c_str(), "wb"); fwrite(t->data, 1, span, f); fclose(f);
  }
  return true;
}
int main(int argc, char **argv) {
  // dump MODEL TEXT DIR LAYERS(comma) [nseq]
  dir = argv[3];
  std::stringstream ss(argv[4]); std::string it; while (std::getline(ss, it, ',')) layers.insert(atoi(it.c_str()));
  int nseq = argc > 5 ? atoi(argv[5]) : 4;
  idx = fopen((dir + "/index.txt").c_str(), "w");
  llama_backend_init();
  auto mp = llama_model_default_params();
  llama_model *model = llama_model_load_from_file(argv[1], mp);
  auto cp = llama_context_default_params();
  cp.n_ctx = 512 * nseq; cp.n_batch = 512 * nseq; cp.n_ubatch = 512; cp.n_seq_max = nseq;
  cp.n_threads = 2; cp.n_threads_batch = 2; cp.cb_eval = cb; cp.cb_eval_user_data = nullptr;
  llama_context *ctx = llama_init_from_model(model, cp);
  const llama_vocab *vocab = llama_model_get_vocab(model);
  std::ifstream in(argv[2]); std::string text((std::istreambuf_iterator<char>(in)), {});
  std::vector<llama_token> toks(text.size() + 8);
  int n = llama_tokenize(vocab, text.c_str(), text.size(), toks.data(), toks.size(), true, false);
  toks.resize(n);
  FILE *tf = fopen((dir + "/tokens.bin").c_str(), "wb"); fwrite(toks.data(), 4, 512 * nseq, tf); fclose(tf);
  llama_batch b = llama_batch_init(512 * nseq, 0, 1);
  b.n_tokens = 0;
  for (int s = 0; s < nseq; s++) for (int k = 0; k < 512; k++) {
    int i = b.n_tokens++;
    b.token[i] = toks[s * 512 + k]; b.pos[i] = k; b.n_seq_id[i] = 1; b.seq_id[i][0] = s; b.logits[i] = 1;
  }
  if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed\n"); return 1; }
  fclose(idx);
  fprintf(stderr, "tokens %d, ubatches seen %d\n", n, ubatch + 1);
  return 0;
}
