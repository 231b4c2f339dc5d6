#!/usr/bin/env python3
"""Loads a model directory's tokenizer the way serving stacks do and checks what they need.

usage: serving_tokenizer_check.py DIR

tokenizer.json through `tokenizers`; tokenizer_config.json as transformers writes it
(bos_token / eos_token as strings that are tokens of the vocabulary, chat_template a Jinja
template that renders a conversation); generation_config.json's bos/eos ids equal the
tokenizer's ids for those tokens. Exits 1 with the first problem; prints a summary otherwise.
"""
import json
import sys

from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer


def fail(msg):
    sys.exit("error: " + msg)


d = sys.argv[1]
tok = Tokenizer.from_file(d + "/tokenizer.json")
cfg = json.load(open(d + "/tokenizer_config.json"))
gen = json.load(open(d + "/generation_config.json"))
for key in ("bos_token", "eos_token", "chat_template"):
    if not isinstance(cfg.get(key), str):
        fail(f"tokenizer_config.json: '{key}' missing or not a string")
ids = {}
for key in ("bos_token", "eos_token"):
    i = tok.token_to_id(cfg[key])
    if i is None:
        fail(f"tokenizer_config.json: {key} {cfg[key]!r} is not in the vocabulary")
    ids[key] = i
    if gen.get(key + "_id") != i:
        fail(f"generation_config.json: {key}_id {gen.get(key + '_id')} != tokenizer id {i}")
# transformers renders chat templates with a sandboxed Jinja environment (trim_blocks, lstrip_blocks).
env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
messages = [{"role": "user", "content": "What is 2+2?"}]
text = env.from_string(cfg["chat_template"]).render(
    messages=messages, add_generation_prompt=True, bos_token=cfg["bos_token"], eos_token=cfg["eos_token"])
if "What is 2+2?" not in text:
    fail("chat_template did not render the message")
enc = tok.encode(text, add_special_tokens=False)
special = [t for t in enc.ids if t in ids.values()]
if not special:
    fail("the rendered conversation contains neither the bos nor the eos token as one token")
print(f"ok: bos {cfg['bos_token']!r}={ids['bos_token']} eos {cfg['eos_token']!r}={ids['eos_token']}; "
      f"chat template renders to {len(enc.ids)} tokens, {len(special)} of them special")
