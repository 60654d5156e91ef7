"""Goldens of the C tokenizer (src/sd/tokenizer.c) and prompt parser (src/sd/prompt.c).

Writes
  tests/data/tokenizer_goldens.json  >= 500 texts with transformers' CLIPTokenizer ids
  tests/data/prompt_goldens.json     A1111 prompts: tags, weighted runs, 77-token chunks

Tokenizer reference: transformers 5's CLIPTokenizer loaded the way diffusers
loads SDXL's `tokenizer` (pad <|endoftext|>) and `tokenizer_2` (pad "!"), from
the folders clip_vocab.py writes (the harness's configs). transformers 5 has
only this tokenizers-backed CLIPTokenizer: it never uses ftfy (installed in the
venv, and checked unused below) and has no BasicTokenizer fallback; its
normalizer is NFC + \\s+ -> " " + lowercase. Each case stores
  l, g      the untruncated input_ids (with BOS/EOS) of tokenizer / tokenizer_2
            (g only where it differs: literal "!" are id 0 in tokenizer_2)
  l77, g77  padding="max_length", max_length=77, truncation=True (long texts
            and every fourth case)
  text or hex  the input; hex (UTF-8 bytes, possibly invalid) where the text has
            a NUL or is not valid UTF-8: the reference then tokenizes
            bytes.decode("utf-8", "replace"), whose codepoints are in decoded.
The top-level "vocab" lists [id, token] pairs of the reference vocabulary.

Prompt reference: a1111_prompt.py (A1111's documented rules), with CLIP-L ids
from the same tokenizer.

Run: tools/reference/.venv/bin/python tools/reference/make_tokenizer_goldens.py
"""

import inspect
import json
import os
import random
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import a1111_prompt as A  # noqa: E402
import clip_vocab  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZER_OUT = os.path.join(REPO, "tests", "data", "tokenizer_goldens.json")
PROMPT_OUT = os.path.join(REPO, "tests", "data", "prompt_goldens.json")


def load_tokenizers():
    from transformers import CLIPTokenizer
    import transformers.models.clip.tokenization_clip as clip_module

    assert "ftfy" not in inspect.getsource(clip_module), "this transformers consults ftfy: revisit the goldens"
    tmp = tempfile.mkdtemp(prefix="clip-tok-")
    try:
        toks = []
        for sub, pad in (("tokenizer", clip_vocab.EOS), ("tokenizer_2", "!")):
            folder = os.path.join(tmp, sub)
            clip_vocab.write_tokenizer_configs(folder, pad)
            clip_vocab.write_vocab_files(folder)
            toks.append(CLIPTokenizer.from_pretrained(folder))
        return toks
    finally:
        shutil.rmtree(tmp)


# --- tokenizer texts -----------------------------------------------------------

WORDS = """masterpiece best quality ultra detailed photo portrait of a young woman man girl boy cat dog
astronaut riding horse on mars city street night rain neon lights cinematic lighting volumetric fog
sharp focus bokeh depth field 8k 4k uhd hdr raw highly intricate trending artstation concept art by greg
rutkowski alphonse mucha studio ghibli anime style oil painting watercolor sketch lineart 1girl solo long
hair blue eyes smile looking at viewer red dress white background forest mountain lake sunset golden hour
low worst jpeg artifacts blurry watermark signature text bad anatomy extra fingers deformed ugly""".split()

PUNCT = list(",.!?;:'\"()[]{}<>-_=+*/\\|@#$%^&~`") + ["...", "!!!", "??", "--", "''", ",,", "!?", "&&"]

SAMPLES = [
    "café", "naïve", "Ångström", "straße", "ſ", "ŉ", "ǅ", "ﬁ", "Ⅻ", "İstanbul", "ıi", "ΟΔΟΣ ΣΑΣ", "ς",
    "日本語", "中文字", "漢字テスト", "ひらがな", "カタカナ", "한국어", "\u1100\u1161\u11a8", "привет мир", "καλημέρα",
    "مرحبا", "שלום", "नमस्ते", "สวัสดี", "ሰላም", "ꦲꦤꦕꦫꦏ", "😀", "🎨🔥", "👍🏽", "👨\u200d👩\u200d👧", "🇯🇵", "❤️",
    "©®™", "°±×÷", "€£¥", "§¶•…", "“quoted”", "‘single’", "«guillemets»", "–—", "∑∫√∞", "≈≠≤≥", "ＡＢＣ１２３！",
    "e\u0301", "a\u0308\u0323", "c\u0327", "A\u030a", "\u0301alone", "o\u0323\u031b\u0301", "\u1e69\u0307",
    "zero\u200bwidth", "\u200c\u200d", "\ufeffbom", "tab\there", "new\nline", "cr\r\nlf", "nb\u00a0sp",
    "em\u2003space", "ideo\u3000space", "line\u2028sep", "ogham\u1680space", "mongolian\u180evs", "\x1c\x1d\x1e\x1f",
    "ctrl\x01\x07\x1b\x7f", "nel\x85", "٠١٢٣٤٥", "३४५", "²³¹", "½¼⅓", "ⅠⅡⅫ", "①②", "𝟘𝟙𝟚", "𝐀𝐁𝐂", "\ue000\uf8ff",
    "\U0001e030\U0001e031", "\U00031350", "\U0002b740", "\u0560\u0588", "\U0001df00", "\U0001fae8", "\U00011938",
    "\u07fd", "\u0898\u0899", "\u08ca", "\U000e0001", "\U0010fffd", "\uffff", "\ufffd", "<|endoftext|>",
    "<|startoftext|>", "<|ENDOFTEXT|>", "<|STARTOFTEXT|>", "<|", "|>", "it's", "IT'S", "don't", "we're", "they've",
    "i'm", "you'll", "he'd", "rock'n'roll", "''s", "'re'", "y'all", "o'clock", "'", "’s", "&amp;", "&lt;b&gt;",
    "&#39;", "&quot;hi&quot;", "&nbsp;", "1024x768", "3.14", "-2.5e10", "1,000,000", "#hashtag", "@user",
    "https://example.com/a?b=c&d=e", "user@example.com", "C:\\path\\file.png", "(masterpiece:1.2)", "[[blurry]]",
    "<lora:detail:0.8>", "BREAK", "score_9, score_8_up", "SDXL", "CamelCaseWord", "UPPER lower MiXeD",
]

HAND_TEXTS = [
    "", " ", "   ", "\t\n", "\u3000", "a", "A", "!", "!!", "!!!", "! !! !!!", "hello world!", "hello!world",
    "wow!!! amazing!!!", "!hello", "?!", "...", "a photo of a cat", "A Photo Of A Cat", "  leading and trailing  ",
    "multiple     spaces\tand\ttabs\nand\nnewlines", "1", "12", "123456789", "2024", "1024x768", "3.14159",
    "v1.5 v2.0 sdxl1.0", "4k, 8k, 16k", "50mm f/1.8", "100%", "$100", "#1", "it's a cat's toy", "I'M HERE",
    "don't won't can't shouldn't", "we're they've i'm you'll he'd", "'s't're've'm'll'd", "''quoted''",
    "\"double quotes\"", "&amp; &lt; &gt; &quot; &#39;", "&amp;amp;", "AT&T", "rock & roll", "café au lait",
    "cafe\u0301 au lait", "ÀÉÎÕÜ àéîõü", "Ǆemal ǅ ǆ", "ΣΊΣΥΦΟΣ", "ﬁne ﬂow", "ＦＵＬＬＷＩＤＴＨ", "日本語のテキスト",
    "東京タワー at night", "中文提示词，高质量", "한국어 프롬프트", "Привет, мир!", "Γειά σου Κόσμε", "مرحبا بالعالم",
    "שלום עולם", "नमस्ते दुनिया", "สวัสดีชาวโลก", "emoji 😀 party 🎉🎊", "👨‍👩‍👧‍👦 family", "flags 🇺🇸🇯🇵🇫🇷",
    "skin 👋🏻👋🏿", "❤️🧡💛💚💙💜", "©2024 ™ ®", "±×÷√∞", "→←↑↓", "★☆♥♦", "“smart quotes” ‘here’", "em—dash en–dash",
    "…ellipsis", "«French» „German“", "ｈｅｌｌｏ", "zero\u200bwidth\u200bspace", "soft\u00adhyphen",
    "<|endoftext|>", "<|startoftext|>", "a<|endoftext|>b", "x<|startoftext|>y!z", "<|ENDOFTEXT|>",
    "<|endoftext|><|endoftext|>", "!<|endoftext|>!", "<<|endoftext|>>", "<|endoftext|", "e<|endoftext|>\u0301",
    "e!\u0301", "(masterpiece:1.2), best quality, [blurry]", "<lora:add_detail:0.8> portrait",
    "score_9, score_8_up, score_7_up, source_anime", "1girl, solo, long hair, looking at viewer",
    "a_b_c snake_case", "kebab-case-words", "dots.in.words", "slash/separated/words", "back\\slash",
    "tilde~and~caret^", "under_score__double", "MiXeD CaSe WoRdS", "ALLCAPS PROMPT", "x" * 40,
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "antidisestablishmentarianism" * 3, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
]


def long_texts(rng):
    civitai = ("masterpiece, best quality, ultra detailed, 8k wallpaper, cinematic lighting, volumetric fog, a young "
               "woman with long silver hair, blue eyes, freckles, gentle smile, wearing a dark green cloak with golden "
               "embroidery, leather gloves, holding an ancient map, standing on a wooden bridge over a mountain river, "
               "autumn forest, red and orange leaves, sun rays through the trees, distant snowy peaks, small village, "
               "smoke from chimneys, flock of birds in the sky, reflections in the water, wet stones, moss, ferns")
    out = [civitai, civitai.upper(), civitai + ", " + civitai, " ".join(["a"] * 200), "a" * 2000, "!" * 200,
           "! " * 120, ", ".join(WORDS), "日本語" * 60, "😀" * 100, "1234567890" * 20, "..." * 100,
           "it's " * 50, "<|endoftext|> " * 40, "&amp; " * 60]
    for _ in range(15):
        out.append(" ".join(rng.choice(WORDS + PUNCT) for _ in range(rng.randint(80, 200))))
    return out


def random_texts(rng, n):
    seps = [" ", " ", " ", "", ", ", "  ", "\n", "\t", "\u3000"]
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 12)):
            kind = rng.random()
            if kind < 0.45:
                w = rng.choice(WORDS)
                parts.append(w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.1 else w)
            elif kind < 0.65:
                parts.append("".join(rng.choice(PUNCT) for _ in range(rng.randint(1, 4))))
            elif kind < 0.9:
                s = rng.choice(SAMPLES)
                a = rng.randint(0, len(s) - 1)
                parts.append(s[a:a + rng.randint(1, len(s))])
            else:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            parts.append(rng.choice(seps))
        out.append("".join(parts))
    return out


def random_codepoint_texts(rng, n):
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    return ["".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 8))) for _ in range(n)]


def reference_edge_texts(rng):
    """Characters where the reference's Unicode data differs from Python's: the
    C tables follow the reference, these cases prove it."""
    import regex
    import unicodedata
    from tokenizers import normalizers

    lower = normalizers.Lowercase()
    letters_py = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and regex.match(r"\p{L}", chr(c))]
    sample_letters = rng.sample(letters_py, 400)
    lower_diff = [c for c in range(0x10000, 0x1F000) if lower.normalize_str(chr(c)) != chr(c).lower()]
    lower_diff += [c for c in range(0x0, 0x10000)
                   if not 0xD800 <= c <= 0xDFFF and lower.normalize_str(chr(c)) != chr(c).lower()]
    marks = [c for c in range(0x300, 0x20000) if unicodedata.combining(chr(c))]
    out = []
    for i in range(0, 400, 10):
        out.append("x" + "".join(chr(c) for c in sample_letters[i:i + 10]) + "1")
    for i in range(0, min(len(lower_diff), 60), 6):
        out.append("".join(chr(c) for c in lower_diff[i:i + 6]))
    for _ in range(30):
        out.append("a" + "".join(chr(rng.choice(marks)) for _ in range(rng.randint(1, 5))) + "b")
    return out


def invalid_utf8():
    fixed = [b"\xff", b"\xc0\xaf", b"\xe2\x82", b"abc\xe2\x82", b"\xe2\x82abc", b"\xed\xa0\x80", b"\xed\x9f\xbf",
             b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80", b"\xf4\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf5\x80", b"\x80\x80",
             b"\xe0\x80\x80", b"\xe0\xa0", b"a\xc3", b"\xc3(", b"\xf0\x90\x80(", b"\xc1\xbf", b"\xf8\x88\x80\x80\x80",
             b"caf\xe9", b"\xef\xbb\xbfbom", b"nul\x00byte", b"\x00", b"a\x00b\x00c"]
    rng = random.Random(99)
    fixed += [bytes(rng.randrange(256) for _ in range(rng.randint(1, 12))) for _ in range(15)]
    return fixed


def vocab_samples(t1):
    """[id, token] for the byte symbols, their </w> forms, the specials and a
    sample of merges: the C code derives the vocabulary from the merge list."""
    rng = random.Random(7)
    inverse = {i: tok for tok, i in t1.get_vocab().items()}
    ids = list(range(0, 520)) + rng.sample(range(520, 49406), 300) + list(range(49390, 49408))
    return [[i, inverse[i]] for i in ids]


def tokenizer_cases(t1, t2):
    rng = random.Random(20260101)
    texts = HAND_TEXTS + SAMPLES + long_texts(rng) + random_texts(rng, 260) + random_codepoint_texts(rng, 60)
    texts += reference_edge_texts(rng)
    cases = []
    for i, item in enumerate(texts + invalid_utf8()):
        raw = item if isinstance(item, bytes) else item.encode("utf-8")
        text = raw.decode("utf-8", "replace")
        case = {"hex": raw.hex(), "decoded": [ord(c) for c in text]} if (isinstance(item, bytes) or "\x00" in text) \
            else {"text": text}
        case["l"] = t1(text)["input_ids"]
        g = t2(text)["input_ids"]
        if g != case["l"]:
            case["g"] = g
        if len(case["l"]) > 77 or i % 4 == 0:
            case["l77"] = t1(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
            case["g77"] = t2(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
        cases.append(case)
    return cases


# --- prompts ----------------------------------------------------------------------------

A1111_DOCTESTS = [  # the documented cases of parse_prompt_attention
    "normal text", "an (important) word", "(unbalanced", "\\(literal\\]", "(unnecessary)(parens)",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
]

TAGS = ", ".join(f"tag{i} word{i}" for i in range(40))  # 2 tokens + comma per tag


def prompt_inputs():
    words75 = " ".join(["cat"] * 75)
    p = [(s, {}) for s in A1111_DOCTESTS]
    p += [(s, {}) for s in [
        "", " ", "a cat", "(a:1.3)", "(a: 1.3 )", "(a:+1.3)", "(a:-1)", "(a:.5)", "(a:1.)", "(a:0)", "[a]",
        "[[a]]", "(((a)))", "((a:1.2))", "[a:1.2]", "a:1.2)", "(a:1.2", "(a:１.５)", "(a:١.٥)", "(a:1.2 x)",
        "\\(a\\)", "\\[a\\]", "a\\\\b", "a\\b", "\\", "(\\))", "\\:x", "((a)", "a)", "a]", "[a", ")(", "][",
        "(a]", "[a)", "a BREAK b", "aBREAKb", "a BREAKb", "BREAK", "BREAK BREAK", "a\nBREAK\nb", "(a BREAK b)",
        "(BREAK:0)", "a break b", "a_BREAK b", "BREAK, x", "éBREAK x", "a  BREAK  b", "[BREAK]", "\\(BREAK\\)",
        "(BRE\\AK:-1)", "<lora:foo:0.8> a cat", "<lora:foo> a", "a <lora:foo:0.5:0.7> b", "<lora:foo:te=0.5:unet=0.7>",
        "<lora:foo:1:unet=0.3>", "<lyco:bar:0.6>", "<hypernet:x:1>", "<lora:a:b=c=d>", "<lora::1>",
        "<lora:foo:0.8", "<lora foo:0.8>", "<lora:>", "<:foo>", "<lora:foo:0.8>>", "<lora:f<o:1>", "<LORA:x:1>",
        "<lora:x: 0.25 >", "<lora:x:1e-1>", "<lora:日本:0.5>", "<lora:x:1>", "(<lora:x:1> cat:1.2)",
        "a (cat, dog:1.2), [bird]", "(red cat:1.1) BREAK (blue dog:0.9)", "photo, (日本語:1.2), café",
        "<lora:foo:abc>", "(a:..)", "(a:1.2.3)", "<lora:foo:1_0>", "<lora:foo:inf>", "<lora:te=1>",
        "(" * 300 + "a", "[" * 256 + "a",
        words75, words75 + " dog", words75 + ", dog", " ".join(["cat"] * 150),
        "cat, " * 40, "a " * 54 + ", " + "b " * 30, "a " * 55 + ", " + "b " * 30,
        "a " * 74 + ", b c", "a " * 75 + ", b", "a " * 60 + "BREAK b", "a " * 75 + "BREAK b",
        "BREAK a", "a BREAK", TAGS, "(" + TAGS + ":1.1)", TAGS + " BREAK " + TAGS,
    ]]
    p += [(TAGS, {"backtrack": 0}), (TAGS, {"backtrack": 5}), ("(a:1.2) BREAK b", {"emphasis": False}),
          ("<lora:x:0.5> a", {"strip": False}), ("", {"strip": False}), ("<lora:x:1>", {}),
          (" ".join(["cat"] * 160) + ", dog", {"backtrack": 100})]
    return p


def prompt_case(t1, prompt, opts):
    strip, emphasis, backtrack = opts.get("strip", True), opts.get("emphasis", True), opts.get("backtrack", 20)
    case = {"prompt": prompt, "strip": strip, "emphasis": emphasis, "backtrack": backtrack}
    try:
        text, tags = A.strip_extra_networks(prompt) if strip else (prompt, [])
        fragments = A.parse_attention(text) if emphasis else [[text, 1.0]]
    except ValueError:
        case["error"] = True
        return case
    chunks, count = A.make_chunks(lambda texts: t1(texts, add_special_tokens=False)["input_ids"], fragments,
                                  backtrack)
    case.update(text=text, is_empty=text == "", networks=tags, fragments=fragments, chunks=chunks,
                token_count=count)
    return case


def main():
    t1, t2 = load_tokenizers()
    cases = tokenizer_cases(t1, t2)
    assert len(cases) >= 500, len(cases)
    import tokenizers
    import transformers
    doc = {"reference": f"transformers {transformers.__version__} CLIPTokenizer (tokenizers {tokenizers.__version__}),"
                        " SDXL tokenizer (l, pad 49407) and tokenizer_2 (g, pad '!' = 0)",
           "vocab": vocab_samples(t1), "cases": cases}
    with open(TOKENIZER_OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=True, separators=(",", ":"))
        f.write("\n")
    prompts = [prompt_case(t1, p, o) for p, o in prompt_inputs()]
    with open(PROMPT_OUT, "w", encoding="utf-8") as f:
        json.dump({"reference": "tools/reference/a1111_prompt.py", "cases": prompts}, f, ensure_ascii=True,
                  separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} tokenizer cases ({os.path.getsize(TOKENIZER_OUT)} bytes) and "
          f"{len(prompts)} prompt cases ({os.path.getsize(PROMPT_OUT)} bytes)")


if __name__ == "__main__":
    main()
