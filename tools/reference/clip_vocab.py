"""CLIP BPE vocabulary files for transformers' CLIPTokenizer, built offline.

Owns the construction of `vocab.json` and `merges.txt` (the files of the hub's
openai/clip-vit-large-patch14 and SDXL tokenizer folders) from the
`bpe_simple_vocab_16e6.txt.gz` that ships in the open-clip-torch wheel (MIT),
because this machine has no hub access. The id order is CLIP's: 256 byte
symbols, the same 256 with `</w>`, one token per merge (48894 merges), then
<|startoftext|> = 49406 and <|endoftext|> = 49407 (open_clip tokenizer.py,
SimpleTokenizer.__init__, matched by reading, not copied).
"""

import gzip
import json
import os
import re

import open_clip

NUM_MERGES = 49152 - 256 - 2  # lines 1..48894 of the gz file (line 0 is a version header)
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def byte_symbols():
    """The 256 characters CLIP's byte-level BPE uses for bytes, in vocabulary order.

    The printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') come first and
    stand for themselves; the remaining bytes follow in byte order as the code
    points 256, 257, ... (open_clip tokenizer.py, bytes_to_unicode).
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + n) for n in range(len(others))]


def read_merges():
    path = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    return [tuple(line.split()) for line in lines[1:NUM_MERGES + 1]]


def build_vocab(merges):
    """token -> id, in CLIP's order (49408 entries)."""
    tokens = byte_symbols()
    tokens = tokens + [t + "</w>" for t in tokens] + ["".join(m) for m in merges] + [BOS, EOS]
    assert len(tokens) == 49408, len(tokens)
    return {t: i for i, t in enumerate(tokens)}


def tokenizer_config(pad_token):
    """tokenizer_config.json of SDXL's tokenizer (pad EOS) or tokenizer_2 (pad "!")."""
    return {
        "tokenizer_class": "CLIPTokenizer",
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": pad_token,
        "model_max_length": 77,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }


def special_tokens_map(pad_token):
    return {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": pad_token}


_NUMBER_LIST = re.compile(r"\[([-+.,\deE\s]+)\]")


def write_json(path, obj):
    """Indented, sorted json with lists of numbers kept on one line."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def write_tokenizer_configs(folder, pad_token):
    """The two small json files of a tokenizer folder (committed with the configs)."""
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config(pad_token))
    write_json(os.path.join(folder, "special_tokens_map.json"), special_tokens_map(pad_token))


def write_vocab_files(folder):
    """vocab.json and merges.txt (about 1.4 MB together; generated, never committed)."""
    merges = read_merges()
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(build_vocab(merges), f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        f.writelines(f"{a} {b}\n" for a, b in merges)
