/* int4 and int8 weight-only linears on CPUs with AVX2: out = x @ w.T (+ bias), where
 * int4: w = (q - 8) * scale + zero per group of input columns, int8: w = q * scale per
 * output channel (engine/models/quantization.py).
 *
 * Built and loaded like cpu_linear.c (kernels/cpu_build.py). A decode step streams every
 * weight once, so the values must be multiplied where they are loaded, with as few
 * instructions per value as possible: AVX2 has no bf16 dot product, and turning values
 * into floats for FMAs costs three instructions for each eight. So x is rounded to int16
 * per group of input columns (its own scale each: the largest magnitude maps to 32767,
 * a relative step of 2^-15, finer than bf16's 2^-8), and `vpmaddwd` multiplies int16
 * pairs of q and x into int32 sums, exact. Laid out by kernels/cpu_quantized.py:
 *  - int4: each 16-bit word holds four values of one output channel (bits 4t..4t+3),
 *    words 2m and 2m + 1 the two input columns of a pair, so a shift and a mask give 8
 *    channels' pairs for one `vpmaddwd`. Per group the sums of q * x get the scales and
 *    zero once: sum_k w_k x_k = scale * x_scale * sum_k q_k x16_k
 *                               + (zero - 8 * scale) * sum_k x_k.
 *  - int8: bytes 2m and 2m + 1 hold a pair of output channel m, so 16 bytes sign-extended
 *    give 8 channels' pairs; x groups of INT8_GROUP columns, the channel's scale at the end.
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
#define MAX_GROUP 4096  /* int4: 4096 * 15 * 32767 < 2^31, a group's int32 sum cannot overflow */
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

/* One row's x as int16 per group (x16, scales) and the group sums of x itself. */
static void quantize_row(const float *x, int K, int group_size, int16_t *x16, float *x_scales,
                         float *x_sums) {
    for (int g = 0; g < K / group_size; g++) {
        const float *values = x + g * group_size;
        float peak = 0.0f, total = 0.0f;
        for (int k = 0; k < group_size; k++) {
            peak = fmaxf(peak, fabsf(values[k]));
            total += values[k];
        }
        const float inverse = peak > 0.0f ? 32767.0f / peak : 0.0f;
        for (int k = 0; k < group_size; k++)
            x16[g * group_size + k] = (int16_t)lrintf(values[k] * inverse);
        x_scales[g] = peak / 32767.0f;
        x_sums[g] = total;
    }
}

/* The int16 pairs of 8 channels for 4 input-column pairs of one tile's step. */
static inline __attribute__((always_inline)) void load_pairs(const uint8_t *q, int64_t step,
                                                             const int BITS, __m256i pairs[4]) {
    if (BITS == 4) {
        const uint8_t *at = q + step * 32;
        _mm_prefetch((const char *)(at + PREFETCH), _MM_HINT_T0);
        const __m256i words = _mm256_loadu_si256((const __m256i *)at);
        const __m256i low_bits = _mm256_set1_epi16(15);
        pairs[0] = _mm256_and_si256(words, low_bits);
        pairs[1] = _mm256_and_si256(_mm256_srli_epi16(words, 4), low_bits);
        pairs[2] = _mm256_and_si256(_mm256_srli_epi16(words, 8), low_bits);
        pairs[3] = _mm256_srli_epi16(words, 12);
    } else {
        const uint8_t *at = q + step * 64;
        _mm_prefetch((const char *)(at + PREFETCH), _MM_HINT_T0);
        for (int p = 0; p < 4; p++)
            pairs[p] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(at + 16 * p)));
    }
}

typedef struct {
    const uint8_t *q;
    const uint16_t *scales; /* int4: [N/8][groups][2][8] bf16; int8: [N] float32 */
    const int16_t *x16;
    const float *x_scales, *x_sums, *bias;
    float *out;
    int M, N, K, group_size, bits;
} Problem;

/* TILES consecutive tiles x ROWS rows, TILES * ROWS <= WORK; constants once inlined. */
static inline __attribute__((always_inline)) void tiles_by_rows(const Problem *pr, int tile0,
                                                                int m0, const int BITS,
                                                                const int TILES, const int ROWS) {
    const int K = pr->K, steps = K / CHUNK, groups = K / pr->group_size;
    const int per_group = pr->group_size / CHUNK;
    __m256 sums[WORK];
    for (int i = 0; i < TILES * ROWS; i++) sums[i] = _mm256_setzero_ps();
    for (int g = 0; g < groups; g++) {
        __m256i dots[WORK];
        for (int i = 0; i < TILES * ROWS; i++) dots[i] = _mm256_setzero_si256();
        for (int c = g * per_group; c < (g + 1) * per_group; c++) {
#pragma GCC unroll 4
            for (int t = 0; t < TILES; t++) {
                __m256i pairs[4];
                load_pairs(pr->q, (int64_t)(tile0 + t) * steps + c, BITS, pairs);
#pragma GCC unroll 4
                for (int r = 0; r < ROWS; r++) {
                    const int32_t *x_pairs =
                        (const int32_t *)(pr->x16 + (int64_t)(m0 + r) * K + c * CHUNK);
                    const int i = t * ROWS + r;
#pragma GCC unroll 4
                    for (int p = 0; p < 4; p++)
                        dots[i] = add_pair_products(dots[i], pairs[p],
                                                    _mm256_set1_epi32(x_pairs[p]));
                }
            }
        }
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
    int16_t *x16 = malloc(sizeof(int16_t) * ((size_t)M * K + 1));
    float *x_scales = malloc(sizeof(float) * ((size_t)M * groups + 1));
    float *x_sums = malloc(sizeof(float) * ((size_t)M * groups + 1));
    if (x16 == NULL || x_scales == NULL || x_sums == NULL) {
        free(x16), free(x_scales), free(x_sums);
        return -3;
    }
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++)
        quantize_row(x + (int64_t)m * K, K, pr->group_size, x16 + (int64_t)m * K,
                     x_scales + (int64_t)m * groups, x_sums + (int64_t)m * groups);
    pr->x16 = x16, pr->x_scales = x_scales, pr->x_sums = x_sums;
    const int items = (tiles + QUAD - 1) / QUAD;
#pragma omp parallel for schedule(static)
    for (int item = 0; item < items; item++) {
        const int tile_end = (item + 1) * QUAD < tiles ? (item + 1) * QUAD : tiles;
        if (pr->bits == 4)
            work_item(pr, item * QUAD, tile_end, 4);
        else
            work_item(pr, item * QUAD, tile_end, 8);
    }
    free(x16), free(x_scales), free(x_sums);
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
