// Prints llama.cpp's logits (one line per position) for token ids given on the command line:
// logits MODEL.gguf ID... . F32 KV cache and no flash attention, so the figures are f32 compute.
// Built and run by run.sh (not by the test suite: it needs a llama.cpp build).
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
  llama_backend_init();
  struct llama_model_params mp = llama_model_default_params();
  struct llama_model *m = llama_model_load_from_file(argv[1], mp);
  if (!m) { fprintf(stderr, "load failed\n"); return 1; }
  int n = argc - 2;
  struct llama_context_params cp = llama_context_default_params();
  cp.n_ctx = 64; cp.n_batch = 64; cp.n_ubatch = 64; cp.n_threads = 1; cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32; cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED; cp.n_threads_batch = 1;
  struct llama_context *c = llama_init_from_model(m, cp);
  if (!c) { fprintf(stderr, "ctx failed\n"); return 1; }
  struct llama_batch b = llama_batch_init(n, 0, 1);
  for (int i = 0; i < n; i++) { b.token[i] = atoi(argv[i+2]); b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1; }
  b.n_tokens = n;
  if (llama_decode(c, b)) { fprintf(stderr, "decode failed\n"); return 1; }
  int V = llama_vocab_n_tokens(llama_model_get_vocab(m));
  for (int i = 0; i < n; i++) { float *l = llama_get_logits_ith(c, i); for (int v = 0; v < V; v++) printf("%.7g ", l[v]); printf("\n"); }
  return 0;
}
