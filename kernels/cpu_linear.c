/* Linears over bf16 weights: out = x @ w.T (+ bias), fp32 accumulation.
 *
 * linear_bf16 (CPUs with AVX512-BF16): x and out bf16, `vdpbf16ps`.
 * linear_f32_bf16w (CPUs with AVX2 and FMA): x and out fp32, the bf16 weights widened to
 * fp32 in registers (exact: a bf16 is the top half of a float), so an fp32 model whose
 * weights are bf16 values reads half the bytes a step and computes the same products.
 *
 * Built and loaded like cpu_decode.c (kernels/cpu_build.py). The weight is laid out once
 * (kernels/cpu_linear.py) as [ceil(N / 32)][K / 2][32][2]: for each tile of 32 output
 * channels, the pairs of input columns that one `vdpbf16ps` multiplies, so a thread
 * streams its tiles front to back and every 128 bytes read feed two instructions per
 * row of x. Up to ROWS rows of x share each load; more rows take the tile again, from
 * cache. Each row's sums run in the same order whatever the number of rows, so a row's
 * result never depends on the rows beside it.
 */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>

#define TILE 32     /* output channels per tile: two 16-lane accumulators */
#define ROWS 8      /* rows of x per pass over a tile: 16 accumulators */
#define PREFETCH 16 /* column pairs ahead */

int linear_bf16_supported(void) { return 1; }

static void store_row(__m512 sums, const float *bias, int n0, int N, uint16_t *out) {
    if (bias != NULL) sums = _mm512_add_ps(sums, _mm512_loadu_ps(bias + n0));
    const __m256i rounded = (__m256i)_mm512_cvtneps_pbh(sums); /* round to nearest even */
    const int count = N - n0 < 16 ? N - n0 : 16;
    if (count == 16) {
        _mm256_storeu_si256((__m256i *)(out + n0), rounded);
    } else {
        uint16_t lanes[16];
        _mm256_storeu_si256((__m256i *)lanes, rounded);
        memcpy(out + n0, lanes, sizeof(uint16_t) * count);
    }
}

/* x [M, K] and out [M, N] bf16, row-major; w packed as above; bias [N] float32 or NULL.
 * Returns 0, or -1 for an odd K. */
int linear_bf16(const uint16_t *x, const uint16_t *w, const float *bias, uint16_t *out, int M,
                int N, int K) {
    if (K % 2 != 0) return -1;
    const int tiles = (N + TILE - 1) / TILE;
    const int pairs = K / 2;
#pragma omp parallel for schedule(static)
    for (int tile = 0; tile < tiles; tile++) {
        const uint16_t *tile_weights = w + (int64_t)tile * pairs * TILE * 2;
        for (int m0 = 0; m0 < M; m0 += ROWS) {
            const int rows = M - m0 < ROWS ? M - m0 : ROWS;
            __m512 sums[ROWS][2];
            for (int i = 0; i < ROWS; i++) sums[i][0] = sums[i][1] = _mm512_setzero_ps();
            for (int pair = 0; pair < pairs; pair++) {
                const uint16_t *column = tile_weights + (int64_t)pair * TILE * 2;
                _mm_prefetch((const char *)(column + PREFETCH * TILE * 2), _MM_HINT_T0);
                _mm_prefetch((const char *)(column + PREFETCH * TILE * 2 + 32), _MM_HINT_T0);
                const __m512bh low = (__m512bh)_mm512_loadu_si512(column);
                const __m512bh high = (__m512bh)_mm512_loadu_si512(column + 32);
                for (int i = 0; i < rows; i++) {
                    int32_t both;
                    memcpy(&both, x + (int64_t)(m0 + i) * K + 2 * pair, sizeof both);
                    const __m512bh broadcast = (__m512bh)_mm512_set1_epi32(both);
                    sums[i][0] = _mm512_dpbf16_ps(sums[i][0], low, broadcast);
                    sums[i][1] = _mm512_dpbf16_ps(sums[i][1], high, broadcast);
                }
            }
            for (int i = 0; i < rows; i++) {
                uint16_t *row = out + (int64_t)(m0 + i) * N;
                store_row(sums[i][0], bias, tile * TILE, N, row);
                if (tile * TILE + 16 < N) store_row(sums[i][1], bias, tile * TILE + 16, N, row);
            }
        }
    }
    return 0;
}

#else /* no AVX512-BF16 here: the engine keeps oneDNN's linears for bf16 */

int linear_bf16_supported(void) { return 0; }

int linear_bf16(const uint16_t *x, const uint16_t *w, const float *bias, uint16_t *out, int M,
                int N, int K) {
    (void)x, (void)w, (void)bias, (void)out, (void)M, (void)N, (void)K;
    return -2;
}

#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define F32_TILE 32    /* output channels per tile, as above: four 8-lane accumulators */
#define F32_ROWS 2     /* rows of x per pass over a tile: 8 accumulators of 16 registers */
#define F32_PREFETCH 8 /* column pairs ahead */

int linear_f32_bf16w_supported(void) { return 1; }

static void store_f32(__m256 sums, const float *bias, int n0, int N, float *out) {
    const int count = N - n0 < 8 ? N - n0 : 8;
    if (count == 8) {
        if (bias != NULL) sums = _mm256_add_ps(sums, _mm256_loadu_ps(bias + n0));
        _mm256_storeu_ps(out + n0, sums);
        return;
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, sums);
    for (int j = 0; j < count; j++) out[n0 + j] = lanes[j] + (bias != NULL ? bias[n0 + j] : 0.0f);
}

/* x [M, K] and out [M, N] float32, row-major; w packed as for linear_bf16; bias [N]
 * float32 or NULL. Each 32-bit lane of a weight load holds one output channel's pair of
 * columns: shifted left it is the first as a float, masked the second. Returns 0, or -1
 * for an odd K. */
int linear_f32_bf16w(const float *x, const uint16_t *w, const float *bias, float *out, int M,
                     int N, int K) {
    if (K % 2 != 0) return -1;
    const int tiles = (N + F32_TILE - 1) / F32_TILE;
    const int pairs = K / 2;
    const __m256i high_half = _mm256_set1_epi32((int)0xFFFF0000u);
#pragma omp parallel for schedule(static)
    for (int tile = 0; tile < tiles; tile++) {
        const uint16_t *tile_weights = w + (int64_t)tile * pairs * F32_TILE * 2;
        for (int m0 = 0; m0 < M; m0 += F32_ROWS) {
            const int rows = M - m0 < F32_ROWS ? M - m0 : F32_ROWS;
            __m256 sums[F32_ROWS][4];
            for (int i = 0; i < F32_ROWS; i++)
                for (int q = 0; q < 4; q++) sums[i][q] = _mm256_setzero_ps();
            for (int pair = 0; pair < pairs; pair++) {
                const uint16_t *column = tile_weights + (int64_t)pair * F32_TILE * 2;
                _mm_prefetch((const char *)(column + F32_PREFETCH * F32_TILE * 2), _MM_HINT_T0);
                _mm_prefetch((const char *)(column + F32_PREFETCH * F32_TILE * 2 + 32),
                             _MM_HINT_T0);
                __m256 first[F32_ROWS], second[F32_ROWS];
                for (int i = 0; i < rows; i++) {
                    const float *row = x + (int64_t)(m0 + i) * K + 2 * pair;
                    first[i] = _mm256_broadcast_ss(row);
                    second[i] = _mm256_broadcast_ss(row + 1);
                }
                for (int q = 0; q < 4; q++) {
                    const __m256i both = _mm256_loadu_si256((const __m256i *)(column + 16 * q));
                    const __m256 even = _mm256_castsi256_ps(_mm256_slli_epi32(both, 16));
                    const __m256 odd = _mm256_castsi256_ps(_mm256_and_si256(both, high_half));
                    for (int i = 0; i < rows; i++) {
                        sums[i][q] = _mm256_fmadd_ps(even, first[i], sums[i][q]);
                        sums[i][q] = _mm256_fmadd_ps(odd, second[i], sums[i][q]);
                    }
                }
            }
            for (int i = 0; i < rows; i++) {
                float *row = out + (int64_t)(m0 + i) * N;
                for (int q = 0; q < 4; q++) {
                    const int n0 = tile * F32_TILE + 8 * q;
                    if (n0 < N) store_f32(sums[i][q], bias, n0, N, row);
                }
            }
        }
    }
    return 0;
}

#else /* no AVX2 with FMA: fp32 linears stay torch's */

int linear_f32_bf16w_supported(void) { return 0; }

int linear_f32_bf16w(const float *x, const uint16_t *w, const float *bias, float *out, int M,
                     int N, int K) {
    (void)x, (void)w, (void)bias, (void)out, (void)M, (void)N, (void)K;
    return -2;
}

#endif
