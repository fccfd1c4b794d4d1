/* bf16 linears on CPUs with AVX512-BF16: out = x @ w.T (+ bias), fp32 accumulation.
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

#else /* no AVX512-BF16 here: the engine keeps oneDNN's linears */

int linear_bf16_supported(void) { return 0; }

int linear_bf16(const uint16_t *x, const uint16_t *w, const float *bias, uint16_t *out, int M,
                int N, int K) {
    (void)x, (void)w, (void)bias, (void)out, (void)M, (void)N, (void)K;
    return -2;
}

#endif
