/* int4 and int8 weight-only linears on CPUs with AVX2: out = x @ w.T (+ bias), where
 * int4: w = (q - 8) * scale + zero per group of input columns, int8: w = q * scale per
 * output channel (engine/models/quantization.py).
 *
 * Built and loaded like cpu_linear.c (kernels/cpu_build.py). A decode step streams every
 * weight once, so the values must be multiplied where they are loaded, with as few
 * instructions per value as possible: AVX2 has no bf16 dot product, and turning values
 * into floats for FMAs costs three instructions for each eight. So x is rounded to
 * integers per group of input columns (its own scale each), and integer dot products
 * multiply them with the stored values into exact int32 sums. Laid out by
 * kernels/cpu_quantized.py:
 *  - int4: x as int8 per weight group (the largest magnitude maps to 127, as llama.cpp's
 *    Q8_0 rounds x for its 4-bit weights, in blocks of 32). Byte 4m + j of a step's 32
 *    holds output channel m's values at columns k0 + j (low nibble) and k0 + 4 + j (high
 *    nibble), so a mask and a shift give 8 channels x 4 columns twice, and `vpmaddubsw`
 *    (unsigned q times signed x, pairs summed to int16, at most 4 * 15 * 127 a step) and
 *    `vpmaddwd` by ones (every 4 steps, before int16 could overflow) sum them; VNNI's
 *    `vpdpbusd` does both at once. Per group the sums get the scales and zero once:
 *    sum_k w_k x_k = scale * x_scale * sum_k q_k x8_k + (zero - 8 * scale) * sum_k x_k.
 *  - int8: x as int16 per INT8_GROUP columns (a relative step of 2^-15: int8 weights are
 *    for accuracy). Bytes 2m and 2m + 1 hold a pair of output channel m, so 16 bytes
 *    sign-extended give 8 channels' pairs for `vpmaddwd`; the channel's scale at the end.
 * Every output's sums run in the same order whatever the number of rows or tiles
 * processed together, so a row's result never depends on the rows beside it.
 */
#include <stdint.h>
#include <stdlib.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>

#define TILE 8          /* output channels per tile: one 8-lane accumulator */
#define CHUNK 8         /* input columns per step: 4 pairs */
#define WORK 4          /* (tile, row) pairs per pass */
#define QUAD 4          /* tiles per parallel work item */
#define PREFETCH 256    /* bytes ahead */
#define FLUSH 4         /* int4 without VNNI: steps summed in int16, 4 * 4 * 15 * 127 < 2^15 */
#define MAX_GROUP 4096  /* int4: the largest group taken; its sums reach 4096 * 15 * 127 << 2^31 */
#define INT8_GROUP 128  /* int8: x's groups; 128 * 127 * 32767 < 2^31 */

int linear_quantized_supported(void) { return 1; }

/* sums + the pairwise int16 products of a and b: one `vpdpwssd` with VNNI on 256-bit
 * registers, `vpmaddwd` and an add without. The same int32 results either way (the
 * group sizes keep them from overflowing). */
static inline __m256i add_pair_products(__m256i sums, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpwssd_epi32(sums, a, b);
#elif defined(__AVXVNNI__)
    return _mm256_dpwssd_avx_epi32(sums, a, b);
#else
    return _mm256_add_epi32(sums, _mm256_madd_epi16(a, b));
#endif
}

static inline __m256 bf16_to_float(const uint16_t *values) { /* 8 bf16 -> 8 floats */
    const __m256i widened = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)values));
    return _mm256_castsi256_ps(_mm256_slli_epi32(widened, 16));
}

/* The unsigned int4 bytes times the signed int8 x bytes, 4 to an int32 lane, added to
 * sums: one `vpdpbusd` with VNNI; without, the caller sums `vpmaddubsw`'s int16 pairs
 * and widens them every FLUSH steps (`widen_pairs`). */
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
#define BYTE_DOT_PRODUCTS 1
static inline __m256i add_byte_products(__m256i sums, __m256i q, __m256i x) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(sums, q, x);
#else
    return _mm256_dpbusd_avx_epi32(sums, q, x);
#endif
}
#else
#define BYTE_DOT_PRODUCTS 0
static inline __m256i add_byte_products(__m256i sums, __m256i q, __m256i x) {
    return _mm256_add_epi16(sums, _mm256_maddubs_epi16(q, x));
}
#endif

static inline __m256i widen_pairs(__m256i sums32, __m256i sums16) {
    return _mm256_add_epi32(sums32, _mm256_madd_epi16(sums16, _mm256_set1_epi16(1)));
}

/* One row's x as integers per group: int8 (peak 127) or int16 (peak 32767), with each
 * group's scale and the group sums of x itself. */
static void quantize_row(const float *x, int K, int group_size, int bits, void *x_int,
                         float *x_scales, float *x_sums) {
    const float top = bits == 8 ? 32767.0f : 127.0f;
    for (int g = 0; g < K / group_size; g++) {
        const float *values = x + g * group_size;
        float peak = 0.0f, total = 0.0f;
        for (int k = 0; k < group_size; k++) {
            peak = fmaxf(peak, fabsf(values[k]));
            total += values[k];
        }
        const float inverse = peak > 0.0f ? top / peak : 0.0f;
        for (int k = 0; k < group_size; k++) {
            const long rounded = lrintf(values[k] * inverse);
            if (bits == 8)
                ((int16_t *)x_int)[g * group_size + k] = (int16_t)rounded;
            else
                ((int8_t *)x_int)[g * group_size + k] = (int8_t)rounded;
        }
        x_scales[g] = peak / top;
        x_sums[g] = total;
    }
}

/* int8: the int16 pairs of 8 channels for 4 input-column pairs of one tile's step. */
static inline __m256i int8_pairs(const uint8_t *q, int64_t step, int p) {
    const uint8_t *at = q + step * 64;
    if (p == 0) _mm_prefetch((const char *)(at + PREFETCH), _MM_HINT_T0);
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(at + 16 * p)));
}

typedef struct {
    const uint8_t *q;
    const uint16_t *scales; /* int4: [N/8][groups][2][8] bf16; int8: [N] float32 */
    const void *x_int; /* int4: int8 [M, K]; int8: int16 [M, K] */
    const float *x_scales, *x_sums, *bias;
    float *out;
    int M, N, K, group_size, bits;
} Problem;

/* int4: dots[t * ROWS + r] += the sums of q * x8 over steps [first, end) of one group. */
static inline __attribute__((always_inline)) void int4_group_dots(
    const Problem *pr, int tile0, int m0, int first, int end, const int TILES, const int ROWS,
    __m256i dots[WORK]) {
    const int K = pr->K, steps = K / CHUNK;
    const int8_t *x8 = pr->x_int;
    const __m256i low_bits = _mm256_set1_epi8(15);
    for (int c0 = first; c0 < end; c0 += FLUSH) {
        __m256i partial[WORK]; /* int16 pairs, or int32 sums with VNNI */
        for (int i = 0; i < TILES * ROWS; i++)
            partial[i] = BYTE_DOT_PRODUCTS ? dots[i] : _mm256_setzero_si256();
        for (int c = c0; c < end && c < c0 + FLUSH; c++) {
#pragma GCC unroll 4
            for (int t = 0; t < TILES; t++) {
                const uint8_t *at = pr->q + ((int64_t)(tile0 + t) * steps + c) * 32;
                _mm_prefetch((const char *)(at + PREFETCH), _MM_HINT_T0);
                const __m256i bytes = _mm256_loadu_si256((const __m256i *)at);
                const __m256i low = _mm256_and_si256(bytes, low_bits);
                const __m256i high = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low_bits);
#pragma GCC unroll 4
                for (int r = 0; r < ROWS; r++) {
                    const int32_t *x_quads =
                        (const int32_t *)(x8 + (int64_t)(m0 + r) * K + c * CHUNK);
                    const int i = t * ROWS + r;
                    partial[i] = add_byte_products(partial[i], low, _mm256_set1_epi32(x_quads[0]));
                    partial[i] = add_byte_products(partial[i], high, _mm256_set1_epi32(x_quads[1]));
                }
            }
        }
        for (int i = 0; i < TILES * ROWS; i++)
            dots[i] = BYTE_DOT_PRODUCTS ? partial[i] : widen_pairs(dots[i], partial[i]);
    }
}

/* int8: dots[t * ROWS + r] += the sums of q * x16 over steps [first, end). */
static inline __attribute__((always_inline)) void int8_group_dots(
    const Problem *pr, int tile0, int m0, int first, int end, const int TILES, const int ROWS,
    __m256i dots[WORK]) {
    const int K = pr->K, steps = K / CHUNK;
    const int16_t *x16 = pr->x_int;
    for (int c = first; c < end; c++) {
#pragma GCC unroll 4
        for (int t = 0; t < TILES; t++) {
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++) {
                const __m256i pairs = int8_pairs(pr->q, (int64_t)(tile0 + t) * steps + c, p);
#pragma GCC unroll 4
                for (int r = 0; r < ROWS; r++) {
                    const int32_t *x_pairs =
                        (const int32_t *)(x16 + (int64_t)(m0 + r) * K + c * CHUNK);
                    const int i = t * ROWS + r;
                    dots[i] = add_pair_products(dots[i], pairs, _mm256_set1_epi32(x_pairs[p]));
                }
            }
        }
    }
}

/* TILES consecutive tiles x ROWS rows, TILES * ROWS <= WORK; constants once inlined. */
static inline __attribute__((always_inline)) void tiles_by_rows(const Problem *pr, int tile0,
                                                                int m0, const int BITS,
                                                                const int TILES, const int ROWS) {
    const int K = pr->K, groups = K / pr->group_size;
    const int per_group = pr->group_size / CHUNK;
    __m256 sums[WORK];
    for (int i = 0; i < TILES * ROWS; i++) sums[i] = _mm256_setzero_ps();
    for (int g = 0; g < groups; g++) {
        __m256i dots[WORK];
        for (int i = 0; i < TILES * ROWS; i++) dots[i] = _mm256_setzero_si256();
        if (BITS == 4)
            int4_group_dots(pr, tile0, m0, g * per_group, (g + 1) * per_group, TILES, ROWS, dots);
        else
            int8_group_dots(pr, tile0, m0, g * per_group, (g + 1) * per_group, TILES, ROWS, dots);
#pragma GCC unroll 4
        for (int t = 0; t < TILES; t++) {
            __m256 scale = _mm256_set1_ps(1.0f), offset = _mm256_setzero_ps();
            if (BITS == 4) { /* int8 takes the channel's scale at the end */
                const uint16_t *pair = pr->scales + ((int64_t)(tile0 + t) * groups + g) * 2 * TILE;
                scale = bf16_to_float(pair);
                offset = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), scale, bf16_to_float(pair + TILE));
            }
#pragma GCC unroll 4
            for (int r = 0; r < ROWS; r++) {
                const int i = t * ROWS + r;
                const int64_t at = (int64_t)(m0 + r) * groups + g;
                const __m256 row_scale = _mm256_mul_ps(scale, _mm256_broadcast_ss(pr->x_scales + at));
                sums[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[i]), row_scale, sums[i]);
                if (BITS == 4)
                    sums[i] = _mm256_fmadd_ps(offset, _mm256_broadcast_ss(pr->x_sums + at), sums[i]);
            }
        }
    }
    for (int t = 0; t < TILES; t++)
        for (int r = 0; r < ROWS; r++) {
            const int n0 = (tile0 + t) * TILE;
            __m256 result = sums[t * ROWS + r];
            if (BITS == 8)
                result = _mm256_mul_ps(result, _mm256_loadu_ps((const float *)pr->scales + n0));
            if (pr->bias != NULL) result = _mm256_add_ps(result, _mm256_loadu_ps(pr->bias + n0));
            _mm256_storeu_ps(pr->out + (int64_t)(m0 + r) * pr->N + n0, result);
        }
}

/* All rows of the tiles [tile0, tile_end): 4 rows a pass where there are, else 2 rows x
 * 2 tiles or 1 row x 4 tiles, so a pass keeps 4 sums in flight. */
static inline __attribute__((always_inline)) void work_item(const Problem *pr, int tile0,
                                                            int tile_end, const int BITS) {
    for (int m0 = 0; m0 < pr->M;) {
        const int rows = pr->M - m0 >= 4 ? 4 : pr->M - m0 >= 2 ? 2 : 1;
        int tile = tile0;
        if (rows == 1)
            for (; tile + 4 <= tile_end; tile += 4) tiles_by_rows(pr, tile, m0, BITS, 4, 1);
        if (rows == 2)
            for (; tile + 2 <= tile_end; tile += 2) tiles_by_rows(pr, tile, m0, BITS, 2, 2);
        for (; tile < tile_end; tile++) {
            if (rows == 4)
                tiles_by_rows(pr, tile, m0, BITS, 1, 4);
            else if (rows == 2)
                tiles_by_rows(pr, tile, m0, BITS, 1, 2);
            else
                tiles_by_rows(pr, tile, m0, BITS, 1, 1);
        }
        m0 += rows;
    }
}

static int run(Problem *pr, const float *x) {
    const int M = pr->M, K = pr->K, groups = K / pr->group_size, tiles = pr->N / TILE;
    void *x_int = malloc((pr->bits == 8 ? sizeof(int16_t) : sizeof(int8_t)) * ((size_t)M * K + 1));
    float *x_scales = malloc(sizeof(float) * ((size_t)M * groups + 1));
    float *x_sums = malloc(sizeof(float) * ((size_t)M * groups + 1));
    if (x_int == NULL || x_scales == NULL || x_sums == NULL) {
        free(x_int), free(x_scales), free(x_sums);
        return -3;
    }
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        quantize_row(x + (int64_t)m * K, K, pr->group_size, pr->bits,
                     (char *)x_int + (int64_t)m * K * (pr->bits == 8 ? 2 : 1),
                     x_scales + (int64_t)m * groups, x_sums + (int64_t)m * groups);
    pr->x_int = x_int, pr->x_scales = x_scales, pr->x_sums = x_sums;
    const int items = (tiles + QUAD - 1) / QUAD;
#pragma omp parallel for schedule(static)
    for (int item = 0; item < items; item++) {
        const int tile_end = (item + 1) * QUAD < tiles ? (item + 1) * QUAD : tiles;
        if (pr->bits == 4)
            work_item(pr, item * QUAD, tile_end, 4);
        else
            work_item(pr, item * QUAD, tile_end, 8);
    }
    free(x_int), free(x_scales), free(x_sums);
    return 0;
}

/* x [M, K] and out [M, N] float32, row-major; q [N / 8][K / 8][32] bytes and scales_zeros
 * [N / 8][K / group_size][2][8] bf16 as kernels/cpu_quantized.py lays them out; bias [N]
 * float32 or NULL. Returns 0; -1 for shapes the layout cannot hold (N not a multiple of
 * 8, a group size not a multiple of 8, above MAX_GROUP or not dividing K); -3 out of
 * memory. */
int linear_int4(const float *x, const uint8_t *q, const uint16_t *scales_zeros,
                const float *bias, float *out, int M, int N, int K, int group_size) {
    if (N % TILE != 0 || group_size % CHUNK != 0 || group_size > MAX_GROUP ||
        K % group_size != 0)
        return -1;
    Problem pr = {q, scales_zeros, NULL, NULL, NULL, bias, out, M, N, K, group_size, 4};
    return run(&pr, x);
}

/* As linear_int4, with q [N / 8][K / 8][64] bytes and scales [N] float32; -1 unless N is
 * a multiple of 8 and K of INT8_GROUP. */
int linear_int8(const float *x, const uint8_t *q, const float *scales, const float *bias,
                float *out, int M, int N, int K) {
    if (N % TILE != 0 || K % INT8_GROUP != 0) return -1;
    Problem pr = {q, (const uint16_t *)scales, NULL, NULL, NULL, bias, out, M, N, K,
                  INT8_GROUP, 8};
    return run(&pr, x);
}

#else /* no AVX2 and FMA here: quantized linears stay on torch's kernels */

int linear_quantized_supported(void) { return 0; }

int linear_int4(const float *x, const uint8_t *q, const uint16_t *scales_zeros,
                const float *bias, float *out, int M, int N, int K, int group_size) {
    (void)x, (void)q, (void)scales_zeros, (void)bias, (void)out, (void)M, (void)N, (void)K;
    (void)group_size;
    return -2;
}

int linear_int8(const float *x, const uint8_t *q, const float *scales, const float *bias,
                float *out, int M, int N, int K) {
    (void)x, (void)q, (void)scales, (void)bias, (void)out, (void)M, (void)N, (void)K;
    return -2;
}

#endif
