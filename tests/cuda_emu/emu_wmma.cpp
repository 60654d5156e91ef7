/* emu_wmma.cpp: the warp-collective half of nvcuda::wmma (emu_wmma.h says
 * what is emulated and how). Each lane checks its pointer and ldm, then
 * waits at a warp collective (emu_launch.cpp) with a description of its
 * call; once the whole warp is there, the resolver checks that every lane
 * called the same function with the same arguments and, for stores and
 * products, holds the same fragment, and computes a product once for the
 * warp. Loads and stores then move the elements lane by lane. */
#include "emu_internal.h"

#include <stdio.h>

namespace emu {
namespace wmma_detail {

namespace {

const unsigned WARP = 32;

enum class OpKind : uint8_t { LOAD, STORE, MMA };

/* One lane's call. Pointers into the lane's own fragments (frag, a, b, c)
 * differ between lanes; everything else must not. */
struct Op : WarpCollective {
    OpKind kind;
    const char *api;
    Tile frag; /* load: the destination; store: the source; mma: d */
    const void *mem;
    unsigned ldm;
    bool col_major;
    Tile a, b, c; /* mma */
};

char g_why[512]; /* the reason a resolver returns (grids run one at a time) */

size_t type_bytes(Type t) { return t == Type::F16 || t == Type::BF16 ? 2 : 4; }

size_t tile_bytes(const Tile &t) { return (size_t)t.rows * (size_t)t.cols * type_bytes(t.type); }

const char *type_name(Type t)
{
    switch (t) {
    case Type::F16: return "__half";
    case Type::BF16: return "__nv_bfloat16";
    case Type::TF32: return "tf32";
    default: return "float";
    }
}

/* The lane's index in its warp: threads are numbered x fastest. */
unsigned lane_id()
{
    const uint3 t = coords.thread_idx;
    const dim3 b = coords.block_dim;
    return ((t.z * b.y + t.y) * b.x + t.x) % WARP;
}

/* A fragment's elements as the tensor core reads them, into out[]: tf32
 * keeps the top 19 bits of each float. */
void elements(const Tile &t, float *out)
{
    const int n = t.rows * t.cols;
    switch (t.type) {
    case Type::F16:
        for (int i = 0; i < n; i++)
            out[i] = __half2float(static_cast<const __half *>(t.x)[i]);
        break;
    case Type::BF16:
        for (int i = 0; i < n; i++)
            out[i] = __bfloat162float(static_cast<const __nv_bfloat16 *>(t.x)[i]);
        break;
    case Type::TF32:
        for (int i = 0; i < n; i++) {
            const uint32_t u = from_bits<uint32_t>(to_bits(static_cast<const float *>(t.x)[i]));
            out[i] = from_bits<float>((u & 0x7f800000u) == 0x7f800000u ? u : u & 0xffffe000u);
        }
        break;
    default: memcpy(out, t.x, (size_t)n * sizeof(float)); break;
    }
}

bool same_shape(const Tile &x, const Tile &y) { return x.rows == y.rows && x.cols == y.cols && x.type == y.type; }

bool same_call(const Op &x, const Op &y)
{
    return x.kind == y.kind && x.mem == y.mem && x.ldm == y.ldm && x.col_major == y.col_major &&
           same_shape(x.frag, y.frag) && same_shape(x.a, y.a) && same_shape(x.b, y.b) && same_shape(x.c, y.c);
}

const Op &op_of(WarpCollective *w) { return *static_cast<const Op *>(w); }

/* Null when all 32 lanes made the same call; else why not. */
const char *check_calls(WarpCollective *const *lanes, unsigned n)
{
    const Op &first = op_of(lanes[0]);
    if (n < WARP) {
        snprintf(g_why, sizeof g_why, "%s in a partial warp of %u lanes (WMMA needs all 32 lanes of a warp)",
                 first.api, n);
        return g_why;
    }
    for (unsigned l = 1; l < n; l++)
        if (!same_call(op_of(lanes[l]), first)) {
            snprintf(g_why, sizeof g_why,
                     "lanes 0 and %u of a warp reached different WMMA calls (%s and %s, or other arguments)", l,
                     first.api, op_of(lanes[l]).api);
            return g_why;
        }
    return nullptr;
}

/* Null when every lane holds the same elements in its `which` fragment. */
const char *check_fragments(WarpCollective *const *lanes, unsigned n, Tile Op::*which, const char *name)
{
    const Op &first = op_of(lanes[0]);
    for (unsigned l = 1; l < n; l++)
        if (memcmp((op_of(lanes[l]).*which).x, (first.*which).x, tile_bytes(first.*which)) != 0) {
            snprintf(g_why, sizeof g_why,
                     "%s: lane %u's %s fragment differs from lane 0's (the emulator gives every lane the whole "
                     "tile, so lanes differ only after per-element code that depends on the GPU's unspecified "
                     "fragment layout, a race on the memory a load read, or an uninitialised fragment)",
                     first.api, l, name);
            return g_why;
        }
    return nullptr;
}

const char *resolve_load(WarpCollective *const *lanes, unsigned n) { return check_calls(lanes, n); }

const char *resolve_store(WarpCollective *const *lanes, unsigned n)
{
    const char *why = check_calls(lanes, n);
    return why ? why : check_fragments(lanes, n, &Op::frag, "accumulator");
}

/* d = a b + c over lane 0's fragments (all lanes hold the same), in fp32:
 * each d(i, j) starts from c(i, j) and adds the products in k order. The
 * products of fp16/bf16/tf32 values are exact in fp32, so each step is
 * fmaf's single rounding; the loops run j innermost to vectorise. */
void multiply(const Op &op, float *out)
{
    const int m = op.frag.rows, n = op.frag.cols, k = op.a.cols;
    float a[32 * 16], b[16 * 32];
    elements(op.a, a);
    elements(op.b, b);
    elements(op.c, out);
    for (int i = 0; i < m; i++)
        for (int p = 0; p < k; p++) {
            const float aip = a[i * k + p];
            for (int j = 0; j < n; j++)
                out[i * n + j] += aip * b[p * n + j];
        }
}

const char *resolve_mma(WarpCollective *const *lanes, unsigned n)
{
    const char *why = check_calls(lanes, n);
    if (!why)
        why = check_fragments(lanes, n, &Op::a, "matrix_a");
    if (!why)
        why = check_fragments(lanes, n, &Op::b, "matrix_b");
    if (!why)
        why = check_fragments(lanes, n, &Op::c, "accumulator (c)");
    if (why)
        return why;
    const Op &first = op_of(lanes[0]);
    const int count = first.frag.rows * first.frag.cols;
    float d[256];
    __half d_half[256];
    multiply(first, d);
    const void *result = d;
    if (first.frag.type == Type::F16) {
        for (int i = 0; i < count; i++)
            d_half[i] = __float2half_rn(d[i]);
        result = d_half;
    }
    for (unsigned l = 0; l < n; l++)
        memcpy(op_of(lanes[l]).frag.x, result, tile_bytes(first.frag));
    return nullptr;
}

/* The alignment and ldm rules of the WMMA API; a GPU faults or misbehaves
 * otherwise. */
void check_memory(const void *p, unsigned ldm, Type type, const char *api)
{
    if (!p)
        kernel_error("%s with a null pointer", api);
    if ((uintptr_t)p % 32 != 0)
        kernel_error("%s: pointer %p is not 256-bit (32-byte) aligned, as WMMA requires", api, p);
    const unsigned step = (unsigned)(16 / type_bytes(type));
    if (ldm % step != 0)
        kernel_error("%s: ldm %u is not a multiple of %u (16 bytes of %s elements), as WMMA requires", api, ldm, step,
                     type_name(type));
}

/* Offset in elements of (row, col) in memory with leading dimension ldm. */
size_t memory_index(int row, int col, unsigned ldm, bool col_major)
{
    return col_major ? (size_t)row + (size_t)col * ldm : (size_t)row * ldm + (size_t)col;
}

/* The whole tile from memory into a lane's fragment; E is a type of the
 * element's size (uint16_t or uint32_t), copied through memcpy. */
template <typename E> void gather(const Tile &frag, const E *mem, unsigned ldm, bool col_major)
{
    E *x = static_cast<E *>(frag.x);
    for (int r = 0; r < frag.rows; r++) {
        if (!col_major)
            memcpy(x + (size_t)r * frag.cols, mem + (size_t)r * ldm, (size_t)frag.cols * sizeof(E));
        else
            for (int c = 0; c < frag.cols; c++)
                memcpy(x + r * frag.cols + c, mem + memory_index(r, c, ldm, true), sizeof(E));
    }
}

/* Lane `lane`'s share of a fragment into memory: every 32nd element from
 * `lane`. */
template <typename E> void scatter(E *mem, const Tile &frag, unsigned ldm, bool col_major, unsigned lane)
{
    const E *x = static_cast<const E *>(frag.x);
    for (int e = (int)lane; e < frag.rows * frag.cols; e += (int)WARP)
        memcpy(mem + memory_index(e / frag.cols, e % frag.cols, ldm, col_major), x + e, sizeof(E));
}

/* What load and store do before moving elements: check the memory
 * operands, then wait for the whole warp to make the same call. */
void wait_for_warp(OpKind kind, const char *(*resolve)(WarpCollective *const *, unsigned), const char *api,
                   const Tile &frag, const void *p, unsigned ldm, bool col_major)
{
    check_memory(p, ldm, frag.type, api);
    Op op{};
    op.resolve = resolve;
    op.kind = kind;
    op.api = api;
    op.frag = frag;
    op.mem = p;
    op.ldm = ldm;
    op.col_major = col_major;
    warp_collective(op);
}

} /* namespace */

void load(const Tile &frag, const void *p, unsigned ldm, bool col_major, const char *api)
{
    wait_for_warp(OpKind::LOAD, resolve_load, api, frag, p, ldm, col_major);
    if (type_bytes(frag.type) == 2)
        gather(frag, static_cast<const uint16_t *>(p), ldm, col_major);
    else
        gather(frag, static_cast<const uint32_t *>(p), ldm, col_major);
}

void store(void *p, const Tile &frag, unsigned ldm, bool col_major)
{
    wait_for_warp(OpKind::STORE, resolve_store, "store_matrix_sync", frag, p, ldm, col_major);
    if (type_bytes(frag.type) == 2)
        scatter(static_cast<uint16_t *>(p), frag, ldm, col_major, lane_id());
    else
        scatter(static_cast<uint32_t *>(p), frag, ldm, col_major, lane_id());
}

void mma(const Tile &d, const Tile &a, const Tile &b, const Tile &c)
{
    Op op{};
    op.resolve = resolve_mma;
    op.kind = OpKind::MMA;
    op.api = "mma_sync";
    op.frag = d;
    op.a = a;
    op.b = b;
    op.c = c;
    warp_collective(op);
}

} /* namespace wmma_detail */
} /* namespace emu */
