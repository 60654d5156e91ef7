/* The backend-independent half of sd/backend.h: tensor bookkeeping, the
 * sticky error, and the argument checks every op runs before it dispatches
 * to the backend's table (backend_impl.h). Checks live here once so that no
 * backend computes on a shape it was not meant for. Also the optional op
 * profile (per-kind wall time of the dispatched ops) for the benchmarks. */
#include "sd/backend_impl.h"
#include "sd/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors and memory accounting ----------------------------------------- */

int sd_backend_fail(sd_backend *be, const char *fmt, ...)
{
    if (!be->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(be->err, sizeof be->err, fmt, ap);
        va_end(ap);
        be->failed = 1;
    }
    return -1;
}

const char *sd_backend_error(const sd_backend *be) { return be->failed ? be->err : NULL; }
void sd_backend_clear_error(sd_backend *be) { be->failed = 0; be->err[0] = 0; }
const char *sd_backend_name(const sd_backend *be) { return be->ops->name; }
const char *sd_backend_describe(const sd_backend *be) { return be->ops->describe((sd_backend *)be); }

/* ---- op profile ----------------------------------------------------------- */

enum {
    OP_LINEAR,
    OP_CONV2D,
    OP_GROUP_NORM,
    OP_LAYER_NORM,
    OP_SOFTMAX,
    OP_ATTENTION,
    OP_ACT,
    OP_GEGLU,
    OP_ADD_MUL,
    OP_SCALE,
    OP_UPSAMPLE,
    OP_KINDS
};
static const char *const op_names[OP_KINDS] = {"linear", "conv2d", "group_norm", "layer_norm", "softmax", "attention", "act", "geglu", "add/mul", "scale", "upsample"};

struct sd_op_profile {
    double seconds[OP_KINDS];
    long calls[OP_KINDS];
};

static double op_clock(const sd_backend *be) { return be->profile ? sd_now_seconds() : 0.0; }

static int op_done(sd_backend *be, int kind, double t0, int rc)
{
    if (be->profile) {
        be->profile->seconds[kind] += sd_now_seconds() - t0;
        be->profile->calls[kind]++;
    }
    return rc;
}

/* Runs one op through the backend's table, timed when profiling (an
 * asynchronous backend is synchronised first, so the time is the op's). */
#define OP_TIMED(be, kind, call)                                           \
    do {                                                                   \
        double t0_ = op_clock(be);                                         \
        int rc_ = (call);                                                  \
        if ((be)->profile && !rc_) rc_ = sd_backend_sync(be);              \
        return op_done(be, kind, t0_, rc_);                                \
    } while (0)

int sd_backend_profile(sd_backend *be, int on)
{
    free(be->profile);
    be->profile = on ? calloc(1, sizeof *be->profile) : NULL;
    return on && !be->profile ? -1 : 0;
}

void sd_backend_profile_print(const sd_backend *be, void *out)
{
    if (!be->profile) return;
    const struct sd_op_profile *p = be->profile;
    double total = 0.0;
    int order[OP_KINDS];
    for (int i = 0; i < OP_KINDS; i++) total += p->seconds[i], order[i] = i;
    for (int i = 1; i < OP_KINDS; i++)   /* insertion sort, largest first */
        for (int j = i; j > 0 && p->seconds[order[j]] > p->seconds[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int i = 0; i < OP_KINDS && p->calls[order[i]]; i++)
        fprintf(out, "op %-10s %9.3f s %5.1f %% %7ld calls\n", op_names[order[i]], p->seconds[order[i]],
                total > 0 ? 100.0 * p->seconds[order[i]] / total : 0.0, p->calls[order[i]]);
}

void sd_backend_free(sd_backend *be)
{
    if (!be) return;
    free(be->profile);
    be->ops->destroy(be);
}

void sd_backend_mem(const sd_backend *be, sd_mem_stats *out)
{
    *out = (sd_mem_stats){.live_bytes = be->live_bytes, .peak_bytes = be->peak_bytes,
                          .scratch_bytes = be->ops->scratch_bytes(be),
                          .weight_bytes = be->ops->weight_bytes ? be->ops->weight_bytes(be) : 0,
                          .device_used_peak = be->device_used_peak};
}

void sd_backend_note_peak(sd_backend *be)
{
    sd_mem_stats m;
    sd_backend_mem(be, &m);
    size_t now = m.live_bytes + m.scratch_bytes + m.weight_bytes;
    if (now > be->peak_bytes) be->peak_bytes = now;
}

void sd_backend_reset_peak(sd_backend *be)
{
    be->peak_bytes = 0;
    be->device_used_peak = 0;
    sd_backend_note_peak(be);
}

void sd_backend_trim(sd_backend *be) { be->ops->trim(be); }

void sd_backend_set_stage(sd_backend *be, sd_stage stage)
{
    if (be->ops->set_stage && stage >= 0 && stage < SD_STAGE_COUNT) be->ops->set_stage(be, stage);
}

void sd_backend_forget_weights(sd_backend *be, const void *data, size_t bytes)
{
    if (be->ops->forget_weights && data && bytes) be->ops->forget_weights(be, data, bytes);
}

int sd_backend_sync(sd_backend *be)
{
    if (be->failed) return -1;
    return be->ops->sync ? be->ops->sync(be) : 0;
}

/* ---- shape helpers ---------------------------------------------------------- */

int64_t sd_numel(const sd_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static void shape_str(char *buf, size_t len, int ndim, const int64_t *shape)
{
    size_t at = 0;
    at += (size_t)snprintf(buf + at, len - at, "[");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
}

typedef struct { char s[96]; } shape_text;

static shape_text tshape(const sd_tensor *t)
{
    shape_text r;
    shape_str(r.s, sizeof r.s, t->ndim, t->shape);
    return r;
}

static shape_text wshape(const sd_weight *w)
{
    shape_text r;
    shape_str(r.s, sizeof r.s, w->ndim, w->shape);
    return r;
}

static const char *wname(const sd_weight *w) { return w->name ? w->name : "weight"; }

/* Valid dims (1..4, every extent >= 1) and a total that fits in memory. */
static int shape_ok(int ndim, const int64_t *shape)
{
    if (ndim < 1 || ndim > SD_MAX_DIMS) return 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 1 || shape[i] > ((int64_t)1 << 40) / n) return 0;
        n *= shape[i];
    }
    return 1;
}

/* The common entry check of every op: no earlier failure, tensors present. */
static int enter(sd_backend *be, const char *op, int n, const sd_tensor *const *ts)
{
    if (be->failed) return -1;
    for (int i = 0; i < n; i++)
        if (!ts[i] || !ts[i]->data) return sd_backend_fail(be, "%s: tensor argument %d is missing", op, i);
    return 0;
}
#define ENTER(be, op, ...) \
    enter(be, op, (int)(sizeof((const sd_tensor *[]){__VA_ARGS__}) / sizeof(sd_tensor *)), \
          (const sd_tensor *const[]){__VA_ARGS__})

static int same_shape(const sd_tensor *a, const sd_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

static int need_same_shape(sd_backend *be, const char *op, const sd_tensor *y, const sd_tensor *x)
{
    if (same_shape(y, x)) return 0;
    return sd_backend_fail(be, "%s: output %s differs from input %s", op, tshape(y).s, tshape(x).s);
}

static int need_distinct(sd_backend *be, const char *op, const sd_tensor *y, const sd_tensor *x)
{
    if (y->data != x->data) return 0;
    return sd_backend_fail(be, "%s: output must not alias an input", op);
}

static int need_ndim(sd_backend *be, const char *op, const char *what, const sd_tensor *t, int ndim)
{
    if (t->ndim == ndim) return 0;
    return sd_backend_fail(be, "%s: %s %s must have %d dims", op, what, tshape(t).s, ndim);
}

/* A weight the backend can read: known dtype, data present, sane shape. */
static int weight_ok(sd_backend *be, const char *op, const sd_weight *w)
{
    if (!w || !w->data) return sd_backend_fail(be, "%s: weight missing", op);
    if (w->dtype >= SD_DTYPE_COUNT) return sd_backend_fail(be, "%s: %s has an unknown dtype", op, wname(w));
    if (!shape_ok(w->ndim, w->shape))
        return sd_backend_fail(be, "%s: %s has a bad shape %s", op, wname(w), wshape(w).s);
    return 0;
}

/* An optional per-channel vector (bias, gamma, beta) of exactly n elements. */
static int vector_ok(sd_backend *be, const char *op, const sd_weight *w, int64_t n)
{
    if (!w) return 0;
    if (weight_ok(be, op, w)) return -1;
    if (w->ndim != 1 || w->shape[0] != n)
        return sd_backend_fail(be, "%s: %s %s must be [%lld]", op, wname(w), wshape(w).s, (long long)n);
    return 0;
}

/* ---- tensors ---------------------------------------------------------------- */

sd_tensor *sd_tensor_new(sd_backend *be, int ndim, const int64_t *shape)
{
    if (be->failed) return NULL;
    if (!shape_ok(ndim, shape)) {
        shape_text s;
        shape_str(s.s, sizeof s.s, ndim > 0 && ndim <= SD_MAX_DIMS ? ndim : 0, shape);
        sd_backend_fail(be, "sd_tensor_new: bad shape %s (%d dims)", s.s, ndim);
        return NULL;
    }
    sd_tensor *t = calloc(1, sizeof *t);
    if (!t) { sd_backend_fail(be, "sd_tensor_new: out of memory"); return NULL; }
    t->ndim = ndim;
    for (int i = 0; i < SD_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->data = be->ops->alloc(be, t);
    if (!t->data) {
        sd_backend_fail(be, "sd_tensor_new: out of memory for %s (%.1f MB)", tshape(t).s,
                        sd_tensor_bytes(t) / 1048576.0);
        free(t);
        return NULL;
    }
    be->live_bytes += sd_tensor_bytes(t);
    sd_backend_note_peak(be);
    return t;
}

size_t sd_tensor_bytes(const sd_tensor *t) { return (size_t)sd_numel(t) * sd_dtype_size(t->dtype); }

void sd_tensor_free(sd_backend *be, sd_tensor *t)
{
    if (!t) return;
    be->live_bytes -= sd_tensor_bytes(t);
    be->ops->release(be, t->data);
    free(t);
}

int sd_tensor_reshape(sd_backend *be, sd_tensor *t, int ndim, const int64_t *shape)
{
    if (ENTER(be, "sd_tensor_reshape", t)) return -1;
    sd_tensor r = {.ndim = ndim, .data = t->data, .dtype = t->dtype};
    if (!shape_ok(ndim, shape)) return sd_backend_fail(be, "sd_tensor_reshape: bad shape (%d dims)", ndim);
    for (int i = 0; i < SD_MAX_DIMS; i++) r.shape[i] = i < ndim ? shape[i] : 1;
    if (sd_numel(&r) != sd_numel(t))
        return sd_backend_fail(be, "sd_tensor_reshape: %s has %lld elements, %s needs %lld", tshape(t).s,
                               (long long)sd_numel(t), tshape(&r).s, (long long)sd_numel(&r));
    *t = r;
    return 0;
}

int sd_tensor_upload(sd_backend *be, sd_tensor *t, const float *src)
{
    if (ENTER(be, "sd_tensor_upload", t)) return -1;
    return be->ops->upload(be, t, src);
}

int sd_tensor_download(sd_backend *be, const sd_tensor *t, float *dst)
{
    if (ENTER(be, "sd_tensor_download", t)) return -1;
    return be->ops->download(be, dst, t);
}

int sd_load_weight(sd_backend *be, sd_tensor *t, const sd_weight *w)
{
    if (ENTER(be, "sd_load_weight", t) || weight_ok(be, "sd_load_weight", w)) return -1;
    if (sd_weight_numel(w) != sd_numel(t))
        return sd_backend_fail(be, "sd_load_weight: %s %s does not fit tensor %s", wname(w), wshape(w).s,
                               tshape(t).s);
    return be->ops->load_weight(be, t, w);
}

/* ---- GEMM ops --------------------------------------------------------------- */

/* 2-D, or for a linear [N, K, 1, 1] (a 1x1 conv kernel used as a linear). */
static int is_matrix(const sd_weight *w, int allow_1x1_kernel)
{
    return w->ndim == 2 || (allow_1x1_kernel && w->ndim == 4 && w->shape[2] == 1 && w->shape[3] == 1);
}

/* linear / matmul: x [..., K] and y [..., N] around a 2-D weight; w_is_kn
 * says whether W is [K, N] (matmul) or [N, K] (linear, also [N, K, 1, 1]). */
static int check_linear(sd_backend *be, const char *op, sd_tensor *y, const sd_tensor *x, const sd_weight *w,
                        const sd_weight *b, int w_is_kn)
{
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x) || weight_ok(be, op, w)) return -1;
    if (!is_matrix(w, !w_is_kn))
        return sd_backend_fail(be, "%s: %s %s is not a 2-D weight", op, wname(w), wshape(w).s);
    int64_t n = w->shape[w_is_kn ? 1 : 0], k = w->shape[w_is_kn ? 0 : 1];
    if (vector_ok(be, op, b, n)) return -1;
    int d = x->ndim - 1;
    int shape_match = y->ndim == x->ndim && x->shape[d] == k && y->shape[d] == n;
    for (int i = 0; i < d && shape_match; i++) shape_match = x->shape[i] == y->shape[i];
    if (!shape_match)
        return sd_backend_fail(be, "%s: x %s, %s %s and y %s do not match (x[..., K] -> y[..., N], W %s)", op,
                               tshape(x).s, wname(w), wshape(w).s, tshape(y).s, w_is_kn ? "[K, N]" : "[N, K]");
    OP_TIMED(be, OP_LINEAR, be->ops->linear(be, y, x, w, b, w_is_kn));
}

int sd_linear(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b)
{
    return check_linear(be, "sd_linear", y, x, w, b, 0);
}

int sd_matmul(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b)
{
    return check_linear(be, "sd_matmul", y, x, w, b, 1);
}

static int64_t conv_out_size(int64_t in, int k, int lo, int hi, int stride)
{
    int64_t span = in + lo + hi - k;
    return span < 0 ? 0 : span / stride + 1;
}

int sd_conv2d_pad(sd_backend *be, sd_tensor *y, const sd_tensor *x, const sd_weight *w, const sd_weight *b,
                  int stride, int pad_left, int pad_right, int pad_top, int pad_bottom)
{
    const char *op = "sd_conv2d";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x) || weight_ok(be, op, w) ||
        need_ndim(be, op, "x", x, 4) || need_ndim(be, op, "y", y, 4))
        return -1;
    if (w->ndim != 4) return sd_backend_fail(be, "%s: %s %s is not a conv kernel", op, wname(w), wshape(w).s);
    if (stride < 1 || pad_left < 0 || pad_right < 0 || pad_top < 0 || pad_bottom < 0)
        return sd_backend_fail(be, "%s: bad stride %d or padding (%d,%d,%d,%d)", op, stride, pad_left, pad_right,
                               pad_top, pad_bottom);
    if (vector_ok(be, op, b, w->shape[0])) return -1;
    int64_t ho = conv_out_size(x->shape[2], (int)w->shape[2], pad_top, pad_bottom, stride);
    int64_t wo = conv_out_size(x->shape[3], (int)w->shape[3], pad_left, pad_right, stride);
    if (x->shape[1] != w->shape[1] || y->shape[0] != x->shape[0] || y->shape[1] != w->shape[0] ||
        y->shape[2] != ho || y->shape[3] != wo)
        return sd_backend_fail(be, "%s: x %s with %s %s (stride %d) gives [%lld,%lld,%lld,%lld], not y %s", op,
                               tshape(x).s, wname(w), wshape(w).s, stride, (long long)x->shape[0],
                               (long long)w->shape[0], (long long)ho, (long long)wo, tshape(y).s);
    sd_conv_geom g = {stride, pad_left, pad_right, pad_top, pad_bottom};
    OP_TIMED(be, OP_CONV2D, be->ops->conv2d(be, y, x, w, b, &g));
}

/* ---- norms ------------------------------------------------------------------ */

static int act_ok(sd_backend *be, const char *op, sd_act act)
{
    if (act >= SD_ACT_NONE && act <= SD_ACT_QUICK_GELU) return 0;
    return sd_backend_fail(be, "%s: unknown activation %d", op, (int)act);
}

int sd_group_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, int groups, float eps,
                  const sd_weight *gamma, const sd_weight *beta, sd_act act)
{
    const char *op = "sd_group_norm";
    if (ENTER(be, op, y, x) || need_same_shape(be, op, y, x) || act_ok(be, op, act)) return -1;
    int64_t c = x->ndim >= 2 ? x->shape[1] : 0;
    if (groups < 1 || c % groups != 0)
        return sd_backend_fail(be, "%s: %s has no channel dim divisible into %d groups", op, tshape(x).s, groups);
    if (vector_ok(be, op, gamma, c) || vector_ok(be, op, beta, c)) return -1;
    OP_TIMED(be, OP_GROUP_NORM, be->ops->group_norm(be, y, x, groups, eps, gamma, beta, act));
}

int sd_layer_norm(sd_backend *be, sd_tensor *y, const sd_tensor *x, float eps, const sd_weight *gamma,
                  const sd_weight *beta)
{
    const char *op = "sd_layer_norm";
    if (ENTER(be, op, y, x) || need_same_shape(be, op, y, x)) return -1;
    int64_t c = x->shape[x->ndim - 1];
    if (vector_ok(be, op, gamma, c) || vector_ok(be, op, beta, c)) return -1;
    OP_TIMED(be, OP_LAYER_NORM, be->ops->layer_norm(be, y, x, eps, gamma, beta));
}

int sd_softmax(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    if (ENTER(be, "sd_softmax", y, x) || need_same_shape(be, "sd_softmax", y, x)) return -1;
    OP_TIMED(be, OP_SOFTMAX, be->ops->softmax(be, y, x));
}

/* ---- attention -------------------------------------------------------------- */

int sd_attention(sd_backend *be, sd_tensor *out, const sd_tensor *q, const sd_tensor *k, const sd_tensor *v,
                 int heads, int causal)
{
    const char *op = "sd_attention";
    if (ENTER(be, op, out, q, k, v) || need_distinct(be, op, out, q) || need_distinct(be, op, out, k) ||
        need_distinct(be, op, out, v))
        return -1;
    const sd_tensor *all[] = {out, q, k, v};
    for (int i = 0; i < 4; i++)
        if (need_ndim(be, op, "every tensor", all[i], 3)) return -1;
    int64_t bsz = q->shape[0], nq = q->shape[1], nk = k->shape[1];
    int ok = heads >= 1 && q->shape[2] % heads == 0 && v->shape[2] % heads == 0 && k->shape[2] == q->shape[2] &&
             k->shape[0] == bsz && v->shape[0] == bsz && out->shape[0] == bsz && v->shape[1] == nk &&
             out->shape[1] == nq && out->shape[2] == v->shape[2];
    if (!ok)
        return sd_backend_fail(be, "%s: q %s, k %s, v %s, out %s do not fit %d heads", op, tshape(q).s,
                               tshape(k).s, tshape(v).s, tshape(out).s, heads);
    OP_TIMED(be, OP_ATTENTION, be->ops->attention(be, out, q, k, v, heads, causal != 0));
}

/* ---- elementwise ------------------------------------------------------------ */

int sd_act_apply(sd_backend *be, sd_tensor *y, const sd_tensor *x, sd_act act)
{
    const char *op = "sd_act_apply";
    if (ENTER(be, op, y, x) || act_ok(be, op, act)) return -1;
    if (sd_numel(y) != sd_numel(x))
        return sd_backend_fail(be, "%s: output %s and input %s differ in size", op, tshape(y).s, tshape(x).s);
    OP_TIMED(be, OP_ACT, be->ops->act(be, y, x, act));
}

int sd_geglu(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const char *op = "sd_geglu";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x)) return -1;
    int d = x->ndim - 1;
    int ok = y->ndim == x->ndim && x->shape[d] == 2 * y->shape[d];
    for (int i = 0; i < d && ok; i++) ok = x->shape[i] == y->shape[i];
    if (!ok) return sd_backend_fail(be, "%s: x %s must be y %s with the last dim doubled", op, tshape(x).s, tshape(y).s);
    OP_TIMED(be, OP_GEGLU, be->ops->geglu(be, y, x));
}

static int binary(sd_backend *be, const char *op, sd_tensor *y, const sd_tensor *a, const sd_tensor *b,
                  int multiply)
{
    if (ENTER(be, op, y, a, b) || need_same_shape(be, op, y, a)) return -1;
    if (b->ndim > a->ndim)
        return sd_backend_fail(be, "%s: %s does not broadcast to %s", op, tshape(b).s, tshape(a).s);
    if (y->data == b->data && !same_shape(a, b))
        return sd_backend_fail(be, "%s: output aliases the broadcast operand", op);
    /* a's shape and b's strides padded to 4 dims (stride 0 along broadcast dims) */
    int64_t dim[4], stride[4], pad = 4 - a->ndim, acc = 1;
    for (int i = 3; i >= 0; i--) {
        dim[i] = i < pad ? 1 : a->shape[i - pad];
        int bi = i - (4 - b->ndim);
        int64_t bd = bi < 0 ? 1 : b->shape[bi];
        if (bd != 1 && bd != dim[i])
            return sd_backend_fail(be, "%s: %s does not broadcast to %s", op, tshape(b).s, tshape(a).s);
        stride[i] = bd == 1 ? 0 : acc;
        acc *= bd;
    }
    OP_TIMED(be, OP_ADD_MUL, be->ops->binary(be, y, a, b, dim, stride, multiply));
}

int sd_add(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b) { return binary(be, "sd_add", y, a, b, 0); }
int sd_mul(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b) { return binary(be, "sd_mul", y, a, b, 1); }

int sd_scale(sd_backend *be, sd_tensor *y, const sd_tensor *x, float alpha)
{
    if (ENTER(be, "sd_scale", y, x) || need_same_shape(be, "sd_scale", y, x)) return -1;
    OP_TIMED(be, OP_SCALE, be->ops->scale(be, y, x, alpha));
}

int sd_copy(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    if (ENTER(be, "sd_copy", y, x)) return -1;
    if (sd_numel(y) != sd_numel(x))
        return sd_backend_fail(be, "sd_copy: output %s and input %s differ in size", tshape(y).s, tshape(x).s);
    return y->data == x->data ? 0 : be->ops->copy(be, y, x);
}

int sd_fill(sd_backend *be, sd_tensor *y, float value)
{
    if (ENTER(be, "sd_fill", y)) return -1;
    return be->ops->fill(be, y, value);
}

/* ---- layout ----------------------------------------------------------------- */

int sd_upsample_nearest(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const char *op = "sd_upsample_nearest";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x) || need_ndim(be, op, "x", x, 4) ||
        need_ndim(be, op, "y", y, 4))
        return -1;
    if (y->shape[0] != x->shape[0] || y->shape[1] != x->shape[1])
        return sd_backend_fail(be, "%s: x %s and y %s differ in batch or channels", op, tshape(x).s, tshape(y).s);
    OP_TIMED(be, OP_UPSAMPLE, be->ops->upsample_nearest(be, y, x));
}

/* Views t as [outer, inner] around dim: outer = prod(shape[:dim]), inner = prod(shape[dim:]). */
static void split_at(const sd_tensor *t, int dim, int64_t *outer, int64_t *inner)
{
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < t->ndim; i++) *(i < dim ? outer : inner) *= t->shape[i];
}

/* Same ndim, same extents everywhere except dim. */
static int same_except(const sd_tensor *a, const sd_tensor *b, int dim)
{
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (i != dim && a->shape[i] != b->shape[i]) return 0;
    return 1;
}

int sd_concat(sd_backend *be, sd_tensor *y, const sd_tensor *a, const sd_tensor *b, int dim)
{
    const char *op = "sd_concat";
    if (ENTER(be, op, y, a, b) || need_distinct(be, op, y, a) || need_distinct(be, op, y, b)) return -1;
    if (dim < 0 || dim >= y->ndim || !same_except(y, a, dim) || !same_except(y, b, dim) ||
        y->shape[dim] != a->shape[dim] + b->shape[dim])
        return sd_backend_fail(be, "%s: cat(%s, %s, dim %d) is not %s", op, tshape(a).s, tshape(b).s, dim,
                               tshape(y).s);
    int64_t outer, ya, yb, yi;
    split_at(a, dim, &outer, &ya);
    split_at(b, dim, &outer, &yb);
    split_at(y, dim, &outer, &yi);
    if (be->ops->copy_block(be, y, a, outer, yi, ya, 0, 0)) return -1;
    return be->ops->copy_block(be, y, b, outer, yi, yb, ya, 0);
}

int sd_slice(sd_backend *be, sd_tensor *y, const sd_tensor *x, int dim, int64_t start)
{
    const char *op = "sd_slice";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x)) return -1;
    if (dim < 0 || dim >= x->ndim || !same_except(y, x, dim) || start < 0 ||
        start + y->shape[dim] > x->shape[dim])
        return sd_backend_fail(be, "%s: %s.narrow(%d, %lld, ...) cannot give %s", op, tshape(x).s, dim,
                               (long long)start, tshape(y).s);
    int64_t outer, yi, xi, step = 1;
    split_at(y, dim, &outer, &yi);
    split_at(x, dim, &outer, &xi);
    for (int i = dim + 1; i < x->ndim; i++) step *= x->shape[i];
    return be->ops->copy_block(be, y, x, outer, yi, xi, start * step, 1);
}

int sd_to_tokens(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const char *op = "sd_to_tokens";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x) || need_ndim(be, op, "x", x, 4) ||
        need_ndim(be, op, "y", y, 3))
        return -1;
    int64_t bsz = x->shape[0], c = x->shape[1], hw = x->shape[2] * x->shape[3];
    if (y->shape[0] != bsz || y->shape[1] != hw || y->shape[2] != c)
        return sd_backend_fail(be, "%s: x %s needs y [%lld,%lld,%lld], got %s", op, tshape(x).s, (long long)bsz,
                               (long long)hw, (long long)c, tshape(y).s);
    return be->ops->transpose(be, y, x, bsz, c, hw);
}

int sd_to_image(sd_backend *be, sd_tensor *y, const sd_tensor *x)
{
    const char *op = "sd_to_image";
    if (ENTER(be, op, y, x) || need_distinct(be, op, y, x) || need_ndim(be, op, "x", x, 3) ||
        need_ndim(be, op, "y", y, 4))
        return -1;
    int64_t bsz = y->shape[0], c = y->shape[1], hw = y->shape[2] * y->shape[3];
    if (x->shape[0] != bsz || x->shape[1] != hw || x->shape[2] != c)
        return sd_backend_fail(be, "%s: y %s needs x [%lld,%lld,%lld], got %s", op, tshape(y).s, (long long)bsz,
                               (long long)hw, (long long)c, tshape(x).s);
    return be->ops->transpose(be, y, x, bsz, hw, c);
}

int sd_embedding(sd_backend *be, sd_tensor *y, const sd_weight *table, const int32_t *ids, int64_t n)
{
    const char *op = "sd_embedding";
    if (ENTER(be, op, y) || weight_ok(be, op, table)) return -1;
    if (table->ndim != 2 || !ids || n < 1 || sd_numel(y) != n * table->shape[1])
        return sd_backend_fail(be, "%s: %lld rows of %s %s do not fill %s", op, (long long)n, wname(table),
                               wshape(table).s, tshape(y).s);
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= table->shape[0])
            return sd_backend_fail(be, "%s: id %d at %lld is outside %s's %lld rows", op, (int)ids[i],
                                   (long long)i, wname(table), (long long)table->shape[0]);
    return be->ops->embedding(be, y, table, ids, n);
}
