/* The LoRA stack (sd/lora.h): the active set, the merge plan, the merged
 * buffers in the checkpoint's overlay, and the report.
 *
 * Applying a set: every file is loaded (or reused) and checked first; then a
 * plan lists, per checkpoint tensor, the contributions (LoRA load, module,
 * multiplier) in a fixed order. A tensor whose contribution list equals the
 * one its merged buffer was built from is left alone; any other is rebuilt
 * from the checkpoint's mapped original:
 *     w = widen(original);  w[rows of block b] += sum over plain LoRAs of
 *     c_i up_i @ down_i (one sgemm per block);  w += c_j dW_j for the others
 *     (in plan order);  buffer = narrow(w) (round to nearest even)
 * so the same set always gives the same bits, whatever came before. Tensors
 * no LoRA touches any more lose their buffer and bind to the mapping again.
 * The pages of originals that have a merged buffer are dropped from memory
 * (they are read back from the page cache when needed), so that a merged
 * tensor costs its buffer only, not its buffer plus its mapped original. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "runpod/log.h"
#include "sd/clock.h"
#include "sd/lora_impl.h"

/* One LoRA of the active set. */
typedef struct {
    lora_file *lf;
    float te, unet; /* multipliers */
} active_lora;

/* One contribution to a tensor; equal lists give equal bits. */
typedef struct {
    const lora_module *mod;
    uint32_t uid;   /* the load */
    uint32_t index; /* the module within it */
    float mult;
    bool bias;      /* diff_b onto the bias tensor */
} contrib;

typedef struct {
    const st_tensor *t;
    void *buf;
    sd_dtype dtype;
    contrib *sig;
    size_t n_sig;
} merged_tensor;

struct sd_lora_stack {
    const st_file *ckpt;
    lora_names *names;
    sd_overlay *overlay;
    bool release_pages;     /* the checkpoint is a file mapping */
    active_lora *set;
    size_t n_set;
    merged_tensor *merged;  /* sorted by tensor address */
    size_t n_merged;
    uint64_t generation;
    sd_lora_change_fn on_change; /* told of every merged buffer rebuilt in place or freed */
    void *on_change_ctx;
    float *scratch;         /* the fp32 tensor being rebuilt, reused during one apply */
    size_t scratch_cap;     /* floats */
};

const char *sd_lora_status_name(sd_lora_status s)
{
    switch (s) {
    case SD_LORA_OK: return "ok";
    case SD_LORA_EFILE: return "bad file";
    case SD_LORA_EMISMATCH: return "mismatch";
    case SD_LORA_ENOMEM: return "out of memory";
    }
    return "unknown";
}

/* ---- the stack -------------------------------------------------------------------------- */

sd_lora_stack *sd_lora_stack_new(const st_file *ckpt, const sdxl_hparams *hp, char *err, size_t errlen)
{
    if (sd_overlay_of(ckpt)) {
        snprintf(err, errlen, "%s already has a LoRA stack", st_label(ckpt));
        return NULL;
    }
    sd_lora_stack *s = calloc(1, sizeof *s);
    if (s) {
        s->ckpt = ckpt;
        s->names = lora_names_build(ckpt, hp);
        s->overlay = sd_overlay_new();
        size_t len;
        s->release_pages = lora_is_file_mapping(st_data(ckpt, &len));
    }
    if (!s || !s->names || !s->overlay || sd_overlay_attach(ckpt, s->overlay)) {
        snprintf(err, errlen, "out of memory creating the LoRA stack");
        if (s) lora_names_free(s->names), sd_overlay_free(s->overlay);
        free(s);
        return NULL;
    }
    return s;
}

static void free_merged(merged_tensor *m)
{
    free(m->buf);
    free(m->sig);
}

/* The merged buffer's bytes are about to change or go away. */
static void changed(const sd_lora_stack *s, const merged_tensor *m)
{
    if (s->on_change && m->buf) s->on_change(s->on_change_ctx, m->buf, (size_t)m->t->numel * sd_dtype_size(m->dtype));
}

void sd_lora_stack_on_change(sd_lora_stack *s, sd_lora_change_fn fn, void *ctx)
{
    s->on_change = fn;
    s->on_change_ctx = ctx;
}

static void close_set(active_lora *set, size_t n)
{
    for (size_t i = 0; i < n; i++) lora_file_free(set[i].lf);
    free(set);
}

void sd_lora_stack_free(sd_lora_stack *s)
{
    if (!s) return;
    sd_overlay_attach(s->ckpt, NULL);
    sd_overlay_free(s->overlay);
    for (size_t i = 0; i < s->n_merged; i++) free_merged(&s->merged[i]);
    free(s->merged);
    close_set(s->set, s->n_set);
    lora_names_free(s->names);
    free(s);
}

uint64_t sd_lora_stack_generation(const sd_lora_stack *s) { return s->generation; }
const sd_overlay *sd_lora_stack_overlay(const sd_lora_stack *s) { return s->overlay; }

/* ---- resolving the specs into loaded files --------------------------------------------- */

static char *file_stem(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    return strndup(base, dot && dot != base ? (size_t)(dot - base) : strlen(base));
}

static bool same_file(const lora_file *lf, const char *path)
{
    struct stat sb;
    return strcmp(lf->path, path) == 0 && stat(path, &sb) == 0 && (int64_t)sb.st_size == lf->size &&
           (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec == lf->mtime_ns;
}

static void log_loaded(const lora_file *lf)
{
    if (!lf->n_unmatched) {
        rp_info("LoRA '%s': %s, all %zu modules matched", lf->name, lf->format, lf->matched);
        return;
    }
    char list[512];
    size_t n = 0;
    for (size_t i = 0; i < lf->n_unmatched && i < 5 && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", lf->unmatched[i]);
    rp_warn("LoRA '%s': %s, %zu of %zu modules matched; %zu keys match no layer of the checkpoint and are "
            "not applied: %s%s", lf->name, lf->format, lf->matched, lf->n_mods, lf->n_unmatched, list,
            lf->n_unmatched > 5 ? ", ..." : "");
}

/* A reused file reports under the name it is given now. */
static void rename_lora(lora_file *lf, const char *name)
{
    char *copy = strcmp(lf->name, name) ? strdup(name) : NULL;
    if (copy) free(lf->name), lf->name = copy;
}

/* The new active set: files of the current set are reused (same path, size
 * and modification time), others loaded; a path given twice is one LoRA
 * with the multipliers summed. On failure nothing of the stack changes. */
static sd_lora_status resolve(sd_lora_stack *s, const sd_lora_spec *specs, size_t n, active_lora **out,
                              size_t *n_out, char *err, size_t errlen)
{
    active_lora *set = calloc(n ? n : 1, sizeof *set);
    size_t k = 0;
    sd_lora_status st = set ? SD_LORA_OK : SD_LORA_ENOMEM;
    bool *reused = calloc(s->n_set ? s->n_set : 1, sizeof *reused);
    if (!reused) st = SD_LORA_ENOMEM;
    for (size_t i = 0; i < n && !st; i++) {
        size_t j = 0;
        while (j < k && strcmp(set[j].lf->path, specs[i].path) != 0) j++;
        if (j == k) {
            size_t c = 0;
            while (c < s->n_set && (reused[c] || !same_file(s->set[c].lf, specs[i].path))) c++;
            char *stem = specs[i].name ? NULL : file_stem(specs[i].path);
            const char *name = specs[i].name ? specs[i].name : stem;
            if (!name) st = SD_LORA_ENOMEM;
            else if (c < s->n_set) {
                reused[c] = true;
                set[k++].lf = s->set[c].lf;
                rename_lora(s->set[c].lf, name);
            }
            else if (!(st = lora_file_load(specs[i].path, name, s->names, &set[k].lf, err, errlen)))
                log_loaded(set[k++].lf);
            free(stem);
        }
        if (!st) set[j].te += specs[i].te_multiplier, set[j].unet += specs[i].unet_multiplier;
    }
    if (st == SD_LORA_ENOMEM) snprintf(err, errlen, "out of memory loading LoRAs");
    for (size_t j = 0; j < k; j++) { /* keep only what is new; the caller swaps sets on success */
        bool was_reused = false;
        for (size_t c = 0; c < s->n_set; c++) was_reused |= s->set[c].lf == set[j].lf;
        if (st && !was_reused) lora_file_free(set[j].lf);
    }
    free(reused);
    if (st) {
        free(set);
        return st;
    }
    *out = set;
    *n_out = k;
    return SD_LORA_OK;
}

/* ---- the plan -------------------------------------------------------------------------------- */

typedef struct {
    const st_tensor *t;
    size_t seq;
    contrib c;
} plan_item;

static int by_tensor_then_seq(const void *a, const void *b)
{
    const plan_item *x = a, *y = b;
    if (x->t != y->t) return (uintptr_t)x->t < (uintptr_t)y->t ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static plan_item *make_plan(const active_lora *set, size_t n, size_t *count)
{
    size_t cap = 0, k = 0;
    for (size_t i = 0; i < n; i++) cap += 2 * set[i].lf->n_mods;
    plan_item *items = malloc((cap ? cap : 1) * sizeof *items);
    if (!items) return NULL;
    for (size_t i = 0; i < n; i++) {
        const lora_file *lf = set[i].lf;
        for (size_t j = 0; j < lf->n_mods; j++) {
            const lora_module *m = &lf->mods[j];
            if (!m->target) continue;
            float mult = m->target->net == LORA_UNET ? set[i].unet : set[i].te;
            if (mult == 0.0f) continue;
            contrib c = {m, lf->uid, (uint32_t)j, mult, false};
            if (m->kind != K_FULL || m->part[P_DIFF].data) items[k] = (plan_item){m->target->weight, k, c}, k++;
            c.bias = true;
            if (m->kind == K_FULL && m->part[P_DIFF_B].data) items[k] = (plan_item){m->target->bias, k, c}, k++;
        }
    }
    qsort(items, k, sizeof *items, by_tensor_then_seq);
    *count = k;
    return items;
}

static bool same_contribs(const contrib *a, const plan_item *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].uid != b[i].c.uid || a[i].index != b[i].c.index || a[i].bias != b[i].c.bias ||
            memcmp(&a[i].mult, &b[i].c.mult, sizeof a[i].mult) != 0)
            return false;
    return true;
}

/* ---- rebuilding one tensor ---------------------------------------------------------------------- */

/* The plain LoRAs of one row block (same row0) through one GEMM, in the
 * order of their first contribution. */
static int add_plain_blocks(const plan_item *items, size_t n, float *w, int64_t cols)
{
    const lora_module **mods = malloc(n * sizeof *mods);
    float *mults = malloc(n * sizeof *mults);
    bool *done = calloc(n, sizeof *done);
    int rc = mods && mults && done ? 0 : -1;
    for (size_t i = 0; i < n && !rc; i++) {
        if (done[i] || items[i].c.bias || !lora_module_is_plain(items[i].c.mod)) continue;
        const lora_target *t = items[i].c.mod->target;
        size_t k = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && !items[j].c.bias && lora_module_is_plain(items[j].c.mod) &&
                items[j].c.mod->target->row0 == t->row0) {
                mods[k] = items[j].c.mod, mults[k++] = items[j].c.mult;
                done[j] = true;
            }
        rc = lora_gemm_add(mods, mults, k, w + t->row0 * cols, t->rows, cols);
    }
    free(mods);
    free(mults);
    free(done);
    return rc;
}

static void narrow_parallel(sd_dtype dt, const float *src, size_t n, void *dst)
{
    const size_t chunk = 1 << 16;
    long chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; c++) {
        size_t begin = (size_t)c * chunk, len = n - begin < chunk ? n - begin : chunk;
        sd_narrow(dt, src + begin, len, dst, begin);
    }
}

/* The stack's fp32 scratch of at least n floats: reused from tensor to
 * tensor, so that its pages are not faulted in and zeroed for each. */
static float *scratch(sd_lora_stack *s, size_t n)
{
    if (n > s->scratch_cap) {
        free(s->scratch);
        s->scratch_cap = 0;
        if (!(s->scratch = malloc(n * sizeof *s->scratch))) return NULL;
        s->scratch_cap = n;
    }
    return s->scratch;
}

/* w = original + every contribution of items[0..n) (one tensor), narrowed
 * into m->buf (allocated when NULL). */
static int rebuild(sd_lora_stack *s, const plan_item *items, size_t n, merged_tensor *m)
{
    const st_tensor *t = items[0].t;
    sd_weight orig;
    char msg[256];
    if (st_weight(t, &orig, msg, sizeof msg)) return -1; /* validated checkpoints never get here */
    size_t numel = (size_t)t->numel;
    int64_t cols = t->ndim >= 2 ? t->numel / t->shape[0] : 1;
    bool dora = false;
    for (size_t i = 0; i < n; i++) dora |= items[i].c.mod->part[P_DORA].data != NULL;
    float *w = scratch(s, numel), *w0 = dora ? malloc(numel * sizeof *w0) : NULL;
    changed(s, m);
    m->dtype = t->dtype == SD_F32 || t->dtype == SD_BF16 ? t->dtype : SD_F16;
    if (!m->buf) m->buf = malloc(numel * sd_dtype_size(m->dtype));
    int rc = w && m->buf && (!dora || w0) ? 0 : -1;
    if (!rc) {
        lora_widen(&orig, 0, numel, w);
        if (dora) memcpy(w0, w, numel * sizeof *w0);
        rc = add_plain_blocks(items, n, w, cols);
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const contrib *c = &items[i].c;
        if (!c->bias && lora_module_is_plain(c->mod)) continue;
        size_t at = (size_t)(c->mod->target->row0 * (c->bias ? 1 : cols));
        rc = lora_delta_add(c->mod, c->mult, c->bias, w0 ? w0 + at : NULL, w + at);
    }
    if (!rc) narrow_parallel(m->dtype, w, numel, m->buf);
    free(w0);
    return rc;
}

/* ---- applying ---------------------------------------------------------------------------------------- */

/* Every tensor back to the checkpoint's own and no LoRA active: the state
 * after running out of memory half-way. */
static void reset(sd_lora_stack *s)
{
    for (size_t i = 0; i < s->n_merged; i++) {
        sd_overlay_remove(s->overlay, s->merged[i].t->name);
        changed(s, &s->merged[i]);
        free_merged(&s->merged[i]);
    }
    free(s->merged);
    s->merged = NULL;
    s->n_merged = 0;
    close_set(s->set, s->n_set);
    s->set = NULL;
    s->n_set = 0;
    s->generation++;
}

static int publish(sd_lora_stack *s, const merged_tensor *m)
{
    sd_weight w = {.dtype = m->dtype, .ndim = m->t->ndim, .data = m->buf};
    memcpy(w.shape, m->t->shape, sizeof w.shape[0] * (size_t)m->t->ndim);
    if (sd_overlay_put(s->overlay, m->t->name, &w)) return -1;
    if (s->on_change) s->on_change(s->on_change_ctx, m->t->data, (size_t)m->t->nbytes); /* the original is unused now */
    if (s->release_pages) lora_release_pages(m->t->data, (size_t)m->t->nbytes);
    return 0;
}

typedef struct {
    size_t rebuilt, restored;
} merge_counts;

static void restore(sd_lora_stack *s, merged_tensor *m, merge_counts *counts)
{
    sd_overlay_remove(s->overlay, m->t->name);
    changed(s, m);
    free_merged(m);
    counts->restored++;
}

/* The new merged list from the plan (items sorted by tensor), walking the
 * old list (sorted the same way) alongside. 0, or -1 when out of memory:
 * then the list still owns every buffer, for the caller's reset. */
static int merge(sd_lora_stack *s, const plan_item *items, size_t n_items, merge_counts *counts)
{
    size_t groups = 0;
    for (size_t i = 0; i < n_items; i++) groups += i == 0 || items[i].t != items[i - 1].t;
    merged_tensor *next = calloc(groups ? groups : 1, sizeof *next), *old = s->merged;
    if (!next) return -1;
    size_t oi = 0, n_old = s->n_merged, g = 0;
    int rc = 0;
    for (size_t i = 0, j; i < n_items; i = j, g++) {
        for (j = i; j < n_items && items[j].t == items[i].t; j++) {}
        const st_tensor *t = items[i].t;
        while (oi < n_old && (uintptr_t)old[oi].t < (uintptr_t)t) restore(s, &old[oi++], counts);
        merged_tensor *prev = oi < n_old && old[oi].t == t ? &old[oi++] : NULL;
        if (prev && prev->n_sig == j - i && same_contribs(prev->sig, items + i, j - i)) {
            next[g] = *prev; /* unchanged */
            continue;
        }
        next[g] = (merged_tensor){.t = t, .buf = prev ? prev->buf : NULL, .n_sig = j - i};
        if (prev) free(prev->sig);
        if (rc) continue; /* after a failure only the bookkeeping goes on */
        next[g].sig = malloc((j - i) * sizeof *next[g].sig);
        rc = next[g].sig ? rebuild(s, items + i, j - i, &next[g]) : -1;
        for (size_t k = i; k < j && !rc; k++) next[g].sig[k - i] = items[k].c;
        if (!rc) rc = publish(s, &next[g]);
        counts->rebuilt++;
    }
    while (oi < n_old) restore(s, &old[oi++], counts); /* tensors no LoRA touches any more */
    free(old);
    free(s->scratch);
    s->scratch = NULL;
    s->scratch_cap = 0;
    s->merged = next;
    s->n_merged = groups;
    return rc;
}

/* ---- the report ----------------------------------------------------------------------------------------- */

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
    return x < y ? -1 : x > y;
}

static size_t tensors_changed(const lora_file *lf)
{
    const void **ts = malloc((2 * lf->n_mods + 1) * sizeof *ts);
    size_t n = 0, distinct = 0;
    if (!ts) return 0;
    for (size_t i = 0; i < lf->n_mods; i++) {
        const lora_module *m = &lf->mods[i];
        if (!m->target) continue;
        if (m->kind != K_FULL || m->part[P_DIFF].data) ts[n++] = m->target->weight;
        if (m->kind == K_FULL && m->part[P_DIFF_B].data) ts[n++] = m->target->bias;
    }
    qsort(ts, n, sizeof *ts, by_address);
    for (size_t i = 0; i < n; i++) distinct += i == 0 || ts[i] != ts[i - 1];
    free(ts);
    return distinct;
}

static int describe(const active_lora *a, sd_lora_info *info)
{
    const lora_file *lf = a->lf;
    *info = (sd_lora_info){.te_multiplier = a->te, .unet_multiplier = a->unet, .modules = lf->n_mods,
                           .modules_matched = lf->matched, .tensors = tensors_changed(lf)};
    snprintf(info->format, sizeof info->format, "%s", lf->format);
    info->name = strdup(lf->name);
    info->path = strdup(lf->path);
    info->unmatched = calloc(lf->n_unmatched ? lf->n_unmatched : 1, sizeof *info->unmatched);
    if (!info->name || !info->path || !info->unmatched) return -1;
    for (size_t i = 0; i < lf->n_unmatched; i++, info->n_unmatched++)
        if (!(info->unmatched[i] = strdup(lf->unmatched[i]))) return -1;
    return 0;
}

void sd_lora_report_free(sd_lora_report *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        sd_lora_info *info = &r->loras[i];
        free(info->name);
        free(info->path);
        for (size_t k = 0; k < info->n_unmatched; k++) free(info->unmatched[k]);
        free(info->unmatched);
    }
    free(r->loras);
    memset(r, 0, sizeof *r);
}

static void fill_report(const sd_lora_stack *s, const merge_counts *counts, double t0, sd_lora_report *r)
{
    memset(r, 0, sizeof *r);
    r->tensors_merged = s->n_merged;
    r->tensors_rebuilt = counts->rebuilt;
    r->tensors_restored = counts->restored;
    for (size_t i = 0; i < s->n_merged; i++)
        r->merged_bytes += (size_t)s->merged[i].t->numel * sd_dtype_size(s->merged[i].dtype);
    r->loras = calloc(s->n_set ? s->n_set : 1, sizeof *r->loras);
    for (size_t i = 0; r->loras && i < s->n_set; i++, r->n++)
        if (describe(&s->set[i], &r->loras[i])) {
            r->n++;
            break; /* out of memory: the report is cut short, the merge stands */
        }
    r->seconds = sd_now_seconds() - t0;
}

/* Makes `set` (owning the files the current set does not hold) active. */
static sd_lora_status apply_set(sd_lora_stack *s, active_lora *set, size_t n_set, double t0, sd_lora_report *report,
                                char *err, size_t errlen)
{
    size_t n_items;
    plan_item *items = make_plan(set, n_set, &n_items);
    merge_counts counts = {0};
    int rc = items ? merge(s, items, n_items, &counts) : -1;
    free(items);
    for (size_t i = 0; i < s->n_set; i++) { /* close the files the new set does not use */
        bool kept = false;
        for (size_t j = 0; j < n_set; j++) kept |= set[j].lf == s->set[i].lf;
        if (!kept) lora_file_free(s->set[i].lf);
    }
    free(s->set);
    s->set = set;
    s->n_set = n_set;
    if (rc) {
        reset(s);
        snprintf(err, errlen, "out of memory merging LoRAs: every LoRA was removed");
        rp_error("%s", err);
        return SD_LORA_ENOMEM;
    }
    if (counts.rebuilt || counts.restored) s->generation++;
    for (size_t i = 0; i < n_set; i++) { /* read again only when a merge needs them */
        size_t len;
        const uint8_t *data = st_data(set[i].lf->f, &len);
        if (set[i].lf->mapped) lora_release_pages(data, len);
    }
    if (counts.rebuilt || counts.restored)
        rp_info("LoRAs: %zu active, %zu tensors rebuilt, %zu restored, %zu merged, %.2f s", n_set, counts.rebuilt,
                counts.restored, s->n_merged, sd_now_seconds() - t0);
    if (report) fill_report(s, &counts, t0, report);
    return SD_LORA_OK;
}

sd_lora_status sd_lora_stack_apply(sd_lora_stack *s, const sd_lora_spec *specs, size_t n, sd_lora_report *report,
                                   char *err, size_t errlen)
{
    double t0 = sd_now_seconds();
    if (report) memset(report, 0, sizeof *report);
    for (size_t i = 0; i < n; i++)
        if (!specs[i].path || !isfinite(specs[i].te_multiplier) || !isfinite(specs[i].unet_multiplier)) {
            snprintf(err, errlen, "LoRA %zu: %s", i, specs[i].path ? "multipliers must be finite" : "no path");
            return SD_LORA_EFILE;
        }
    active_lora *set;
    size_t n_set;
    sd_lora_status st = resolve(s, specs, n, &set, &n_set, err, errlen);
    return st ? st : apply_set(s, set, n_set, t0, report, err, errlen);
}

sd_lora_status lora_stack_apply_files(sd_lora_stack *s, lora_file **files, const float *te, const float *unet,
                                      size_t n, sd_lora_report *report, char *err, size_t errlen)
{
    active_lora *set = calloc(n ? n : 1, sizeof *set);
    if (!set) {
        for (size_t i = 0; i < n; i++) lora_file_free(files[i]);
        snprintf(err, errlen, "out of memory");
        return SD_LORA_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) set[i] = (active_lora){files[i], te[i], unet[i]};
    return apply_set(s, set, n, sd_now_seconds(), report, err, errlen);
}

const lora_names *lora_stack_names(const sd_lora_stack *s) { return s->names; }

/* ---- names ------------------------------------------------------------------------------------------------- */

long sd_lora_find(const sd_lora_known *known, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (known[i].name && strcmp(known[i].name, name) == 0) return (long)i;
    for (size_t i = 0; i < n; i++) {
        char *stem = known[i].path ? file_stem(known[i].path) : NULL;
        bool hit = stem && strcmp(stem, name) == 0;
        free(stem);
        if (hit) return (long)i;
    }
    return -1;
}
