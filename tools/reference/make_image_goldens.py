#!/usr/bin/env python3
"""Goldens for src/image (tests/test_image.c, tests/test_infotext.c), from the
libraries A1111 saves images with: Pillow (PngInfo.add_text, JPEG/WebP
encoders, ImageOps.exif_transpose, convert("RGB")) and piexif (dump, insert,
helper.UserComment.dump), plus CPython's json.dumps, repr(float) and
str.isspace that A1111's infotext code relies on.

Writes tests/data/image_goldens.json and the fuzz seeds
fuzz/corpus/image_decode/*. Deterministic: no randomness without a seed.

The save path mirrors A1111 1.10 modules/images.py save_image_with_geninfo
(read from the public repository; written here independently): PNG via
PngInfo.add_text("parameters", text); JPEG/WebP via image.save(quality=80,
lossless=False) and then piexif.insert(piexif.dump({"Exif": {UserComment:
UserComment.dump(text, encoding="unicode")}}))."""
import base64
import io
import json
import math
import os
import random
import struct
import sys

import numpy as np
import piexif
import piexif.helper
import PIL
from PIL import Image, ImageOps, PngImagePlugin

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "image_goldens.json")
CORPUS = os.path.join(ROOT, "fuzz", "corpus", "image_decode")

TEXTS = {
    "ascii": 'a photo of a cat, <lora:detail:0.8>\nNegative prompt: blurry\n'
             'Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 48x32, '
             'Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "detail: 0123456789ab", Version: v1.10.1',
    "latin1": "caf\u00e9 cr\u00e8me \u00fc\u00df \u00ff\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 2, Size: 48x32",
    "cjk_emoji": "\u732b\u306e\u5199\u771f \U0001F431 \u2014 \u201cquoted\u201d\nSteps: 20, Sampler: Euler, CFG scale: 4.5, Seed: 3, Size: 48x32",
    "empty": "",
}


def b64(b):
    return base64.b64encode(b).decode()


def test_image(w=48, h=32):
    """A small RGB picture with smooth areas, edges and noise."""
    rng = np.random.default_rng(1234)
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)
    g = 60 + 3 * x + 2 * y
    b = np.where((x // 8 + y // 8) % 2 == 0, 200, 40)
    img = np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def exif_bytes(text):
    return piexif.dump({"Exif": {piexif.ExifIFD.UserComment: piexif.helper.UserComment.dump(text, encoding="unicode")}})


def png_chunks(data):
    out, off = [], 8
    while off < len(data):
        n = struct.unpack(">I", data[off:off + 4])[0]
        out.append((data[off + 4:off + 8].decode("latin-1"), data[off + 8:off + 8 + n]))
        off += 12 + n
    return out


def riff_chunks(data):
    out, off, end = [], 12, 8 + struct.unpack("<I", data[4:8])[0]
    while off + 8 <= end:
        n = struct.unpack("<I", data[off + 4:off + 8])[0]
        out.append((data[off:off + 4].decode("latin-1"), data[off + 8:off + 8 + n]))
        off += 8 + n + (n & 1)
    return out


def a1111_save(img, text, fmt, quality=80):
    buf = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_text("parameters", text)
        img.save(buf, format="PNG", pnginfo=info)
        return buf.getvalue()
    img.save(buf, format="JPEG" if fmt == "jpeg" else "WEBP", quality=quality, lossless=False)
    out = io.BytesIO()
    piexif.insert(exif_bytes(text), buf.getvalue(), out)
    return out.getvalue()


def metadata_goldens(px):
    img = Image.fromarray(px)
    res = {"exif": [], "png_text": [], "jpeg": [], "webp": []}
    for name, text in TEXTS.items():
        res["exif"].append({"name": name, "text": text, "tiff_b64": b64(exif_bytes(text)[6:])})
        chunks = png_chunks(a1111_save(img, text, "png"))
        (ctype, cdata), = [(t, d) for t, d in chunks if t in ("tEXt", "iTXt", "zTXt")]
        order = [t for t, _ in chunks if t != "IDAT"]
        res["png_text"].append({"name": name, "text": text, "type": ctype, "data_b64": b64(cdata), "order": order})
    for q in (80, 95, 10):
        for name in ("ascii", "cjk_emoji"):
            res["jpeg"].append({"name": name, "quality": q, "file_b64": b64(a1111_save(img, TEXTS[name], "jpeg", q))})
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    res["jpeg_plain_q80_b64"] = b64(buf.getvalue())
    w = a1111_save(img, TEXTS["cjk_emoji"], "webp")
    res["webp"] = {"text": TEXTS["cjk_emoji"],
                   "chunks": [t for t, _ in riff_chunks(w)],
                   "vp8x_b64": b64(riff_chunks(w)[0][1]),
                   "exif_b64": b64([d for t, d in riff_chunks(w) if t == "EXIF"][0])}
    return res


def decode_cases(px):
    """Inputs of several layouts and what PIL's exif_transpose + convert("RGB") make of them."""
    img = Image.fromarray(px)
    cases = {}

    def add(name, data):
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        cases[name] = {"file_b64": b64(data), "width": im.width, "height": im.height,
                       "rgb_b64": b64(np.asarray(im).tobytes())}
        return data

    def save(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        return buf.getvalue()

    add("png_rgb", save(img, "PNG"))
    add("png_interlaced_rgb", _interlaced_png(px))
    add("png_gray8", save(img.convert("L"), "PNG"))
    add("png_gray1", save(img.convert("1"), "PNG"))
    add("png_rgba", save(Image.fromarray(np.dstack([px, (np.arange(px.size // 3) % 251).reshape(px.shape[:2]).astype(np.uint8)])), "PNG"))
    add("png_la", save(img.convert("LA"), "PNG"))
    pal = img.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("png_palette", save(pal, "PNG"))
    add("png_palette_trns", save(pal, "PNG", transparency=3))
    add("png_rgb16", _png16(px))
    add("jpeg_q90", save(img, "JPEG", quality=90))
    add("jpeg_gray", save(img.convert("L"), "JPEG", quality=90))
    add("jpeg_progressive", save(img, "JPEG", quality=85, progressive=True))
    add("jpeg_444", save(img, "JPEG", quality=90, subsampling=0))
    add("webp_lossless", save(img, "WEBP", lossless=True))
    add("webp_lossy", save(img, "WEBP", quality=80))
    small = Image.fromarray(px[:3, :5])
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        add(f"png_orientation_{o}", save(small, "PNG", exif=exif.tobytes()))
    exif = Image.Exif()
    exif[0x0112] = 6
    add("jpeg_orientation_6", save(img, "JPEG", quality=95, exif=exif.tobytes()))
    add("webp_orientation_8", save(img, "WEBP", lossless=True, exif=_exif_with_orientation(8)))
    return cases


def _exif_with_orientation(o):
    exif = Image.Exif()
    exif[0x0112] = o
    return exif.tobytes()


def _png_chunk(t, d):
    import zlib
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)


def _png16(px):
    """16-bit RGB PNG: sample = 257 * v + (x % 7) so the low byte is not a copy."""
    import zlib
    h, w, _ = px.shape
    v = px.astype(np.uint16) * 257 + (np.arange(w, dtype=np.uint16) % 7)[None, :, None]
    raw = b"".join(b"\0" + v[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def _interlaced_png(px):
    """Adam7-interlaced RGB PNG (Pillow does not write interlaced PNGs)."""
    import zlib
    h, w, _ = px.shape
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        sub = px[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        raw += b"".join(b"\0" + sub[y].tobytes() for y in range(sub.shape[0]))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")


def python_goldens():
    rng = random.Random(7)
    floats = [0.1, 0.2 + 0.1, 4.5, 7.5, 0.35, 0.75, 1e-05, 0.0001, 1.5e-07, 123456789.125, 1e16 + 2.0, 1.7976931348623157e308,
              5e-324, 2.5e-300, 0.3333333333333333, 1234567.0001, -2.75, 1e22, 12345678901234567.0]
    floats += [rng.uniform(0, 30) for _ in range(200)] + [rng.uniform(0, 1) for _ in range(200)]
    floats += [math.ldexp(rng.random(), rng.randint(-60, 80)) for _ in range(200)]
    floats = [f for f in floats if f != math.floor(f)]
    strings = ["plain", 'a "quoted" word', "back\\slash", "tab\there", "nl\nline", "cr\r", "\b\f\x01\x1f\x7f",
               "caf\u00e9 \u2028 \u732b \U0001F431", "comma, colon: both", ""]
    return {
        "isspace": [c for c in range(0x110000) if chr(c).isspace()],
        "float_repr": [{"hex": f.hex(), "repr": repr(f)} for f in floats],
        "json_dumps": [{"s": s, "dumped": json.dumps(s, ensure_ascii=False)} for s in strings],
        "splitext_basename": [{"path": p, "root": os.path.splitext(os.path.basename(p))[0]}
                              for p in ["/m/sd_xl_base_1.0.safetensors", "model", "a.b.c", ".hidden", "..x", "x.",
                                        "/dir/", "/v/models/jibMix Illustrious v2.0.safetensors", "r/.cfg.json"]],
    }


def write_corpus(cases, meta):
    os.makedirs(CORPUS, exist_ok=True)
    seeds = {}
    for name in ("png_rgb", "png_palette_trns", "png_rgb16", "png_interlaced_rgb", "jpeg_q90", "jpeg_progressive",
                 "webp_lossless", "webp_lossy", "png_orientation_6", "jpeg_orientation_6", "webp_orientation_8"):
        seeds[name + ".bin"] = base64.b64decode(cases[name]["file_b64"])
    seeds["a1111_jpeg_exif.bin"] = base64.b64decode(meta["jpeg"][0]["file_b64"])
    full = seeds["png_rgb.bin"]
    seeds["png_truncated.bin"] = full[: len(full) // 2]
    seeds["jpeg_truncated.bin"] = seeds["jpeg_q90.bin"][: len(seeds["jpeg_q90.bin"]) * 2 // 3]
    seeds["webp_truncated.bin"] = seeds["webp_lossy.bin"][:60]
    seeds["png_huge_ihdr.bin"] = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
                                  + _png_chunk(b"IEND", b""))
    j = bytearray(seeds["jpeg_q90.bin"])
    sof = j.index(b"\xff\xc0")
    j[sof + 5:sof + 9] = b"\xea\x60\xea\x60"  # a 60000 x 60000 frame header over 48x32 of data
    seeds["jpeg_huge_sof.bin"] = bytes(j)
    seeds["gif.bin"] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    seeds["html.bin"] = b"<!DOCTYPE html><html><body>Not found</body></html>"
    seeds["garbage.bin"] = bytes(random.Random(3).randrange(256) for _ in range(64))
    seeds["empty.bin"] = b""
    seeds["riff_not_webp.bin"] = b"RIFF\x04\x00\x00\x00WAVE"
    for name, data in seeds.items():
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(data)


def main():
    px = test_image()
    meta = metadata_goldens(px)
    cases = decode_cases(px)
    goldens = {
        "generator": f"tools/reference/make_image_goldens.py (Pillow {PIL.__version__}, piexif {piexif.VERSION})",
        "image": {"width": px.shape[1], "height": px.shape[0], "rgb_b64": b64(px.tobytes())},
        **meta,
        "decode": cases,
        **python_goldens(),
    }
    with open(OUT, "w") as f:
        json.dump(goldens, f, indent=1, ensure_ascii=True)
        f.write("\n")
    write_corpus(cases, meta)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes) and {CORPUS}", file=sys.stderr)


if __name__ == "__main__":
    main()
