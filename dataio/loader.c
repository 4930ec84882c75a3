/* Streaming loader: global sampling order, worker threads, batch slots.
 *
 * Batches live in a ring of prefetch+1 slots; step k always uses slot
 * k % nslots, so a slot is refilled with step k+nslots as soon as step k is
 * released. Each step's sample indices and flip decisions are fixed when its
 * slot is assigned (a pure function of the step number and the start
 * position), and threads only fill in pixels, so thread count and timing
 * cannot change what a batch holds. */
#include "dataio/loader.h"

#include <glob.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <jpeglib.h> /* after stdio.h: it uses FILE */
#include <jerror.h>

#include "core/check.h"
#include "core/h5util.h"
#include "core/rng.h"
#include "core/skeleton.h"
#include "dataio/input_norm.h"
#include "dataio/shard.h"

#define STATE_VERSION 0x5353504c44520001LL /* "SSPLDR" v1 */
#define NSLOT_MAX 65

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_OUT };

typedef struct {
    dataio_batch b;
    int state;
    int next_item; /* items handed out */
    int done;      /* items finished */
} slot_t;

#define LOADER_JPEG_ROWS 16
/* zlib >= 1.2.9 can leave the Adler-32 check to us (adler32_fast) */
#define LOADER_OWN_ADLER (ZLIB_VERNUM >= 0x1290)

typedef struct {
    dataio_packed packed; /* raw bytes of one sample, as read from the shard */
    uint8_t *inflated;    /* one target dataset, inflated */
    uint8_t *rows;        /* LOADER_JPEG_ROWS decoded RGB rows */
    float *plane, *plane2; /* one target plane, dequantised and then mirrored, before streaming out */
    z_stream zs;          /* inflate state, reused for every chunk */
} scratch_t;

typedef struct { struct dataio_loader *L; int id; } worker_arg;

struct dataio_loader {
    dataio_loader_opts o;
    dataio_input_norm norm; /* of o.input_norm */
    int nshards;
    dataio_shard **shards;
    char **paths;
    int64_t *first; /* first global index of each shard, plus total at [nshards] */
    int64_t total, gbatch;
    int size, grid_h, grid_w;

    /* start position (from resume or zero), normalised so one batch fits */
    int64_t start_epoch, start_pos, start_step;
    int64_t consumed;  /* batches returned by next() */

    int64_t perm_epoch;
    int64_t *perm;

    int nslots;
    slot_t slots[NSLOT_MAX];

    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* workers: items available or stop */
    pthread_cond_t done_cv; /* consumer: a slot became ready */
    int stop;
    int nthreads;
    pthread_t *threads;
    worker_arg *wargs;
    scratch_t *scratch;    /* nthreads + 1 (the caller's) */

    int64_t samples;
    double busy_s, cpu_s, wait_s;
    int64_t corrupt; /* samples skipped as corrupt (under mu) */
    struct timespec t_open;
};

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* This thread's CPU time: throughput per core stays measurable on a shared machine. */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* ---- sampling order ---- */
static void make_perm(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch)
{
    core_sm64 r = {core_rng_mix64(seed ^ 0x6c6f61646572ULL) ^ core_rng_mix64((uint64_t)epoch + CORE_RNG_GOLDEN)};
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates; j by multiply-shift range reduction */
        int64_t j = (int64_t)(((unsigned __int128)core_sm64_next(&r) * (uint64_t)(i + 1)) >> 64);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static int flip_decision(uint64_t seed, int64_t epoch, int64_t index, double p)
{
    if (p <= 0) return 0;
    uint64_t h = core_rng_mix64(core_rng_mix64(seed ^ 0x666c6970ULL) ^
                                core_rng_mix64((uint64_t)epoch * 0x2545f4914f6cdd1dULL + (uint64_t)index));
    return core_rng_unit(h) < p;
}

/* (epoch, position) of the k-th batch after the start. */
static void step_position(const dataio_loader *L, int64_t k, int64_t *epoch, int64_t *pos)
{
    int64_t first = (L->total - L->start_pos) / L->gbatch, per = L->total / L->gbatch;
    if (k < first) {
        *epoch = L->start_epoch;
        *pos = L->start_pos + k * L->gbatch;
    } else {
        k -= first;
        *epoch = L->start_epoch + 1 + k / per;
        *pos = (k % per) * L->gbatch;
    }
}

/* Fixes slot contents for batch k (lock held). */
static void assign_slot(dataio_loader *L, int64_t k)
{
    slot_t *s = &L->slots[k % L->nslots];
    int64_t epoch, pos;
    step_position(L, k, &epoch, &pos);
    if (epoch != L->perm_epoch) {
        make_perm(L->perm, L->total, L->o.seed, epoch);
        L->perm_epoch = epoch;
    }
    int64_t off = pos + (int64_t)L->o.rank * L->o.batch;
    for (int j = 0; j < L->o.batch; j++) {
        int64_t g = L->perm[off + j];
        s->b.index[j] = g;
        s->b.flipped[j] = (uint8_t)flip_decision(L->o.seed, epoch, g, L->o.flip);
    }
    s->b.step = L->start_step + k;
    s->b.epoch = epoch;
    s->next_item = s->done = 0;
    s->state = SLOT_FILLING;
}

/* ---- decoding ---- */
static int shard_of(const dataio_loader *L, int64_t g)
{
    int lo = 0, hi = L->nshards - 1;
    while (lo < hi) { /* last shard whose first index <= g */
        int mid = (lo + hi + 1) / 2;
        if (L->first[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Fatal errors while decoding take the HDF5 lock first: no other worker is
 * then inside HDF5 while exit() runs HDF5's atexit clean-up, and a second
 * failing worker blocks there instead of printing a second line. */
#define WORKER_CHECK(cond, ...) \
    do { if (!(cond)) { core_h5_lock(); core_die_at(__FILE__, __LINE__, __VA_ARGS__); } } while (0)

/* Batch buffers are written once here and read next by the device copy, not
 * by this core: streaming stores skip reading each cold destination line into
 * the cache first (3.5x faster for the image on the development machine). */
static void stream_copy(float *dst, const float *src, size_t n)
{
#ifdef __SSE2__
    if ((uintptr_t)dst % 16 == 0 && n % 4 == 0) {
        for (size_t i = 0; i < n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
        return;
    }
#endif
    memcpy(dst, src, n * sizeof *dst);
}

/* Stores 4 floats at p: streaming when the caller says p is 16-byte aligned. */
#ifdef __SSE2__
static inline void put4(float *p, __m128 v, int nt)
{
    if (nt) _mm_stream_ps(p, v);
    else _mm_storeu_ps(p, v);
}
#endif

/* One decoded RGB row to its three float rows of the batch (planes[c] = input
 * channel c), mirrored when flip, normalised by dataio/input_norm.h with the very
 * operations of dataio_input_norm_px (float multiply, then add), so the result is
 * bit-identical to every other input path. SSE2 converts 16 pixels at a time,
 * de-interleaves, and writes straight to the batch (streaming when nt: the rows
 * are 16-byte aligned and S % 4 == 0, so mirrored groups of 4 stay aligned too). */
static void rgb_row_out(const uint8_t *px, float *const planes[3], const dataio_input_norm *nm, int S, int flip,
                        int nt)
{
    int x = 0;
#ifdef __SSE2__
    const __m128i z = _mm_setzero_si128();
    __m128 vs[3], vb[3];
    for (int c = 0; c < 3; c++) vs[c] = _mm_set1_ps(nm->scale[c]), vb[c] = _mm_set1_ps(nm->bias[c]);
    for (; x + 16 <= S; x += 16) {
        __m128 f[12]; /* 48 interleaved pixel values r g b r g b ... */
        for (int q = 0; q < 3; q++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(px + 3 * x + 16 * q));
            __m128i lo = _mm_unpacklo_epi8(v, z), hi = _mm_unpackhi_epi8(v, z);
            __m128i w4[4] = {_mm_unpacklo_epi16(lo, z), _mm_unpackhi_epi16(lo, z), _mm_unpacklo_epi16(hi, z),
                             _mm_unpackhi_epi16(hi, z)};
            for (int e = 0; e < 4; e++) f[4 * q + e] = _mm_cvtepi32_ps(w4[e]);
        }
        for (int p = 0; p < 4; p++) { /* a = r0 g0 b0 r1, bb = g1 b1 r2 g2, c = b2 r3 g3 b3 */
            __m128 a = f[3 * p], bb = f[3 * p + 1], c = f[3 * p + 2], rgb[3];
            __m128 t1 = _mm_shuffle_ps(bb, c, _MM_SHUFFLE(0, 1, 0, 2));  /* r2 . r3 . */
            rgb[0] = _mm_shuffle_ps(a, t1, _MM_SHUFFLE(2, 0, 3, 0));     /* r0 r1 r2 r3 */
            __m128 t2 = _mm_shuffle_ps(a, bb, _MM_SHUFFLE(0, 0, 0, 1));  /* g0 . g1 . */
            __m128 t3 = _mm_shuffle_ps(bb, c, _MM_SHUFFLE(0, 2, 0, 3));  /* g2 . g3 . */
            rgb[1] = _mm_shuffle_ps(t2, t3, _MM_SHUFFLE(2, 0, 2, 0));
            __m128 t4 = _mm_shuffle_ps(a, bb, _MM_SHUFFLE(0, 1, 0, 2));  /* b0 . b1 . */
            __m128 t5 = _mm_shuffle_ps(c, c, _MM_SHUFFLE(0, 3, 0, 0));   /* b2 . b3 . */
            rgb[2] = _mm_shuffle_ps(t4, t5, _MM_SHUFFLE(2, 0, 2, 0));
            for (int ch = 0; ch < 3; ch++) {
                __m128 o = _mm_add_ps(_mm_mul_ps(rgb[nm->src[ch]], vs[ch]), vb[ch]);
                if (flip) put4(planes[ch] + S - 4 - (x + 4 * p), _mm_shuffle_ps(o, o, _MM_SHUFFLE(0, 1, 2, 3)), nt);
                else put4(planes[ch] + x + 4 * p, o, nt);
            }
        }
    }
#endif
    for (; x < S; x++) {
        int at = flip ? S - 1 - x : x;
        for (int ch = 0; ch < 3; ch++) planes[ch][at] = dataio_input_norm_px(nm, ch, px[3 * x + nm->src[ch]]);
    }
}

/* Streaming stores are weakly ordered: fence before the batch is published. */
static void stream_fence(void)
{
#ifdef __SSE2__
    _mm_sfence();
#endif
}

/* Channel each output channel is read from, and its sign, for the unflipped
 * (identity) and flipped layouts of every target dataset. */
typedef struct {
    int src[DATAIO_NDS][64];
    float sign[DATAIO_NDS][64];
} remap_t;

static void remap_init(remap_t *m, int flip)
{
    for (int d = 0; d < DATAIO_NDS; d++)
        for (int c = 0; c < dataio_ds_channels[d]; c++) {
            int src = c;
            float sign = 1;
            if (flip) {
                if (d == DATAIO_DS_HEATMAP) src = skel_heat_mirror(c);
                else if (d == DATAIO_DS_PAF) src = skel_paf_mirror(c);
                else if (d == DATAIO_DS_OFFSET) src = 2 * skel_kp_mirror[c / 2] + (c & 1);
                else if (d == DATAIO_DS_ATTENTION) src = skel_limb_mirror[c];
                /* x components point the other way in a mirror image */
                if ((d == DATAIO_DS_PAF || d == DATAIO_DS_OFFSET) && !(c & 1)) sign = -1;
            }
            m->src[d][c] = src;
            m->sign[d][c] = sign;
        }
}
static remap_t remaps[2];
static pthread_once_t remaps_once = PTHREAD_ONCE_INIT;
static void remaps_make(void)
{
    remap_init(&remaps[0], 0);
    remap_init(&remaps[1], 1);
}

/* n stored bytes to floats: (float)q * sc with q the byte read as int8 or
 * uint8, then negated where neg and nonzero, i.e. the expressions of
 * dataio_unpack_sample and dataio_flip_* (so bit for bit, and no -0). SSE2
 * does 16 at a time; nt = dst is 16-byte aligned and n % 4 == 0, so the
 * batch rows are written with streaming stores. */
static void dequantise(const uint8_t *src, size_t n, int is_signed, int neg, float sc, float *dst, int nt)
{
    size_t i = 0;
#ifdef __SSE2__
    const __m128 k = _mm_set1_ps(sc), minus = _mm_set1_ps(-0.0f), zero = _mm_setzero_ps();
    const __m128i z = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(src + i)), h[2];
        if (is_signed) { /* sign-extend by unpacking each byte with itself and shifting back */
            h[0] = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);
            h[1] = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
        } else {
            h[0] = _mm_unpacklo_epi8(v, z);
            h[1] = _mm_unpackhi_epi8(v, z);
        }
        for (int j = 0; j < 2; j++) {
            __m128i q[2] = {_mm_srai_epi32(_mm_unpacklo_epi16(h[j], h[j]), 16),
                            _mm_srai_epi32(_mm_unpackhi_epi16(h[j], h[j]), 16)};
            for (int e = 0; e < 2; e++) {
                __m128 f = _mm_mul_ps(_mm_cvtepi32_ps(q[e]), k);
                if (neg) f = _mm_xor_ps(f, _mm_and_ps(minus, _mm_cmpneq_ps(f, zero)));
                put4(dst + i + 8 * j + 4 * e, f, nt);
            }
        }
    }
#endif
    for (; i < n; i++) {
        float v = (is_signed ? (float)(int8_t)src[i] : (float)src[i]) * sc;
        dst[i] = neg && v != 0 ? -v : v;
    }
}

/* Adler-32 as zlib defines it. zlib's own loop took a third of the inflate
 * time here (~8 % of the loader); with SSE2 it is 16 bytes per few
 * instructions. Per 16-byte block starting with sums (s1, s2): s1 += sum b_i,
 * s2 += 16 s1 + sum (16 - i) b_i. */
#define ADLER_MOD 65521u
#define ADLER_NMAX 5552 /* zlib's bound: s2 of a run this long fits in 32 bits before the modulo */
static uint32_t adler32_fast(uint32_t adler, const uint8_t *p, size_t n)
{
    uint32_t s1 = adler & 0xffff, s2 = adler >> 16;
    while (n) {
        size_t run = n < ADLER_NMAX ? n : ADLER_NMAX;
        n -= run;
        size_t i = 0;
#ifdef __SSE2__
        size_t nv = run / 16;
        if (nv) {
            const __m128i z = _mm_setzero_si128();
            const __m128i w_lo = _mm_setr_epi16(16, 15, 14, 13, 12, 11, 10, 9), w_hi = _mm_setr_epi16(8, 7, 6, 5, 4, 3, 2, 1);
            __m128i v1 = z, v1acc = z, v2 = z; /* 32-bit lanes; none comes near overflow within one run */
            for (size_t k = 0; k < nv; k++) {
                __m128i v = _mm_loadu_si128((const __m128i *)(p + 16 * k));
                v1acc = _mm_add_epi32(v1acc, v1); /* the byte sum before this block, once per block */
                v1 = _mm_add_epi32(v1, _mm_sad_epu8(v, z));
                v2 = _mm_add_epi32(v2, _mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi8(v, z), w_lo),
                                                     _mm_madd_epi16(_mm_unpackhi_epi8(v, z), w_hi)));
            }
            uint32_t a1[4], aa[4], a2[4];
            _mm_storeu_si128((__m128i *)a1, v1);
            _mm_storeu_si128((__m128i *)aa, v1acc);
            _mm_storeu_si128((__m128i *)a2, v2);
            uint64_t sum1 = (uint64_t)a1[0] + a1[2], acc = (uint64_t)aa[0] + aa[2];
            uint64_t t2 = s2 + (uint64_t)s1 * 16 * nv + 16 * acc + a2[0] + a2[1] + a2[2] + a2[3];
            s1 = (uint32_t)((s1 + sum1) % ADLER_MOD);
            s2 = (uint32_t)(t2 % ADLER_MOD);
            i = 16 * nv;
        }
#endif
        for (; i < run; i++) {
            s1 += p[i];
            s2 += s1;
        }
        s1 %= ADLER_MOD;
        s2 %= ADLER_MOD;
        p += run;
    }
    return (s2 << 16) | s1;
}

/* Rows of w floats, each reversed (values moved, not computed). */
static void reverse_rows(const float *src, float *dst, int h, int w)
{
    for (int y = 0; y < h; y++) {
        const float *s = src + (size_t)y * w;
        float *d = dst + (size_t)y * w;
        int x = 0;
#ifdef __SSE2__
        for (; x + 4 <= w; x += 4) {
            __m128 v = _mm_loadu_ps(s + w - 4 - x);
            _mm_storeu_ps(d + x, _mm_shuffle_ps(v, v, _MM_SHUFFLE(0, 1, 2, 3)));
        }
#endif
        for (; x < w; x++) d[x] = s[w - 1 - x];
    }
}

/* Inflates and dequantises dataset d of one sample straight into its batch
 * rows, mirrored when flip, with the shard's own scale. Unflipped planes go
 * straight to the batch; mirrored ones are reversed in two cache-resident
 * planes first (a mirrored row is not 16-byte aligned in the batch). */
static void unpack_target(const dataio_loader *L, scratch_t *w, int d, int flip, float sc, float *out, const char *what)
{
    int gh = L->grid_h, gw = L->grid_w, nc = dataio_ds_channels[d];
    size_t hw = (size_t)gh * gw, n = nc * hw;
    const dataio_packed *p = &w->packed;
    const uint8_t *q = p->chunk[d];
    if (!p->raw[d]) {
        w->zs.next_in = p->chunk[d];
        w->zs.avail_in = (uInt)p->chunk_len[d];
        w->zs.next_out = w->inflated;
        w->zs.avail_out = (uInt)n;
        /* one inflate state per thread, reset per chunk: no allocation per target */
        int zr = inflateReset(&w->zs);
        if (zr == Z_OK) zr = inflate(&w->zs, Z_FINISH);
        WORKER_CHECK(zr == Z_STREAM_END && w->zs.total_out == n, "%s: corrupt %s chunk (zlib %d, %lu of %zu bytes)", what,
                     dataio_ds_names[d], zr, (unsigned long)w->zs.total_out, n);
#if LOADER_OWN_ADLER
        /* inflate consumed the big-endian Adler-32 trailer but left checking it to us */
        const uint8_t *t = w->zs.next_in - 4;
        uint32_t want = (uint32_t)t[0] << 24 | (uint32_t)t[1] << 16 | (uint32_t)t[2] << 8 | t[3];
        WORKER_CHECK(w->zs.next_in - p->chunk[d] >= 6 && adler32_fast(1, w->inflated, n) == want,
                     "%s: corrupt %s chunk (Adler-32 mismatch)", what, dataio_ds_names[d]);
#endif
        q = w->inflated;
    } else {
        WORKER_CHECK(p->chunk_len[d] == n, "%s: %s has %zu bytes, expected %zu", what, dataio_ds_names[d], p->chunk_len[d], n);
    }
    const remap_t *m = &remaps[flip];
    int is_signed = d == DATAIO_DS_PAF || d == DATAIO_DS_OFFSET;
    int nt = (uintptr_t)out % 16 == 0 && hw % 4 == 0;
    for (int c = 0; c < nc; c++) {
        const uint8_t *src = q + (size_t)m->src[d][c] * hw;
        int neg = m->sign[d][c] < 0;
        float *dst = out + (size_t)c * hw;
        if (!flip) {
            dequantise(src, hw, is_signed, neg, sc, dst, nt);
        } else {
            dequantise(src, hw, is_signed, neg, sc, w->plane, 0);
            reverse_rows(w->plane, w->plane2, gh, gw);
            stream_copy(dst, w->plane2, hw);
        }
    }
}

/* libjpeg reports errors through a callback; we longjmp out of it. */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    int truncated;
    char warning[JMSG_LENGTH_MAX]; /* the first libjpeg warning */
} jerr_t;

static void jerr_exit(j_common_ptr ci) { longjmp(((jerr_t *)ci->err)->jump, 1); }
static void jerr_message(j_common_ptr ci, int level)
{
    /* a premature end or corrupt data mean invented pixels: refuse, like the
     * reader does (dataio_decode_crop); our own crops never warn otherwise */
    jerr_t *e = (jerr_t *)ci->err;
    if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    if (level < 0 && !e->warning[0]) (*ci->err->format_message)(ci, e->warning);
}

/* Row r of the decoder's output rows. libjpeg-turbo's SIMD colour conversion
 * writes rows that start on a 16-byte boundary with non-temporal stores, which
 * sends them to DRAM just before we read them back (measured: the float
 * conversion then spent most of its time waiting on those loads, ~30 % of the
 * loader). Rows that start 8 bytes past a 64-byte boundary take its ordinary
 * store path and stay in cache; the pixels are the same either way. */
static size_t jpeg_row_stride(int S) { return ((size_t)S * 3 + 63) & ~(size_t)63; }
static size_t jpeg_rows_bytes(int S) { return LOADER_JPEG_ROWS * jpeg_row_stride(S) + 128; }
static uint8_t *jpeg_row(uint8_t *buf, int S, int r)
{
    uint8_t *base = (uint8_t *)(((uintptr_t)buf + 63) & ~(uintptr_t)63) + 8;
    return base + (size_t)r * jpeg_row_stride(S);
}

/* Decodes the crop's JPEG straight into normalised float CHW, mirrored when
 * flip, a few rows at a time (no full RGB image in between). Returns 0, or -1
 * with the libjpeg message in msg. */
static int decode_image(const dataio_loader *L, scratch_t *w, int flip, float *out, char *msg)
{
    const dataio_packed *p = &w->packed;
    int S = L->size;
    size_t plane = (size_t)S * S;
    struct jpeg_decompress_struct ci;
    jerr_t je;
    ci.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jerr_exit;
    je.mgr.emit_message = jerr_message;
    je.truncated = 0;
    je.warning[0] = 0;
    if (p->jpeg_len < 3 || p->jpeg[0] != 0xFF || p->jpeg[1] != 0xD8 || p->jpeg[2] != 0xFF) {
        /* the same verdict as dataio_decode_crop, so every reader treats a PNG alike */
        snprintf(msg, JMSG_LENGTH_MAX, "crop is not a JPEG%s (shards hold JPEG crops only)",
                 p->jpeg_len >= 4 && !memcmp(p->jpeg, "\x89PNG", 4) ? " but a PNG" : "");
        return -1;
    }
    if (setjmp(je.jump)) {
        (*ci.err->format_message)((j_common_ptr)&ci, msg);
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, p->jpeg, (unsigned long)p->jpeg_len);
    jpeg_read_header(&ci, TRUE);
    ci.out_color_space = JCS_RGB;
    jpeg_start_decompress(&ci);
    if ((int)ci.output_width != S || (int)ci.output_height != S || ci.output_components != 3) {
        snprintf(msg, JMSG_LENGTH_MAX, "crop is %ux%u with %d components, expected %dx%d RGB", ci.output_width,
                 ci.output_height, ci.output_components, S, S);
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    int nt = (uintptr_t)out % 16 == 0 && S % 4 == 0;
    JSAMPROW rows[LOADER_JPEG_ROWS];
    for (int r = 0; r < LOADER_JPEG_ROWS; r++) rows[r] = jpeg_row(w->rows, S, r);
    while (ci.output_scanline < ci.output_height) {
        int y0 = (int)ci.output_scanline;
        int got = (int)jpeg_read_scanlines(&ci, rows, LOADER_JPEG_ROWS);
        for (int r = 0; r < got; r++) {
            float *dst = out + (size_t)(y0 + r) * S;
            float *const planes[3] = {dst, dst + plane, dst + 2 * plane};
            rgb_row_out(rows[r], planes, &L->norm, S, flip, nt);
        }
        if (!got) break;
    }
    if (je.truncated || je.warning[0]) {
        if (je.truncated) snprintf(msg, JMSG_LENGTH_MAX, "truncated JPEG (premature end of data)");
        else snprintf(msg, JMSG_LENGTH_MAX, "%.150s", je.warning);
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    if (je.warning[0]) {
        snprintf(msg, JMSG_LENGTH_MAX, "%.150s", je.warning);
        return -1;
    }
    return 0;
}

/* A skipped corrupt sample: image 0 (the normalised mean), targets
 * and mask 0, so it adds nothing to the loss; the batch keeps its shape and
 * the run its sample order. */
static void skip_sample(dataio_loader *L, float *image, float *const outs[DATAIO_NDS])
{
    size_t hw = (size_t)L->grid_h * L->grid_w;
    memset(image, 0, sizeof(float) * 3 * L->size * L->size);
    for (int d = 0; d < DATAIO_NDS; d++) memset(outs[d], 0, sizeof(float) * dataio_ds_channels[d] * hw);
    pthread_mutex_lock(&L->mu);
    L->corrupt++;
    pthread_mutex_unlock(&L->mu);
}

/* Shards of one glob must come from one recipe: a stale shard of an earlier
 * `sspose data` run (another seed or augmentation) would otherwise mix two
 * datasets silently. data.mix_shards=1 allows it on purpose. */
static void check_same_recipe(const dataio_loader *L, int i)
{
    const dataio_shard_attrs *a = dataio_shard_info(L->shards[0]), *b = dataio_shard_info(L->shards[i]);
    char what[1300] = "";
    if (a->seed != b->seed)
        snprintf(what, sizeof what, "seed %lld vs %lld", (long long)a->seed, (long long)b->seed);
    else if (strcmp(a->augment, b->augment))
        snprintf(what, sizeof what, "augment '%.500s' vs '%.500s'", a->augment, b->augment);
    else if (a->sigma != b->sigma || a->paf_width != b->paf_width)
        snprintf(what, sizeof what, "targets sigma %g paf_width %g vs sigma %g paf_width %g", a->sigma, a->paf_width,
                 b->sigma, b->paf_width);
    CHECK(!what[0], "loader: shards '%s' and '%s' were made differently (%s); remove the stale ones or set "
          "data.mix_shards=1 to train on both", L->paths[0], L->paths[i], what);
}

static void decode_item(dataio_loader *L, scratch_t *w, slot_t *s, int j)
{
    int64_t g = s->b.index[j];
    int f = shard_of(L, g);
    long local = (long)(g - L->first[f]);
    /* only the JPEG is read under the HDF5 lock; keypoints and meta are not needed here */
    dataio_shard_read_packed_parts(L->shards[f], local, DATAIO_PART_JPEG | DATAIO_PART_TARGETS, &w->packed);
    char what[1100], msg[JMSG_LENGTH_MAX];
    snprintf(what, sizeof what, "%s sample %ld", L->paths[f], local);
    int flip = s->b.flipped[j];
    size_t hw = (size_t)L->grid_h * L->grid_w;
    float *image = s->b.image + (size_t)j * 3 * L->size * L->size;
    float *outs[DATAIO_NDS] = {s->b.mask + (size_t)j * hw, s->b.heatmap + (size_t)j * 19 * hw,
                               s->b.paf + (size_t)j * 38 * hw, s->b.offset + (size_t)j * 36 * hw,
                               s->b.attention + (size_t)j * 19 * hw};
    int bad = dataio_packed_check(&w->packed, msg, sizeof msg) != 0;
    if (!bad && decode_image(L, w, flip, image, msg) != 0) {
        char m2[JMSG_LENGTH_MAX + 32];
        snprintf(m2, sizeof m2, "corrupt JPEG: %s", msg);
        snprintf(msg, sizeof msg, "%.190s", m2);
        bad = 1;
    }
    if (bad) {
        WORKER_CHECK(L->o.skip_corrupt, "%s: %s (set data.skip_corrupt=1 to skip and count such samples)", what, msg);
        skip_sample(L, image, outs);
        return;
    }
    const float *scale = dataio_shard_info(L->shards[f])->scale;
    for (int d = 0; d < DATAIO_NDS; d++) unpack_target(L, w, d, flip, scale[d], outs[d], what);
    stream_fence();
}

/* Takes one pending item (lock held): from `only` when given, else the oldest filling slot. */
static int take_item(dataio_loader *L, slot_t *only, slot_t **sp, int *jp)
{
    int64_t base = L->consumed; /* slots in step order starting at the next batch */
    for (int i = 0; i < L->nslots; i++) {
        slot_t *s = &L->slots[(base + i) % L->nslots];
        if (only && s != only) continue;
        if (s->state == SLOT_FILLING && s->next_item < s->b.n) {
            *sp = s;
            *jp = s->next_item++;
            return 1;
        }
    }
    return 0;
}

/* Decodes one item outside the lock (lock held on entry and exit). */
static void run_item(dataio_loader *L, scratch_t *w, slot_t *s, int j)
{
    pthread_mutex_unlock(&L->mu);
    double t0 = now_s(), c0 = cpu_s();
    decode_item(L, w, s, j);
    double dt = now_s() - t0, dc = cpu_s() - c0;
    pthread_mutex_lock(&L->mu);
    L->busy_s += dt;
    L->cpu_s += dc;
    L->samples++;
    if (++s->done == s->b.n) {
        s->state = SLOT_READY;
        pthread_cond_broadcast(&L->done_cv);
    }
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    dataio_loader *L = wa->L;
    scratch_t *w = &L->scratch[wa->id];
    pthread_mutex_lock(&L->mu);
    for (;;) {
        slot_t *s;
        int j;
        while (!L->stop && !take_item(L, NULL, &s, &j)) pthread_cond_wait(&L->work_cv, &L->mu);
        if (L->stop) break;
        run_item(L, w, s, j);
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- open / close ---- */
static void *buf_alloc(dataio_loader *L, size_t bytes)
{
    void *p = L->o.alloc ? L->o.alloc(bytes, L->o.alloc_ctx) : malloc(bytes);
    CHECK(p, "loader: cannot allocate %zu bytes for batch buffers", bytes);
    memset(p, 0, bytes); /* fault the pages in now, not during the first steps */
    return p;
}

static void buf_free(dataio_loader *L, void *p)
{
    if (!p) return;
    if (L->o.free) L->o.free(p, L->o.alloc_ctx);
    else if (!L->o.alloc) free(p);
}

static void find_shards(dataio_loader *L, const char *pattern)
{
    glob_t g;
    memset(&g, 0, sizeof g);
    char *pats = core_strdup(pattern), *save = NULL;
    int flags = 0, any = 0;
    for (char *t = strtok_r(pats, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ') t++;
        if (!*t) continue;
        any = 1;
        size_t before = g.gl_pathc;
        int rc = glob(t, flags, NULL, &g);
        CHECK(rc == 0 || rc == GLOB_NOMATCH, "loader: cannot expand shard glob '%s' (read error)", t);
        /* a misspelt part of a list would silently drop a dataset */
        CHECK(g.gl_pathc > before, "loader: no shard file matches '%s' (data.train)", t);
        flags = GLOB_APPEND;
    }
    free(pats);
    CHECK(any, "loader: empty shard glob (set data.train)");
    L->nshards = (int)g.gl_pathc;
    L->paths = core_calloc(L->nshards, sizeof *L->paths);
    for (int i = 0; i < L->nshards; i++) {
        /* overlapping globs would silently double a shard's weight */
        for (int k = 0; k < i; k++)
            CHECK(strcmp(g.gl_pathv[k], g.gl_pathv[i]), "loader: shard '%s' matched twice by '%s'", g.gl_pathv[i], pattern);
        L->paths[i] = core_strdup(g.gl_pathv[i]);
    }
    globfree(&g);
}

dataio_loader *dataio_loader_open(const dataio_loader_opts *opts, const dataio_loader_state *resume)
{
    CHECK(opts->pattern, "loader: no shard glob given (data.train)");
    CHECK(opts->world >= 1 && opts->rank >= 0 && opts->rank < opts->world, "loader: bad rank %d of %d", opts->rank,
          opts->world);
    CHECK(opts->batch >= 1, "loader: batch must be at least 1 (train.batch = %d)", opts->batch);
    CHECK(opts->flip >= 0 && opts->flip <= 1, "loader: flip probability %g outside [0, 1]", opts->flip);
    CHECK(opts->threads >= 0 && opts->threads <= 256, "loader: bad thread count %d", opts->threads);
    CHECK(opts->prefetch >= 1 && opts->prefetch < NSLOT_MAX, "loader: prefetch must be in [1, %d]", NSLOT_MAX - 1);
    CHECK(!opts->alloc == !opts->free, "loader: give both alloc and free hooks, or neither");
    dataio_loader *L = core_calloc(1, sizeof *L);
    L->o = *opts;
    L->norm = dataio_input_norm_get(opts->input_norm);
    L->o.pattern = core_strdup(opts->pattern);
    find_shards(L, opts->pattern);

    L->shards = core_calloc(L->nshards, sizeof *L->shards);
    L->first = core_calloc(L->nshards + 1, sizeof *L->first);
    for (int i = 0; i < L->nshards; i++) {
        L->shards[i] = dataio_shard_open(L->paths[i]);
        const dataio_shard_attrs *a = dataio_shard_info(L->shards[i]);
        if (i == 0) {
            L->size = a->input_size;
            L->grid_h = a->grid_h;
            L->grid_w = a->grid_w;
        }
        CHECK(a->input_size == L->size && a->grid_h == L->grid_h && a->grid_w == L->grid_w,
              "loader: shard '%s' has crop %d grid %dx%d, but '%s' has %d grid %dx%d", L->paths[i], a->input_size,
              a->grid_h, a->grid_w, L->paths[0], L->size, L->grid_h, L->grid_w);
        if (i > 0 && !opts->mix_shards) check_same_recipe(L, i);
        L->first[i + 1] = L->first[i] + dataio_shard_count(L->shards[i]);
    }
    L->total = L->first[L->nshards];
    L->gbatch = (int64_t)opts->batch * opts->world;
    CHECK(L->total >= L->gbatch, "loader: '%s' holds %lld samples, fewer than one global batch (%d ranks x %d)",
          opts->pattern, (long long)L->total, opts->world, opts->batch);

    if (resume) {
        CHECK(resume->total == L->total, "loader: resume state is for %lld samples but '%s' holds %lld (shards changed?)",
              (long long)resume->total, opts->pattern, (long long)L->total);
        CHECK(resume->seed == opts->seed, "loader: resume state has seed %llu but train.seed is %llu",
              (unsigned long long)resume->seed, (unsigned long long)opts->seed);
        CHECK(resume->epoch >= 0 && resume->position >= 0 && resume->position <= L->total && resume->step >= 0,
              "loader: corrupt resume state (epoch %lld, position %lld)", (long long)resume->epoch,
              (long long)resume->position);
        L->start_epoch = resume->epoch;
        L->start_pos = resume->position;
        L->start_step = resume->step;
    }
    if (L->start_pos + L->gbatch > L->total) { /* the rest of the epoch is dropped */
        L->start_epoch++;
        L->start_pos = 0;
    }

    L->perm = core_malloc((size_t)L->total * sizeof *L->perm);
    L->perm_epoch = -1;
    L->nslots = opts->prefetch + 1;
    size_t hw = (size_t)L->grid_h * L->grid_w, B = opts->batch;
    for (int i = 0; i < L->nslots; i++) {
        dataio_batch *b = &L->slots[i].b;
        b->n = opts->batch;
        b->size = L->size;
        b->grid_h = L->grid_h;
        b->grid_w = L->grid_w;
        size_t bytes[6] = {B * 3 * L->size * L->size * 4, B * 19 * hw * 4, B * 38 * hw * 4,
                           B * 36 * hw * 4, B * 19 * hw * 4, B * hw * 4};
        memcpy(b->bytes, bytes, sizeof bytes);
        b->image = buf_alloc(L, bytes[0]);
        b->heatmap = buf_alloc(L, bytes[1]);
        b->paf = buf_alloc(L, bytes[2]);
        b->offset = buf_alloc(L, bytes[3]);
        b->attention = buf_alloc(L, bytes[4]);
        b->mask = buf_alloc(L, bytes[5]);
        b->index = core_malloc(B * sizeof *b->index);
        b->flipped = core_malloc(B);
    }
    for (int64_t k = 0; k < L->nslots; k++) assign_slot(L, k);

    CHECK(pthread_mutex_init(&L->mu, NULL) == 0 && pthread_cond_init(&L->work_cv, NULL) == 0 &&
          pthread_cond_init(&L->done_cv, NULL) == 0, "loader: cannot create thread locks");
    L->nthreads = opts->threads;
    L->scratch = core_calloc(L->nthreads + 1, sizeof *L->scratch);
    for (int i = 0; i <= L->nthreads; i++) {
        L->scratch[i].inflated = core_malloc((size_t)DATAIO_PAF_CH * hw);
        L->scratch[i].rows = core_malloc(jpeg_rows_bytes(L->size));
        L->scratch[i].plane = core_malloc(sizeof(float) * hw);
        L->scratch[i].plane2 = core_malloc(sizeof(float) * hw);
        CHECK(inflateInit(&L->scratch[i].zs) == Z_OK, "zlib: inflateInit failed");
#if LOADER_OWN_ADLER
        CHECK(inflateValidate(&L->scratch[i].zs, 0) == Z_OK, "zlib: inflateValidate failed");
#endif
    }
    pthread_once(&remaps_once, remaps_make);
    L->threads = core_calloc(L->nthreads ? L->nthreads : 1, sizeof *L->threads);
    worker_arg *wa = L->wargs = core_calloc(L->nthreads ? L->nthreads : 1, sizeof *wa);
    clock_gettime(CLOCK_MONOTONIC, &L->t_open);
    for (int i = 0; i < L->nthreads; i++) {
        wa[i] = (worker_arg){L, i + 1};
        CHECK(pthread_create(&L->threads[i], NULL, worker_main, &wa[i]) == 0, "loader: cannot start worker thread %d", i);
    }
    return L;
}

dataio_loader_opts dataio_loader_opts_from_config(const core_config *cfg, int rank, int world)
{
    dataio_loader_opts o = {.pattern = cfg->data.train, .rank = rank, .world = world, .batch = cfg->train.batch,
                            .seed = (uint64_t)cfg->train.seed, .flip = cfg->data.flip, .threads = cfg->data.threads,
                            .prefetch = cfg->data.prefetch, .input_norm = cfg->model.input_norm,
                            .skip_corrupt = cfg->data.skip_corrupt, .mix_shards = cfg->data.mix_shards};
    return o;
}

const dataio_batch *dataio_loader_next(dataio_loader *L)
{
    int64_t k = L->consumed;
    slot_t *s = &L->slots[k % L->nslots];
    double t0 = now_s();
    pthread_mutex_lock(&L->mu);
    if (s->state == SLOT_OUT || s->state == SLOT_FREE) {
        pthread_mutex_unlock(&L->mu);
        CORE_DIE("loader: next() with %d batches unreleased (release each batch before taking %d more)", L->nslots,
                 L->nslots);
    }
    while (s->state != SLOT_READY) {
        slot_t *sp;
        int j;
        /* The caller decodes its own batch rather than idling (and is the only decoder with 0 threads). */
        if (take_item(L, s, &sp, &j)) run_item(L, &L->scratch[0], sp, j);
        else pthread_cond_wait(&L->done_cv, &L->mu);
    }
    s->state = SLOT_OUT;
    L->consumed++;
    L->wait_s += now_s() - t0;
    pthread_mutex_unlock(&L->mu);
    return &s->b;
}

void dataio_loader_release(dataio_loader *L, const dataio_batch *b)
{
    int64_t k = b->step - L->start_step;
    pthread_mutex_lock(&L->mu);
    if (!(k >= 0 && k < L->consumed && &L->slots[k % L->nslots].b == b && L->slots[k % L->nslots].state == SLOT_OUT)) {
        pthread_mutex_unlock(&L->mu);
        CORE_DIE("loader: release of a batch that is not out (step %lld)", (long long)b->step);
    }
    assign_slot(L, k + L->nslots);
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
}

void dataio_loader_get_state(const dataio_loader *L, dataio_loader_state *st)
{
    int64_t epoch, pos;
    step_position(L, L->consumed, &epoch, &pos);
    st->seed = L->o.seed;
    st->epoch = epoch;
    st->position = pos;
    st->total = L->total;
    st->step = L->start_step + L->consumed;
}

int64_t dataio_loader_total(const dataio_loader *L) { return L->total; }
int64_t dataio_loader_steps_per_epoch(const dataio_loader *L) { return L->total / L->gbatch; }

void dataio_loader_get_stats(const dataio_loader *L, dataio_loader_stats *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&L->mu);
    s->samples = L->samples;
    s->busy_s = L->busy_s;
    s->cpu_s = L->cpu_s;
    s->wait_s = L->wait_s;
    s->corrupt = L->corrupt;
    pthread_mutex_unlock((pthread_mutex_t *)&L->mu);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    s->wall_s = (t.tv_sec - L->t_open.tv_sec) + 1e-9 * (t.tv_nsec - L->t_open.tv_nsec);
    s->per_thread = s->busy_s > 0 ? s->samples / s->busy_s : 0;
    s->per_core = s->cpu_s > 0 ? s->samples / s->cpu_s : 0;
}

void dataio_loader_close(dataio_loader *L)
{
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    L->stop = 1;
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < L->nthreads; i++)
        CHECK(pthread_join(L->threads[i], NULL) == 0, "loader: cannot join worker thread %d", i);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->work_cv);
    pthread_cond_destroy(&L->done_cv);
    for (int i = 0; i <= L->nthreads; i++) {
        dataio_packed_free(&L->scratch[i].packed);
        free(L->scratch[i].inflated);
        free(L->scratch[i].rows);
        free(L->scratch[i].plane);
        free(L->scratch[i].plane2);
        inflateEnd(&L->scratch[i].zs);
    }
    for (int i = 0; i < L->nslots; i++) {
        dataio_batch *b = &L->slots[i].b;
        buf_free(L, b->image);
        buf_free(L, b->heatmap);
        buf_free(L, b->paf);
        buf_free(L, b->offset);
        buf_free(L, b->attention);
        buf_free(L, b->mask);
        free(b->index);
        free(b->flipped);
    }
    for (int i = 0; i < L->nshards; i++) {
        dataio_shard_close(L->shards[i]);
        free(L->paths[i]);
    }
    free(L->shards);
    free(L->paths);
    free(L->first);
    free(L->perm);
    free(L->threads);
    free(L->wargs);
    free(L->scratch);
    free((char *)L->o.pattern);
    free(L);
}

void dataio_loader_state_pack(const dataio_loader_state *st, int64_t out[DATAIO_LOADER_STATE_LEN])
{
    out[0] = STATE_VERSION;
    out[1] = (int64_t)st->seed;
    out[2] = st->epoch;
    out[3] = st->position;
    out[4] = st->total;
    out[5] = st->step;
}

int dataio_loader_state_check(const int64_t in[DATAIO_LOADER_STATE_LEN], char *err, size_t errlen)
{
    if (in[0] != STATE_VERSION) {
        snprintf(err, errlen, "not a loader state (version word %llx)", (unsigned long long)in[0]);
        return -1;
    }
    if (!(in[2] >= 0 && in[3] >= 0 && in[4] > 0 && in[3] <= in[4] && in[5] >= 0)) {
        snprintf(err, errlen, "corrupt loader state (epoch %lld, position %lld of %lld, step %lld)", (long long)in[2],
                 (long long)in[3], (long long)in[4], (long long)in[5]);
        return -1;
    }
    return 0;
}

void dataio_loader_state_unpack(const int64_t in[DATAIO_LOADER_STATE_LEN], dataio_loader_state *st)
{
    char err[200];
    CHECK(dataio_loader_state_check(in, err, sizeof err) == 0, "loader: %s", err);
    st->seed = (uint64_t)in[1];
    st->epoch = in[2];
    st->position = in[3];
    st->total = in[4];
    st->step = in[5];
}
