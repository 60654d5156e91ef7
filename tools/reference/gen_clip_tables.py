"""Generates the two data files of the C tokenizer and prompt parser:

  src/sd/clip_bpe_data.c   CLIP's 48894 BPE merges as pairs of token ids
  src/sd/unicode_data.c    the Unicode tables the tokenizer and parser need

Run with the reference venv:  tools/reference/.venv/bin/python tools/reference/gen_clip_tables.py

The merges come from open_clip's bpe_simple_vocab_16e6.txt.gz (MIT, see NOTICE)
through clip_vocab.py. Each merge (a, b) is stored as (id(a), id(b)); the token
it creates has id 512 + its rank, so the vocabulary is derived in C.

The tokenizer must be identical to transformers' CLIPTokenizer, which since
transformers 5 is backed by the Rust `tokenizers` library: normalizer NFC ->
Replace(\\s+, " ") -> Lowercase, then the CLIP split regex (Oniguruma). Those
components carry their own, older, Unicode data, so every tokenizer table is
extracted from the reference engine itself, codepoint by codepoint, rather than
from Python's unicodedata or the `regex` module:
  - \\p{L}, \\p{N}, \\s as Oniguruma (inside tokenizers) classifies them;
  - the per-character lower-case mapping of the Lowercase normalizer;
  - NFC: full canonical decompositions (the NFD normalizer), canonical
    combining classes (Python's values, kept only for marks the reference
    reorders) and the primary composites (the NFC normalizer); the result is
    checked against the reference NFC below.
The prompt parser mimics Python's `re` module (A1111's parser runs on it), so
its classes come from this Python: \\s, \\w (for \\b) and \\d (decimal digits).
"""

import os
import random
import sys
import unicodedata

from tokenizers import Regex, normalizers, pre_tokenizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_vocab  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CODEPOINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3
CHUNK = 4096

NFC = normalizers.NFC()
NFD = normalizers.NFD()
LOWER = normalizers.Lowercase()


# --- merges ------------------------------------------------------------------

def merge_id_pairs():
    merges = clip_vocab.read_merges()
    vocab = clip_vocab.build_vocab(merges)
    pairs = []
    for rank, (a, b) in enumerate(merges):
        ia, ib = vocab[a], vocab[b]
        # A merge only uses tokens that exist before it; this makes the id-pair
        # form and the heap-ordered BPE of the C code exact.
        assert ia < 512 + rank and ib < 512 + rank, (rank, a, b)
        assert vocab[a + b] == 512 + rank
        pairs.append((ia, ib))
    return pairs


# --- classes of the reference regex engine --------------------------------------

def onig_class(pattern):
    """Codepoints matched by a one-character Oniguruma class, via a Split
    pre-tokenizer that removes the matches: what survives does not match."""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=False)
    survivors = set()
    for i in range(0, len(CODEPOINTS), CHUNK):
        text = "".join(map(chr, CODEPOINTS[i:i + CHUNK]))
        for piece, _ in split.pre_tokenize_str(text):
            survivors.update(map(ord, piece))
    return [c for c in CODEPOINTS if c not in survivors]


def python_class(pred):
    return [c for c in CODEPOINTS if pred(chr(c))]


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


# --- lower case -----------------------------------------------------------------

def lower_map():
    table = []
    for c in CODEPOINTS:
        low = LOWER.normalize_str(chr(c))
        if low != chr(c):
            assert 1 <= len(low) <= 2, hex(c)
            table.append((c, ord(low[0]), ord(low[1]) if len(low) > 1 else 0))
    return table


# --- NFC --------------------------------------------------------------------------

def reference_ccc():
    """Combining classes as the reference uses them. Classes never change once
    assigned, so a mark has Python's class if the reference knows the mark at
    all (it reorders it against a mark of another class), and 0 otherwise."""
    ccc = {}
    for c in CODEPOINTS:
        k = unicodedata.combining(chr(c))
        if not k:
            continue
        if k > 1:  # U+0334 has class 1: a known mark of class k > 1 moves after it
            known = NFD.normalize_str(chr(c) + "\u0334") == "\u0334" + chr(c)
        else:  # U+0301 has class 230: a known class-1 mark moves before it
            known = NFD.normalize_str("\u0301" + chr(c)) == chr(c) + "\u0301"
        if known:
            ccc[c] = k
    return ccc


def decompositions():
    """Full canonical decompositions (Hangul syllables are algorithmic in C)."""
    table = {}
    for c in CODEPOINTS:
        if HANGUL_FIRST <= c <= HANGUL_LAST:
            continue
        d = NFD.normalize_str(chr(c))
        if d != chr(c):
            table[c] = [ord(x) for x in d]
    return table


def compositions(decomp):
    """(first, second) -> primary composite: characters the reference NFC keeps
    although they decompose, with their one-level canonical mapping."""
    table = {}
    for c, full in decomp.items():
        if NFC.normalize_str(chr(c)) != chr(c):
            continue  # excluded or singleton: never produced by composition
        parts = unicodedata.decomposition(chr(c)).split()
        assert parts and not parts[0].startswith("<") and len(parts) == 2, hex(c)
        first, second = (int(p, 16) for p in parts)
        table[(first, second)] = c
    return table


def nfc_model(text, decomp, ccc, comp):
    """The algorithm of unicode.c in Python, to check the tables against the reference."""
    out = []
    for ch in text:
        c = ord(ch)
        if HANGUL_FIRST <= c <= HANGUL_LAST:
            s = c - HANGUL_FIRST
            out += [0x1100 + s // 588, 0x1161 + (s % 588) // 28] + ([0x11A7 + s % 28] if s % 28 else [])
        else:
            out += decomp.get(c, [c])
    i = 1  # canonical ordering: a stable sort of each run of non-starters
    while i < len(out):
        j = i
        while j > 0 and ccc.get(out[j], 0) and ccc.get(out[j - 1], 0) > ccc.get(out[j], 0):
            out[j - 1], out[j] = out[j], out[j - 1]
            j -= 1
        i += 1
    res, starter, last_ccc = [], -1, 0
    for c in out:
        k = ccc.get(c, 0)
        if starter >= 0 and (last_ccc < k or (last_ccc == 0 and len(res) - 1 == starter)):
            s = res[starter]
            if 0x1100 <= s <= 0x1112 and 0x1161 <= c <= 0x1175:
                res[starter] = HANGUL_FIRST + ((s - 0x1100) * 21 + c - 0x1161) * 28
                continue
            if HANGUL_FIRST <= s <= HANGUL_LAST and (s - HANGUL_FIRST) % 28 == 0 and 0x11A8 <= c <= 0x11C2:
                res[starter] = s + c - 0x11A7
                continue
            if (s, c) in comp:
                res[starter] = comp[(s, c)]
                continue
        if k == 0:
            starter = len(res)
        last_ccc = k
        res.append(c)
    return "".join(map(chr, res))


def check_nfc(decomp, ccc, comp):
    samples = [chr(c) for c in CODEPOINTS]
    samples += [chr(a) + chr(b) for (a, b) in comp]
    marks = sorted(ccc) + [0x0334, 0x0301, 0x0323, 0x0308, 0x05B0, 0x0F71, 0x0F72]
    bases = [ord(x) for x in "aeiouAEIOUnNcCsSyYwWzZ"] + [0x3B1, 0x3B7, 0x3C9, 0x1100, 0x1161, 0x11A8,
                                                       0xAC00, 0xAC01, 0x0915, 0x0DD9, 0x0B47, 0x1B05]
    bases += [c for pair in comp for c in pair][:400] + list(comp.values())[:400]
    rng = random.Random(1234)
    for _ in range(200000):
        n = rng.randint(1, 6)
        samples.append("".join(chr(rng.choice(bases if rng.random() < 0.4 else marks)) for _ in range(n)))
    bad = [s for s in samples if nfc_model(s, decomp, ccc, comp) != NFC.normalize_str(s)]
    assert not bad, [[hex(ord(x)) for x in s] for s in bad[:5]]
    return len(samples)


# --- C output -----------------------------------------------------------------------

def c_array(ctype, name, rows, per_line):
    flat = [str(x) for row in rows for x in (row if isinstance(row, (list, tuple)) else [row])]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return f"const {ctype} {name}[] = {{\n    " + ",\n    ".join(lines) + "\n};\n"


def write(path, text):
    with open(os.path.join(REPO, path), "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote", path, len(text), "bytes")


def write_merges():
    pairs = merge_id_pairs()
    head = (
        "/* GENERATED by tools/reference/gen_clip_tables.py -- do not edit.\n"
        " * CLIP's BPE merges (OpenAI CLIP / open_clip bpe_simple_vocab_16e6.txt.gz,\n"
        " * MIT licence, see NOTICE): merge r joins the tokens with ids\n"
        " * sd_clip_merges[2r] and sd_clip_merges[2r+1] into token 512 + r. */\n"
        "#include <stdint.h>\n\n"
        "#include \"sd/clip_bpe_data.h\"\n\n"
    )
    write("src/sd/clip_bpe_data.c", head + c_array("uint16_t", "sd_clip_merges", pairs, 16))
    assert len(pairs) == 48894


def write_unicode():
    letters, numbers, spaces = onig_class(r"\p{L}"), onig_class(r"\p{N}"), onig_class(r"\s")
    lower = lower_map()
    decomp = decompositions()
    ccc = reference_ccc()
    comp = compositions(decomp)
    checked = check_nfc(decomp, ccc, comp)
    py_space = python_class(str.isspace)
    py_word = python_class(lambda s: s.isalnum() or s == "_")
    py_digit = python_class(lambda s: unicodedata.category(s) == "Nd")
    # \d is [0-9] of each Nd block; blocks are runs of ten starting at digit 0.
    digit_starts = [c for c in py_digit if unicodedata.decimal(chr(c)) == 0]
    assert all(unicodedata.decimal(chr(c)) == (c - max(s for s in digit_starts if s <= c)) for c in py_digit)

    pool, index = [], []
    for c in sorted(decomp):
        index.append((c, len(pool), len(decomp[c])))
        pool += decomp[c]
    ccc_rows = ranges_with_value(ccc)
    comp_rows = sorted((a, b, c) for (a, b), c in comp.items())

    head = (
        "/* GENERATED by tools/reference/gen_clip_tables.py -- do not edit.\n"
        f" * Tokenizer tables extracted from the reference (tokenizers {__import__('tokenizers').__version__}):\n"
        " * Oniguruma's \\p{L} \\p{N} \\s, the Lowercase normalizer, and NFC data\n"
        f" * (checked on {checked} strings against the reference NFC).\n"
        f" * Prompt-parser tables from Python {sys.version.split()[0]} (Unicode {unicodedata.unidata_version}):\n"
        " * re's \\s and \\w, and the decimal digits (Nd). */\n"
        "#include <stdint.h>\n\n"
        "#include \"sd/unicode_data.h\"\n\n"
    )
    body = ""
    for name, cps in (("uni_letter", letters), ("uni_number", numbers), ("uni_space", spaces),
                      ("uni_py_space", py_space), ("uni_py_word", py_word), ("uni_py_digit", py_digit)):
        rows = ranges(cps)
        body += c_array("uint32_t", name + "_ranges", rows, 8)
        body += f"const size_t {name}_count = {len(rows)};\n\n"
    body += c_array("uint32_t", "uni_lower_map", lower, 9)
    body += f"const size_t uni_lower_count = {len(lower)};\n\n"
    body += c_array("uint32_t", "uni_ccc_ranges", ccc_rows, 9)
    body += f"const size_t uni_ccc_count = {len(ccc_rows)};\n\n"
    body += c_array("uint32_t", "uni_decomp_index", index, 9)
    body += f"const size_t uni_decomp_count = {len(index)};\n"
    body += c_array("uint32_t", "uni_decomp_pool", pool, 10)
    body += "\n" + c_array("uint32_t", "uni_compose", comp_rows, 9)
    body += f"const size_t uni_compose_count = {len(comp_rows)};\n"
    write("src/sd/unicode_data.c", head + body)


def ranges_with_value(values):
    rows = []
    for c in sorted(values):
        if rows and rows[-1][1] == c - 1 and rows[-1][2] == values[c]:
            rows[-1][1] = c
        else:
            rows.append([c, c, values[c]])
    return rows


if __name__ == "__main__":
    write_merges()
    write_unicode()
