/* The fastfood product on CPU in one pass per block: rows of P·x and Pᵀ·g (fastfood_kernel.py).

   For run r and block b of L = 2^p rows (worker/subspace/projection.py, FastfoodProjection):

       V_b·x   = S_b·H·G_b·Π_b·H·B_b·x           (Π_b y)_i = y_{Π_b(i)}
       V_bᵀ·g  = B_b·H·Π_bᵀ·G_b·H·S_b·g          (Π_bᵀ z)_{Π_b(i)} = z_i

   H is the unnormalised Walsh–Hadamard matrix. Each block's vector lives in two L-float buffers
   (L1/L2-resident for the L of subspace training), so a block costs one read of B_b, G_b, Π_b and
   one write (or read) of its rows: no (n, L) intermediate reaches memory, no buffer is zero-filled
   but the backward's accumulator. The tables are as small as they can be exactly: B_b as int8 (±1),
   Π_b as uint16 (L ≤ 65536), G_b as float — 7 bytes a row instead of 16, which matters because in a
   training step the network's own tensors have pushed them out of the caches. Rows outside
   [row_start, row_stop) are neither written (forward) nor read (backward: taken as 0), which is how
   the first D rows of the padded n·L are cut.

   The transform: for L ≥ 16 the four lowest butterfly stages as one 16-point transform of every
   16 consecutive floats (`fwht16`, in registers), then the stages h = 16 … L/2 three (or two) at a
   time (`stages`): a pass loads and stores each float once for several stages, and the passes, not
   the additions, are the cost (a third off a transform at L = 1,024). The permutation is a scalar
   loop: the AVX-512 gather instruction measured slower on the development CPU (AMD EPYC), and making
   the multiplies inside the 16-point pass gained nothing measurable. For L < 16 the plain butterflies.

   `idlab_fastfood_point` computes θ_D = base + P·x cut into the network's parameter tensors (the
   parts) and the squared norm of the penalised ones; its backward reads the parts' gradients where
   autograd left them and adds the penalty's 2·c·θ_D in the same pass, so a training step assembles
   no D-vector of gradients. Float32 throughout, single-threaded: a worker gives each training
   process its own core(s). */

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

/* Stages h, 2h (, 4h) of the transform in one pass: each float is loaded and stored once for two or three
   butterfly stages instead of once per stage (the passes, not the additions, are the cost). h ≥ 16. */
#if defined(__AVX512F__) || defined(__AVX2__)
#if defined(__AVX512F__)
typedef __m512 vec;
#define WIDTH 16
#define LOAD _mm512_loadu_ps
#define STORE _mm512_storeu_ps
#define ADD _mm512_add_ps
#define SUB _mm512_sub_ps
#else
typedef __m256 vec;
#define WIDTH 8
#define LOAD _mm256_loadu_ps
#define STORE _mm256_storeu_ps
#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps
#endif

static void stages(float *restrict a, int64_t L, int64_t h, int count) {
    const int64_t span = h << count, ways = 1 << count;
    for (int64_t i = 0; i < L; i += span)
        for (int64_t j = 0; j < h; j += WIDTH) {
            vec x[8];
            for (int k = 0; k < ways; k++) x[k] = LOAD(a + i + k * h + j);
            for (int s = 1; s < ways; s <<= 1)
                for (int k = 0; k < ways; k++)
                    if (!(k & s)) { vec u = x[k], v = x[k + s]; x[k] = ADD(u, v); x[k + s] = SUB(u, v); }
            for (int k = 0; k < ways; k++) STORE(a + i + k * h + j, x[k]);
        }
}
#else
static void stages(float *restrict a, int64_t L, int64_t h, int count) {
    for (int c = 0; c < count; c++, h <<= 1)
        for (int64_t i = 0; i < L; i += 2 * h) {
            float *restrict p = a + i, *restrict q = a + i + h;
            for (int64_t j = 0; j < h; j++) { float u = p[j], v = q[j]; p[j] = u + v; q[j] = u - v; }
        }
}
#endif

/* The stages h = 16 … L/2, after `fwht16` of every 16 floats: three at a time, then two or one. */
static void upper_stages(float *restrict a, int64_t L) {
    int64_t h = 16;
    for (; 8 * h <= L; h <<= 3) stages(a, L, h, 3);
    if (4 * h <= L) { stages(a, L, h, 2); h <<= 2; }
    if (2 * h <= L) stages(a, L, h, 1);
}

static void fwht(float *restrict a, int64_t L) {
    if (L >= 16) {
        for (int64_t i = 0; i < L; i += 16) fwht16(a + i);
        upper_stages(a, L);
        return;
    }
    for (int64_t h = 1; h < L; h <<= 1)
        for (int64_t i = 0; i < L; i += 2 * h) {
            float *restrict p = a + i, *restrict q = a + i + h;
            for (int64_t j = 0; j < h; j++) { float u = p[j], v = q[j]; p[j] = u + v; q[j] = u - v; }
        }
}

/* z = H·G_b·Π_b·H·B_b·x (y: L floats of scratch): V_b·x before its scale S_b. */
static void forward_block(int64_t L, const float *restrict x, const int8_t *restrict Bb, const float *restrict Gb,
                          const uint16_t *restrict Pb, float *restrict y, float *restrict z) {
    for (int64_t i = 0; i < L; i++) y[i] = Bb[i] * x[i];
    fwht(y, L);
    for (int64_t i = 0; i < L; i++) z[i] = Gb[i] * y[Pb[i]];
    fwht(z, L);
}

/* acc += B_b·H·Π_bᵀ·G_b·H·z (z is overwritten; w: L floats of scratch): V_bᵀ·g with z = S_b·g. */
static void backward_block(int64_t L, float *restrict z, const int8_t *restrict Bb, const float *restrict Gb,
                           const uint16_t *restrict Pb, float *restrict w, float *restrict acc) {
    fwht(z, L);
    for (int64_t i = 0; i < L; i++) w[Pb[i]] = Gb[i] * z[i];
    fwht(w, L);
    for (int64_t i = 0; i < L; i++) acc[i] += Bb[i] * w[i];
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
            forward_block(L, xr, B + at, G + at, Pi + at, y, z);
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
            const float s = S[block];
            int64_t first, last;
            block_rows(b, L, row_start, row_stop, &first, &last);
            if (first > b * L || last < (b + 1) * L) memset(z, 0, L * sizeof(float));
            for (int64_t i = first; i < last; i++) z[i - b * L] = s * gr[i - row_start];
            backward_block(L, z, B + at, G + at, Pi + at, w, acc);
        }
    }
    free(z);
    return 0;
}

/* Σ v_i² over count floats, in 16 float lanes (vectorised) summed in double. */
static double squares_sum(const float *restrict v, int64_t count) {
    float lanes[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= count; i += 16)
        for (int j = 0; j < 16; j++) lanes[j] += v[i + j] * v[i + j];
    double total = 0;
    for (int j = 0; j < 16; j++) total += lanes[j];
    for (; i < count; i++) total += (double)v[i] * v[i];
    return total;
}

/* The last part of the consecutive parts p, p+1, … that share p's feature vector. */
static int64_t same_vector(int64_t p, int64_t n_parts, const int64_t *vectors) {
    int64_t q = p;
    while (q + 1 < n_parts && vectors[q + 1] == vectors[p]) q++;
    return q;
}

/* θ_D = base + P·x_v as its parts: parts[p][i − bounds[p]] = base[i] + (P·x_{vectors[p]})_i for
   bounds[p] ≤ i < bounds[p + 1], and squares[p] = Σ_i parts[p][i]² where penalized[p] (else 0).
   One projection (B, G, Pi (n, L), S (n)); x (V, L), one feature vector per vectors[p]. Consecutive
   parts of the same vector are one pass over their rows: a block that two parts share is
   transformed once. base NULL: 0. */
int idlab_fastfood_point(int64_t n, int64_t L, const float *x, const int8_t *B, const float *G, const uint16_t *Pi,
                         const float *S, const float *base, int64_t n_parts, const int64_t *bounds,
                         const int64_t *vectors, const uint8_t *penalized, float *const *parts, double *squares) {
    float *y = malloc(2 * L * sizeof(float));
    if (!y) return 1;
    float *z = y + L;
    for (int64_t p = 0; p < n_parts; p++) squares[p] = 0;
    for (int64_t p = 0; p < n_parts;) {
        const int64_t q = same_vector(p, n_parts, vectors), lo = bounds[p], hi = bounds[q + 1];
        const float *xr = x + vectors[p] * L;
        int64_t part = p;
        for (int64_t b = lo / L; b < (hi + L - 1) / L && b < n; b++) {
            const int64_t at = b * L;
            forward_block(L, xr, B + at, G + at, Pi + at, y, z);
            const float s = S[b];
            int64_t first, last;
            block_rows(b, L, lo, hi, &first, &last);
            while (first < last) {
                while (bounds[part + 1] <= first) part++;
                const int64_t stop = bounds[part + 1] < last ? bounds[part + 1] : last;
                float *out = parts[part] - bounds[part];
                if (base)
                    for (int64_t i = first; i < stop; i++) out[i] = base[i] + s * z[i - at];
                else
                    for (int64_t i = first; i < stop; i++) out[i] = s * z[i - at];
                if (penalized[part]) squares[part] += squares_sum(out + first, stop - first);
                first = stop;
            }
        }
        p = q + 1;
    }
    free(y);
    return 0;
}

/* The backward of idlab_fastfood_point: gx[v] = Σ_{p: vectors[p] = v} P[rows_p]ᵀ·(grads[p] + two_c·parts[p]
   where penalized[p]), the gradient of x given the parts' gradients (grads[p] NULL: 0) and two_c = 2·∂/∂(Σ
   squares). gx (V, L), overwritten. */
int idlab_fastfood_point_t(int64_t n, int64_t L, const int8_t *B, const float *G, const uint16_t *Pi, const float *S,
                           int64_t n_parts, const int64_t *bounds, const int64_t *vectors, const uint8_t *penalized,
                           const float *const *grads, const float *const *parts, float two_c, int64_t V, float *gx) {
    float *z = malloc(2 * L * sizeof(float));
    if (!z) return 1;
    float *w = z + L;
    memset(gx, 0, V * L * sizeof(float));
    for (int64_t p = 0; p < n_parts;) {
        const int64_t q = same_vector(p, n_parts, vectors), lo = bounds[p], hi = bounds[q + 1];
        float *acc = gx + vectors[p] * L;
        int64_t part = p;
        for (int64_t b = lo / L; b < (hi + L - 1) / L && b < n; b++) {
            const int64_t at = b * L;
            const float s = S[b];
            int64_t first, last;
            block_rows(b, L, lo, hi, &first, &last);
            if (first > at || last < at + L) memset(z, 0, L * sizeof(float));
            while (first < last) {
                while (bounds[part + 1] <= first) part++;
                const int64_t stop = bounds[part + 1] < last ? bounds[part + 1] : last;
                const float *g = grads[part] ? grads[part] - bounds[part] : NULL;
                const float *theta = parts[part] - bounds[part];
                const float c = penalized[part] ? two_c : 0;
                if (g && c != 0)
                    for (int64_t i = first; i < stop; i++) z[i - at] = s * (g[i] + c * theta[i]);
                else if (g)
                    for (int64_t i = first; i < stop; i++) z[i - at] = s * g[i];
                else
                    for (int64_t i = first; i < stop; i++) z[i - at] = s * c * theta[i];
                first = stop;
            }
            backward_block(L, z, B + at, G + at, Pi + at, w, acc);
        }
        p = q + 1;
    }
    free(z);
    return 0;
}
