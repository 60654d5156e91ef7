"""The demo model's synthetic world: captioned pictures of one flat shape on a
flat background, drawn here and nowhere else.

Owns the vocabulary the demo model learns (tests/data/demo/scenes.json is
written from it, and the C meaning tests read that file), the scene sampler,
the caption grammar and the renderer. train_demo_model.py trains on these
pictures; make_demo_goldens.py draws its img2img init image with them.

A scene: one shape (circle, square, triangle or star, upright) of one palette
colour, on a background of another palette colour, at one of nine places
(the centres of a 3 x 3 grid, jittered) with a size r of 13-21 % of the
picture's side. Every shape's bounding box is centred on its place and is
about 2r on a side.

Captions name a subset of the scene ("a red circle on a blue background, top
left"); each part may be left out, and what a caption leaves out is free in
the picture (position anywhere, any colour). The empty caption is the
unconditional one (all-zero embeddings, as SDXL pipelines encode an empty
negative prompt).
"""

import math

import torch

# name -> sRGB, far apart from each other (the meaning tests classify pixels
# by the nearest palette colour)
PALETTE = {
    "red": (220, 30, 35),
    "orange": (250, 140, 10),
    "yellow": (250, 220, 40),
    "green": (30, 160, 60),
    "blue": (35, 75, 225),
    "purple": (145, 55, 185),
    "white": (245, 245, 245),
    "black": (20, 20, 25),
}
COLOURS = list(PALETTE)
SHAPES = ["circle", "square", "triangle", "star"]
# phrase -> (x, y) centre as a fraction of the side (y down)
PLACES = {
    "top left": (0.25, 0.25), "at the top": (0.5, 0.25), "top right": (0.75, 0.25),
    "on the left": (0.25, 0.5), "in the center": (0.5, 0.5), "on the right": (0.75, 0.5),
    "bottom left": (0.25, 0.75), "at the bottom": (0.5, 0.75), "bottom right": (0.75, 0.75),
}
PLACE_NAMES = list(PLACES)
SIZE_RANGE = (0.13, 0.21)  # r / side
JITTER = 0.04              # place jitter / side, each axis
KEEP = {"colour": 0.85, "shape": 0.85, "background": 0.8, "place": 0.8}
EMPTY_CAPTION = 0.1        # share of captions left empty (unconditional)
COLOUR_ONLY = 0.04         # share of captions that are a colour alone

# Shape geometry in units of r: square half side, triangle and star outer
# radii, the star's inner radius (fraction of its outer one).
SQUARE_HALF = 0.85
TRIANGLE_R = 1.2
STAR_R, STAR_INNER = 1.25, 0.45
SPIKE_REACH = 1.5  # a spike's sides run on 1.5 times the tip-to-inner-corner length


def scenes(n, gen):
    """n random scenes as a dict of tensors (indices into the lists above)."""
    bg = torch.randint(len(COLOURS), (n,), generator=gen)
    fg = (bg + torch.randint(1, len(COLOURS), (n,), generator=gen)) % len(COLOURS)  # never the background
    place = torch.randint(len(PLACES), (n,), generator=gen)
    anchor = torch.tensor([PLACES[p] for p in PLACE_NAMES])[place]
    centre = anchor + (torch.rand(n, 2, generator=gen) * 2 - 1) * JITTER
    size = SIZE_RANGE[0] + torch.rand(n, generator=gen) * (SIZE_RANGE[1] - SIZE_RANGE[0])
    return {"fg": fg, "bg": bg, "shape": torch.randint(len(SHAPES), (n,), generator=gen),
            "place": place, "centre": centre, "size": size}


def _a(words):
    return ("an " if words[0] in "aeiou" else "a ") + words


def caption(fg=None, shape=None, bg=None, place=None):
    """The caption of the named parts (None: left out); "" when all are."""
    if fg is None and shape is None and bg is None and place is None:
        return ""
    if shape is None and bg is None and place is None:
        return fg                           # a colour alone: "red"
    text = _a(" ".join(([fg] if fg else []) + [shape or "shape"]))
    if bg:
        text += f" on {_a(bg)} background"
    if place:
        text += f", {place}"
    return text


def captions(sc, gen):
    """One caption per scene and what it says: (texts, parts [n, 4]), parts
    holding the indices of colour, shape, background and place, -1 where
    the caption leaves that part out. Each part is kept with its KEEP
    probability; EMPTY_CAPTION of the captions are empty and COLOUR_ONLY
    name the shape's colour alone (as a negative prompt does)."""
    n = len(sc["fg"])
    keys = ("fg", "shape", "bg", "place")
    parts = torch.stack([sc[k] for k in keys], dim=1).clone()
    keep = torch.rand(n, 4, generator=gen) < torch.tensor([KEEP[k] for k in KEEP])
    style = torch.rand(n, generator=gen)
    keep[style < EMPTY_CAPTION] = False
    keep[(style >= EMPTY_CAPTION) & (style < EMPTY_CAPTION + COLOUR_ONLY)] = torch.tensor([True, False, False, False])
    parts[~keep] = -1
    texts = [caption(*(names[j] if j >= 0 else None for names, j in zip((COLOURS, SHAPES, COLOURS, PLACE_NAMES), row)))
             for row in parts.tolist()]
    return texts, parts


def full_caption(sc, i):
    return caption(COLOURS[sc["fg"][i]], SHAPES[sc["shape"][i]], COLOURS[sc["bg"][i]],
                   PLACE_NAMES[sc["place"][i]])


# ---- drawing ----------------------------------------------------------------------

def _convex_sdf(px, py, verts):
    """Signed distance (negative inside; exact inside, a lower bound outside)
    to the convex polygon with vertices verts [B, K, 2] in clockwise screen
    order (y down), for points px, py [B, H, W]."""
    d = None
    k = verts.shape[1]
    for j in range(k):
        a, b = verts[:, j], verts[:, (j + 1) % k]
        ex, ey = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        norm = torch.sqrt(ex * ex + ey * ey)
        nx, ny = (ey / norm)[:, None, None], (-ex / norm)[:, None, None]  # outward for clockwise on screen
        dj = (px - a[:, 0, None, None]) * nx + (py - a[:, 1, None, None]) * ny
        d = dj if d is None else torch.maximum(d, dj)
    return d


def _ring(cx, cy, radius, angles):
    """Points radius * (cos, -sin)(angle) around (cx, cy): [B, K, 2]; angles in
    degrees, counted anticlockwise from +x as seen on screen."""
    a = torch.tensor([math.radians(v) for v in angles])
    return torch.stack([cx[:, None] + radius[:, None] * torch.cos(a),
                        cy[:, None] - radius[:, None] * torch.sin(a)], dim=-1)


def _shape_sdf(kind, px, py, cx, cy, r):
    if kind == "circle":
        return torch.sqrt((px - cx[:, None, None]) ** 2 + (py - cy[:, None, None]) ** 2) - r[:, None, None]
    if kind == "square":
        h = (SQUARE_HALF * r)[:, None, None]
        return torch.maximum((px - cx[:, None, None]).abs(), (py - cy[:, None, None]).abs()) - h
    if kind == "triangle":  # apex up, bounding box centred on (cx, cy)
        R = TRIANGLE_R * r
        return _convex_sdf(px, py, _ring(cx, cy + R / 4, R, [90, -30, -150]))
    # star: five spikes and the pentagon between them, bounding box centred
    R = STAR_R * r
    cy = cy + R * (1 - math.cos(math.pi / 5)) / 2
    outer = _ring(cx, cy, R, [90 - 72 * k for k in range(5)])
    inner = _ring(cx, cy, STAR_INNER * R, [54 - 72 * k for k in range(5)])
    d = _convex_sdf(px, py, inner)
    for k in range(5):
        # each spike reaches past the pentagon's edge along the star's own
        # edge lines, so that the pieces overlap and leave no seam
        tip = outer[:, k]
        right, left = (tip + SPIKE_REACH * (inner[:, j] - tip) for j in (k, (k - 1) % 5))
        d = torch.minimum(d, _convex_sdf(px, py, torch.stack([tip, right, left], dim=1)))
    return d


def coverage(sc, side, window=None):
    """[B, h, w] share of each pixel the shape covers (anti-aliased over one
    pixel) at side x side pixels; window (x0, y0, w, h): that part only."""
    x0, y0, w, h = window or (0, 0, side, side)
    n = len(sc["fg"])
    ys = torch.arange(y0, y0 + h, dtype=torch.float32) + 0.5
    xs = torch.arange(x0, x0 + w, dtype=torch.float32) + 0.5
    py, px = (t.expand(n, h, w) for t in torch.meshgrid(ys, xs, indexing="ij"))
    cx, cy = sc["centre"][:, 0] * side, sc["centre"][:, 1] * side
    r = sc["size"] * side
    sdf = torch.empty(n, h, w)
    for k, kind in enumerate(SHAPES):
        sel = sc["shape"] == k
        if sel.any():
            sdf[sel] = _shape_sdf(kind, px[sel], py[sel], cx[sel], cy[sel], r[sel])
    return (0.5 - sdf).clamp(0, 1)


def render(sc, side, window=None):
    """Pictures of the scenes as [B, 3, h, w] in [-1, 1] (the VAE's range)."""
    alpha = coverage(sc, side, window)[:, None]
    rgb = torch.tensor([PALETTE[c] for c in COLOURS], dtype=torch.float32) / 127.5 - 1
    fg, bg = rgb[sc["fg"]][:, :, None, None], rgb[sc["bg"]][:, :, None, None]
    return bg + (fg - bg) * alpha


def to_uint8(images):
    """[-1, 1] [B, 3, H, W] -> uint8 [B, H, W, 3], rounded as diffusers' image processor."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def shape_measures(side=256, n=64):
    """Per shape, the mean over random scenes of the two measures the meaning
    tests classify shapes by (tests/support/scene_read.h): fill = pixels /
    bounding-box area and centroid = (mean row - top) / (bottom - top), of
    the pixels the shape covers more than half of."""
    out = {}
    for k, name in enumerate(SHAPES):
        sc = scenes(n, torch.Generator().manual_seed(k))
        sc["shape"][:] = k
        fills, centroids = [], []
        for mask in coverage(sc, side) > 0.5:
            ys, xs = torch.nonzero(mask, as_tuple=True)
            top, bottom, left, right = ys.min(), ys.max(), xs.min(), xs.max()
            fills.append(len(ys) / ((bottom - top + 1) * (right - left + 1)).item())
            centroids.append(((ys.double().mean() - top) / (bottom - top)).item())
        out[name] = {"fill": round(sum(fills) / n, 4), "centroid": round(sum(centroids) / n, 4)}
    return out


def describe():
    """What tests/data/demo/scenes.json holds: the vocabulary and geometry the
    C meaning tests check pictures against."""
    return {
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "shapes": SHAPES,
        "places": {k: list(v) for k, v in PLACES.items()},
        "shape_measures": shape_measures(),
        "size_range": list(SIZE_RANGE),
        "jitter": JITTER,
        "caption": "a <colour> <shape> on a <colour> background, <place>; parts may be left out "
                   "('a circle', 'a red shape on a blue background', 'red')",
    }
