/* The fastfood product on CPU in one pass per block: rows of P·x and Pᵀ·g (fastfood_kernel.py).

   For run r and block b of L = 2^p rows (worker/subspace/projection.py, FastfoodProjection):

       V_b·x   = S_b·H·G_b·Π_b·H·B_b·x           (Π_b y)_i = y_{Π_b(i)}
       V_bᵀ·g  = B_b·H·Π_bᵀ·G_b·H·S_b·g          (Π_bᵀ z)_{Π_b(i)} = z_i

   H is the unnormalised Walsh–Hadamard matrix. Each block's vector lives in two L-float buffers
   (L1/L2-resident for the L of subspace training), so a block costs one read of B_b, G_b, Π_b and
   one write (or read) of its rows: no (n, L) intermediate reaches memory, no buffer is zero-filled
   but the backward's accumulator. The tables are as small as they can be exactly: B_b as int8 (±1),
   Π_b as uint16 (L ≤ 65536), G_b as float — 7 bytes a row instead of 16, which matters because in a
   training step the network's own tensors have pushed them out of the caches. Rows outside [row_start, row_stop) are neither written (forward)
   nor read (backward: taken as 0), which is how the first D rows of the padded n·L are cut.

   The transform: for L ≥ 16 the four lowest butterfly stages as one 16-point transform of every
   16 consecutive floats (`fwht16`), then the stages h = 16 … L/2, whose inner loops the compiler
   vectorises; for L < 16 the plain butterflies. Float32 throughout, single-threaded: a worker gives each
   training process its own core(s). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* The 16-point transform of 16 consecutive floats (the four lowest butterfly stages). With AVX-512
   or AVX2, in registers: per stage a lane swap and an add, the lanes whose bit h is set taking the
   difference (partner − self) instead — a third of the time of the plain butterflies. */
#if defined(__AVX512F__)
static void fwht16(float *restrict a) {
    __m512 v = _mm512_loadu_ps(a), t;
    t = _mm512_permute_ps(v, 0xB1);                       /* h = 1: lanes 1,0,3,2,… */
    v = _mm512_mask_sub_ps(_mm512_add_ps(v, t), 0xAAAA, t, v);
    t = _mm512_permute_ps(v, 0x4E);                       /* h = 2: lanes 2,3,0,1,… */
    v = _mm512_mask_sub_ps(_mm512_add_ps(v, t), 0xCCCC, t, v);
    t = _mm512_shuffle_f32x4(v, v, 0xB1);                 /* h = 4: 128-bit lanes 1,0,3,2 */
    v = _mm512_mask_sub_ps(_mm512_add_ps(v, t), 0xF0F0, t, v);
    t = _mm512_shuffle_f32x4(v, v, 0x4E);                 /* h = 8: 128-bit lanes 2,3,0,1 */
    v = _mm512_mask_sub_ps(_mm512_add_ps(v, t), 0xFF00, t, v);
    _mm512_storeu_ps(a, v);
}
#elif defined(__AVX2__)
static __m256 fwht8(__m256 v) {
    __m256 t = _mm256_permute_ps(v, 0xB1);                /* h = 1 */
    v = _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xAA);
    t = _mm256_permute_ps(v, 0x4E);                       /* h = 2 */
    v = _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xCC);
    t = _mm256_permute2f128_ps(v, v, 0x01);               /* h = 4 */
    return _mm256_blend_ps(_mm256_add_ps(v, t), _mm256_sub_ps(t, v), 0xF0);
}

static void fwht16(float *restrict a) {
    __m256 u = fwht8(_mm256_loadu_ps(a)), v = fwht8(_mm256_loadu_ps(a + 8));
    _mm256_storeu_ps(a, _mm256_add_ps(u, v));             /* h = 8 */
    _mm256_storeu_ps(a + 8, _mm256_sub_ps(u, v));
}
#else
static void fwht16(float *restrict a) {
    float t[16];
    for (int i = 0; i < 16; i += 2) { t[i] = a[i] + a[i + 1]; t[i + 1] = a[i] - a[i + 1]; }
    for (int i = 0; i < 16; i += 4)
        for (int j = 0; j < 2; j++) { float u = t[i + j], v = t[i + j + 2]; t[i + j] = u + v; t[i + j + 2] = u - v; }
    for (int i = 0; i < 16; i += 8)
        for (int j = 0; j < 4; j++) { float u = t[i + j], v = t[i + j + 4]; t[i + j] = u + v; t[i + j + 4] = u - v; }
    for (int j = 0; j < 8; j++) { float u = t[j], v = t[j + 8]; a[j] = u + v; a[j + 8] = u - v; }
}
#endif

static void fwht(float *restrict a, int64_t L) {
    int64_t h = 1;
    if (L >= 16) {
        for (int64_t i = 0; i < L; i += 16) fwht16(a + i);
        h = 16;
    }
    for (; h < L; h <<= 1)
        for (int64_t i = 0; i < L; i += 2 * h) {
            float *restrict p = a + i, *restrict q = a + i + h;
            for (int64_t j = 0; j < h; j++) { float u = p[j], v = q[j]; p[j] = u + v; q[j] = u - v; }
        }
}

/* The rows [first, last) of block b (rows b·L … (b+1)·L − 1) that lie in [row_start, row_stop). */
static void block_rows(int64_t b, int64_t L, int64_t row_start, int64_t row_stop, int64_t *first, int64_t *last) {
    *first = b * L < row_start ? row_start : b * L;
    *last = (b + 1) * L > row_stop ? row_stop : (b + 1) * L;
}

/* out[r, i − row_start] = base[r, i] + (P^r·x_r)_i for row_start ≤ i < row_stop (base NULL: 0).
   x (K, L); B (K, n, L) int8; G (K, n, L); Pi (K, n, L) uint16; S (K, n); base (K, base_width);
   out (K, row_stop − row_start).
   shared = 1: B, G, Pi, S are (1, n, L) and (1, n), the same projection for every x_r. */
int idlab_fastfood_forward(int64_t K, int64_t n, int64_t L, const float *x, const int8_t *B, const float *G,
                           const uint16_t *Pi, const float *S, int64_t shared, const float *base, int64_t base_width,
                           float *out, int64_t row_start, int64_t row_stop) {
    float *y = malloc(2 * L * sizeof(float));
    if (!y) return 1;
    float *z = y + L;
    const int64_t rows = row_stop - row_start, b0 = row_start / L, b1 = (row_stop + L - 1) / L;
    for (int64_t r = 0; r < K; r++) {
        const float *xr = x + r * L;
        float *outr = out + r * rows;
        for (int64_t b = b0; b < b1; b++) {
            const int64_t block = (shared ? 0 : r) * n + b, at = block * L;
            const int8_t *Bb = B + at;
            const float *Gb = G + at;
            const uint16_t *Pb = Pi + at;
            for (int64_t i = 0; i < L; i++) y[i] = Bb[i] * xr[i];
            fwht(y, L);
            for (int64_t i = 0; i < L; i++) z[i] = Gb[i] * y[Pb[i]];
            fwht(z, L);
            const float s = S[block];
            int64_t first, last;
            block_rows(b, L, row_start, row_stop, &first, &last);
            if (base) {
                const float *baser = base + r * base_width;
                for (int64_t i = first; i < last; i++) outr[i - row_start] = baser[i] + s * z[i - b * L];
            } else {
                for (int64_t i = first; i < last; i++) outr[i - row_start] = s * z[i - b * L];
            }
        }
    }
    free(y);
    return 0;
}

/* gx[r] = Σ_b V^r_bᵀ·g_b, with g the rows [row_start, row_stop) of the gradient (0 elsewhere).
   g (K, row_stop − row_start); gx (K, L), overwritten. */
int idlab_fastfood_backward(int64_t K, int64_t n, int64_t L, const float *g, const int8_t *B, const float *G,
                            const uint16_t *Pi, const float *S, int64_t shared, float *gx, int64_t row_start,
                            int64_t row_stop) {
    float *z = malloc(2 * L * sizeof(float));
    if (!z) return 1;
    float *w = z + L;
    const int64_t rows = row_stop - row_start, b0 = row_start / L, b1 = (row_stop + L - 1) / L;
    for (int64_t r = 0; r < K; r++) {
        const float *gr = g + r * rows;
        float *acc = gx + r * L;
        memset(acc, 0, L * sizeof(float));
        for (int64_t b = b0; b < b1; b++) {
            const int64_t block = (shared ? 0 : r) * n + b, at = block * L;
            const int8_t *Bb = B + at;
            const float *Gb = G + at;
            const uint16_t *Pb = Pi + at;
            const float s = S[block];
            int64_t first, last;
            block_rows(b, L, row_start, row_stop, &first, &last);
            if (first > b * L || last < (b + 1) * L) memset(z, 0, L * sizeof(float));
            for (int64_t i = first; i < last; i++) z[i - b * L] = s * gr[i - row_start];
            fwht(z, L);
            for (int64_t i = 0; i < L; i++) w[Pb[i]] = Gb[i] * z[i];
            fwht(w, L);
            for (int64_t i = 0; i < L; i++) acc[i] += Bb[i] * w[i];
        }
    }
    free(z);
    return 0;
}
