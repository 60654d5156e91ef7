r"""An independent Python reference of AUTOMATIC1111's prompt handling for SDXL.

Written from the documented behaviour of stable-diffusion-webui 1.10 (the
docstring and doctests of modules/prompt_parser.py parse_prompt_attention,
modules/sd_hijack_clip.py tokenize_line / process_tokens, modules/sd_emphasis.py
EmphasisOriginal, modules/extra_networks.py parse_prompt and the Lora
extension's multipliers), not copied from it. Used by make_tokenizer_goldens.py
(tests/data/prompt_goldens.json) and make_text_goldens.py (weighted, long and
BREAK text-encoder goldens). docs/prompts.md states every rule in full; in short:

- tags: every <kind:args> (kind = \w+, args up to the next '>') is cut out of
  the positive prompt; lora/lyco read name, te and unet multipliers;
- attention: (x) multiplies by 1.1, [x] by 1/1.1, (x:w) by w, nesting
  multiplies, \( \) \[ \] \\ are literal, a lone backslash vanishes,
  unmatched closers are text, unclosed openers apply at the end (all "(" in
  order, then all "["), equal neighbours merge; a whole-word BREAK in plain
  text becomes ["BREAK", -1.0];
- chunks: each run is tokenized on its own (CLIP-L ids, also used for bigG);
  75 tokens per chunk framed as BOS + 75 + EOS with EOS padding at weight 1;
  when a chunk is full and a comma sits within the last 20 tokens, what
  follows the comma moves to the next chunk; BREAK closes the chunk; bigG's
  ids are 0 after the first EOS;
- encoding: per chunk and per encoder, hidden_states[-clip_skip] (2 =
  penultimate, the SDXL default; no final LayerNorm) scaled by the weights,
  then rescaled to the original mean (EmphasisOriginal); chunks concatenate
  on the token axis; pooled = bigG's text_embeds of the first chunk.

Everything works on Python str (codepoints), with the classes of Python's re
module: \s = str.isspace(), \w = str.isalnum() or "_", \d = decimal digits.
"""

import unicodedata

BOS, EOS, COMMA = 49406, 49407, 267
CHUNK = 75
MAX_NESTING = 256  # open ( and [ at once: the C parser refuses deeper prompts
ROUND = 1.1
SQUARE = 1 / 1.1  # A1111 multiplies by 1/1.1 (not a division by 1.1)


def is_word(ch):
    return ch.isalnum() or ch == "_"


def is_digit(ch):
    return unicodedata.category(ch) == "Nd"


# --- extra networks -------------------------------------------------------------

def strip_extra_networks(text):
    """Remove every <kind:args> tag (kind = one or more word characters, args =
    one or more characters up to the next '>'). Returns (text, tags); each tag
    is a dict kind/name/raw/te/unet, multipliers as the Lora extension reads
    them (ValueError for a malformed one)."""
    out, tags, i = [], [], 0
    while i < len(text):
        tag = tag_at(text, i)
        if tag is None:
            out.append(text[i])
            i += 1
            continue
        kind, args, end = tag
        tags.append(describe_tag(kind, args, text[i:end]))
        i = end
    return "".join(out), tags


def tag_at(text, i):
    if text[i] != "<":
        return None
    j = i + 1
    while j < len(text) and is_word(text[j]):
        j += 1
    if j == i + 1 or j >= len(text) or text[j] != ":":
        return None
    gt = text.find(">", j + 1)
    if gt <= j + 1:
        return None
    return text[i + 1:j], text[j + 1:gt], gt + 1


def describe_tag(kind, args, raw):
    positional, named = [], {}
    for item in args.split(":"):
        if item.count("=") == 1:
            key, value = item.split("=")
            named[key] = value
        else:
            positional.append(item)
    tag = {"kind": kind, "name": positional[0] if positional else "", "raw": raw, "te": 1.0, "unet": 1.0}
    if kind in ("lora", "lyco"):
        if not positional:
            raise ValueError("no network name")
        te = finite(positional[1]) if len(positional) > 1 else 1.0
        te = finite(named["te"]) if "te" in named else te
        unet = finite(positional[2]) if len(positional) > 2 else te
        unet = finite(named["unet"]) if "unet" in named else unet
        tag["te"], tag["unet"] = te, unet
    return tag


def finite(s):
    """float(s), refusing what the C parser refuses: underscores, inf, nan, hex."""
    if "_" in s or any(w in s.lower() for w in ("inf", "nan")):
        raise ValueError(s)
    v = float(s)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(s)
    return v


# --- attention --------------------------------------------------------------------

def parse_attention(text):
    """[[text, weight], ...] as parse_prompt_attention returns it."""
    items = []           # [text, weight]
    round_open, square_open = [], []

    def scale(start, m):
        for item in items[start:]:
            item[1] *= m

    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 < len(text) and text[i + 1] in "()[]\\":
                items.append([text[i + 1], 1.0])
                i += 2
            else:
                items.append(["", 1.0])
                i += 1
            continue
        if c in "([":
            if len(round_open) + len(square_open) >= MAX_NESTING:
                raise ValueError("brackets nested too deeply")
            (round_open if c == "(" else square_open).append(len(items))
            i += 1
            continue
        if c == ":":
            w = weight_at(text, i)
            if w is not None and round_open:
                number, end = w
                scale(round_open.pop(), finite(number))
                i = end
                continue
            length = w[1] - i if w is not None else 1
        elif c == ")" and round_open:
            scale(round_open.pop(), ROUND)
            i += 1
            continue
        elif c == "]" and square_open:
            scale(square_open.pop(), SQUARE)
            i += 1
            continue
        elif c in ")]":
            length = 1
        else:
            length = 0
            while i + length < len(text) and text[i + length] not in "\\()[]:":
                length += 1
        add_text_with_breaks(items, text[i:i + length])
        i += length

    for start in round_open:
        scale(start, ROUND)
    for start in square_open:
        scale(start, SQUARE)
    if not items:
        items = [["", 1.0]]
    merged = [items[0]]
    for item in items[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    for _, w in merged:
        if w != w or w in (float("inf"), float("-inf")):
            raise ValueError("non-finite weight")
    return merged


def weight_at(text, i):
    """The ':' weight ')' form at text[i]: (number, index after ')') or None."""
    j = i + 1
    while j < len(text) and text[j].isspace():
        j += 1
    k = j
    if k < len(text) and text[k] in "+-":
        k += 1
    start = k
    while k < len(text) and (text[k] == "." or is_digit(text[k])):
        k += 1
    if k == start:
        return None
    end = k
    while end < len(text) and text[end].isspace():
        end += 1
    if end >= len(text) or text[end] != ")":
        return None
    return text[j:k], end + 1


def add_text_with_breaks(items, t):
    """A run of text; each whole-word BREAK (with the whitespace around it)
    becomes a ["BREAK", -1] item between the parts."""
    pos = 0
    while True:
        q = next_break(t, pos)
        if q is None:
            items.append([t[pos:], 1.0])
            return
        start, end = q, q + 5
        while start > pos and t[start - 1].isspace():
            start -= 1
        while end < len(t) and t[end].isspace():
            end += 1
        items.append([t[pos:start], 1.0])
        items.append(["BREAK", -1.0])
        pos = end


def next_break(t, pos):
    q = t.find("BREAK", pos)
    while q >= 0:
        if (q == 0 or not is_word(t[q - 1])) and (q + 5 == len(t) or not is_word(t[q + 5])):
            return q
        q = t.find("BREAK", q + 1)
    return None


# --- chunks ---------------------------------------------------------------------------

def make_chunks(tokenize, fragments, backtrack=20, comma=COMMA, find_embedding=None):
    """tokenize_line: returns (chunks, token_count); each chunk is a dict with
    ids_l, ids_g and weights (77 each). tokenize(list of str) -> list of id lists.

    Textual-inversion embeddings: find_embedding(ids, pos) gives (name,
    vectors, length) of the embedding whose name's ids are ids[pos:pos+length]
    (A1111's find_embedding_at_position), or None. The comma bookkeeping and
    the backtrack run on ids[pos] first, as for any token; then the
    embedding's vectors take that many slots (token 0) at the fragment's
    weight, after closing the chunk when they do not fit in it. Each chunk
    then also has "fixes": [(slot, name)] of the embeddings placed while it
    was being filled; a backtrack moves slots into the next chunk but leaves
    the fixes where they were made (A1111 keeps chunk.fixes)."""
    chunks = []
    state = {"tokens": [], "mults": [], "fixes": [], "last_comma": -1, "count": 0}

    def close(is_last):
        tokens, mults = state["tokens"], state["mults"]
        state["count"] += len(tokens) if is_last else CHUNK
        pad = CHUNK - len(tokens)
        ids = [BOS] + tokens + [EOS] * pad + [EOS]
        chunk = {"ids_l": ids, "ids_g": te2_ids(ids), "weights": [1.0] + mults + [1.0] * pad + [1.0]}
        if find_embedding:
            chunk["fixes"] = state["fixes"]
        chunks.append(chunk)
        state.update(tokens=[], mults=[], fixes=[], last_comma=-1)

    token_lists = tokenize([text for text, _ in fragments])
    for (text, weight), ids in zip(fragments, token_lists):
        if text == "BREAK" and weight == -1:
            close(False)
            continue
        pos = 0
        while pos < len(ids):
            token = ids[pos]
            n = len(state["tokens"])
            if token == comma:
                state["last_comma"] = n
            elif backtrack and n == CHUNK and state["last_comma"] != -1 and n - state["last_comma"] <= backtrack:
                cut = state["last_comma"] + 1
                moved_t, moved_m = state["tokens"][cut:], state["mults"][cut:]
                del state["tokens"][cut:], state["mults"][cut:]
                close(False)
                state["tokens"], state["mults"] = moved_t, moved_m
            if len(state["tokens"]) == CHUNK:
                close(False)
            found = find_embedding(ids, pos) if find_embedding else None
            if found is None:
                state["tokens"].append(token)
                state["mults"].append(weight)
                pos += 1
                continue
            name, vectors, length = found
            if len(state["tokens"]) + vectors > CHUNK:
                close(False)
            state["fixes"].append((len(state["tokens"]), name))
            state["tokens"] += [0] * vectors
            state["mults"] += [weight] * vectors
            pos += length
    if state["tokens"] or not chunks:
        close(True)
    return chunks, state["count"]


def te2_ids(ids):
    """bigG's ids of a chunk: process_tokens sets everything after the first
    EOS to the pad id 0."""
    first_eos = ids.index(EOS)
    return [t if k <= first_eos else 0 for k, t in enumerate(ids)]


def chunk_tokens(runs, tokenize, comma_id, backtrack):
    """make_chunks for a tokenizer of one text at a time: [(ids, weights)]."""
    chunks, _ = make_chunks(lambda texts: [tokenize(t) for t in texts], runs, backtrack, comma_id)
    return [(c["ids_l"], c["weights"]) for c in chunks]


# --- weights on the encoder output ----------------------------------------------------------

def emphasis_original(z, weights):
    """A1111's "Original" emphasis on one chunk's hidden states z (torch,
    [77, C], one encoder): scale each token's row by its weight (float32),
    then rescale everything so the mean over all 77*C values is unchanged."""
    import torch

    w = torch.tensor(weights, dtype=torch.float32, device=z.device).reshape(-1, 1)
    before = z.mean()
    scaled = z * w
    return scaled * (before / scaled.mean())


def fixed_rows(model, fixes, vectors):
    """A forward hook on the encoder's token embedding that puts each fix's
    vectors on the rows after its slot (BOS first), as many as fit: A1111's
    EmbeddingsWithFixes. vectors: name -> [n, width] tensor for this encoder."""
    token_embedding = next(m for name, m in model.named_modules() if name.endswith("embeddings.token_embedding"))

    def hook(module, inputs, out):
        out = out.clone()
        for slot, name in fixes:
            emb = vectors[name]
            n = min(out.shape[1] - slot - 1, emb.shape[0])
            out[0, slot + 1:slot + 1 + n] = emb[:n].to(out.dtype)
        return out

    return token_embedding.register_forward_hook(hook)


def encode(te1, te2, chunks, clip_skip, fixes=None, vectors=None):
    """SDXL conditioning of [(ids, weights)] chunks: per chunk, both encoders'
    hidden_states[-clip_skip] (no final LayerNorm; 0 means 2), each weighted
    with emphasis_original on its own, concatenated on the feature axis
    (CLIP-L first); chunks concatenated on the token axis. The pooled vector is
    bigG's text_embeds of the first chunk. Returns ([1, 77*k, W1+W2], [1, P]).
    With embeddings: fixes[i] are chunk i's fixes, vectors[name] = (clip_l
    [n, W1], clip_g [n, W2]); their vectors replace the token embeddings of
    the rows after each fix's slot (fixed_rows)."""
    import torch

    n = clip_skip or 2
    contexts, pooled = [], None
    for i, (ids, weights) in enumerate(chunks):
        hooks = []
        if fixes and fixes[i]:
            hooks = [fixed_rows(te1, fixes[i], {k: v[0] for k, v in vectors.items()}),
                     fixed_rows(te2, fixes[i], {k: v[1] for k, v in vectors.items()})]
        out1 = te1(torch.tensor([ids]), output_hidden_states=True)
        out2 = te2(torch.tensor([te2_ids(ids)]), output_hidden_states=True)
        for h in hooks:
            h.remove()
        h1 = emphasis_original(out1.hidden_states[-n][0], weights)
        h2 = emphasis_original(out2.hidden_states[-n][0], weights)
        contexts.append(torch.cat([h1, h2], dim=-1))
        if pooled is None:
            pooled = out2.text_embeds[0]
    return torch.cat(contexts, dim=0)[None], pooled[None]
