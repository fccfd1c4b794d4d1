/* The small per-token ops of a decoder layer, fused, on the CPU: residual add + RMSNorm,
 * and the rotary embedding in place.
 *
 * Each is a few microseconds of arithmetic that torch runs as five to eight dispatched
 * ops (an RMSNorm on one 1,536-wide row: 24 us); one call here does it in one pass.
 * Built on the machine that runs it (kernels/cpu_build.py), loaded with ctypes, and
 * tested against kernels/fused_ops.py's PyTorch reference.
 *
 * Rounding follows torch's op by op: in bf16 every intermediate that torch stores in
 * bf16 is rounded here too, and -std=c11 keeps gcc from contracting a * b + c into an
 * FMA, so fp32 results match torch's element-wise ops bit for bit (the RMSNorm's sum
 * of squares excepted: its order differs, within an ulp of the mean).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define MAX_HEAD_DIM 256
#define PARALLEL_ELEMENTS (1 << 16) /* below this, one thread beats waking a team */

enum { DTYPE_FLOAT32 = 0, DTYPE_BFLOAT16 = 1 };

/* bf16 <-> fp32 through unions, which (unlike memcpy) the vectoriser sees through. */
static inline float bf16_to_float(uint16_t bits) {
    union { uint32_t word; float value; } widened = {.word = (uint32_t)bits << 16};
    return widened.value;
}

static inline uint16_t float_to_bf16(float value) {
    union { float value; uint32_t word; } narrowed = {.value = value};
    const uint32_t word = narrowed.word;
    const uint32_t nearest_even = word + 0x7fffu + ((word >> 16) & 1u); /* as torch rounds */
    const uint32_t quiet_nan = word | 0x400000u;
    return (uint16_t)(((word & 0x7fffffffu) > 0x7f800000u ? quiet_nan : nearest_even) >> 16);
}

static inline float load(const void *base, int64_t index, int dtype) {
    return dtype == DTYPE_BFLOAT16 ? bf16_to_float(((const uint16_t *)base)[index])
                                   : ((const float *)base)[index];
}

static inline void store(void *base, int64_t index, float value, int dtype) {
    if (dtype == DTYPE_BFLOAT16)
        ((uint16_t *)base)[index] = float_to_bf16(value);
    else
        ((float *)base)[index] = value;
}

/* The value torch would hold after storing `value` in the tensor's dtype. */
static inline float rounded(float value, int dtype) {
    return dtype == DTYPE_BFLOAT16 ? bf16_to_float(float_to_bf16(value)) : value;
}

/* NOTE: each op's row function is inlined with a constant dtype, and the parallel loop
 * picks one per row: an OpenMP region is outlined before inlining, so a dtype passed
 * into it would stay a variable and its branches would keep the loops scalar. */
#define FOR_EACH_ROW_IN_DTYPE(rows, elements, dtype, call_with_dtype)                       \
    do {                                                                                    \
        const int64_t elements_in_op = (elements);                                          \
        _Pragma("omp parallel for if (elements_in_op >= PARALLEL_ELEMENTS)")                \
        for (int row = 0; row < (rows); row++) {                                            \
            if ((dtype) == DTYPE_BFLOAT16)                                                  \
                call_with_dtype(DTYPE_BFLOAT16);                                            \
            else                                                                            \
                call_with_dtype(DTYPE_FLOAT32);                                             \
        }                                                                                   \
    } while (0)

/* One row of fused_rms_norm. */
static inline __attribute__((always_inline)) void rms_norm_row(
    const void *x, void *residual, const void *weight, void *out, int64_t base, int hidden,
    float eps, const int dtype) {
    float squares = 0.0f;
    if (residual != NULL) {
#pragma omp simd reduction(+ : squares)
        for (int i = 0; i < hidden; i++) {
            const float sum = rounded(load(x, base + i, dtype) + load(residual, base + i, dtype),
                                      dtype);
            store(residual, base + i, sum, dtype);
            squares += sum * sum;
        }
    } else {
#pragma omp simd reduction(+ : squares)
        for (int i = 0; i < hidden; i++) {
            const float value = load(x, base + i, dtype);
            squares += value * value;
        }
    }
    const void *source = residual != NULL ? residual : x;
    const float inverse = 1.0f / sqrtf(squares / (float)hidden + eps);
#pragma omp simd
    for (int i = 0; i < hidden; i++) {
        const float normalized = rounded(load(source, base + i, dtype) * inverse, dtype);
        store(out, base + i, load(weight, i, dtype) * normalized, dtype);
    }
}

/* out = weight * rms_norm(x + residual), residual = x + residual, row by row; with no
 * residual, out = weight * rms_norm(x). The norm is taken in fp32, its result rounded to
 * the dtype before the weight, as Hugging Face's RMSNorm does. */
int fused_rms_norm(const void *x,        /* [rows, hidden] */
                   void *residual,       /* [rows, hidden], updated in place; or NULL */
                   const void *weight,   /* [hidden] */
                   void *out,            /* [rows, hidden] */
                   int rows, int hidden, float eps, int dtype) {
    if (rows < 0 || hidden <= 0 || (dtype != DTYPE_FLOAT32 && dtype != DTYPE_BFLOAT16))
        return -1;
#define RMS_NORM_ROW(DTYPE) \
    rms_norm_row(x, residual, weight, out, (int64_t)row * hidden, hidden, eps, DTYPE)
    FOR_EACH_ROW_IN_DTYPE(rows, (int64_t)rows * hidden, dtype, RMS_NORM_ROW);
#undef RMS_NORM_ROW
    return 0;
}

/* One token of rotate_heads. */
static inline __attribute__((always_inline)) void rotate_row(
    void *row_base, const void *cos, const void *sin, int64_t angles, int heads,
    int head_dim, const int dtype) {
    const int half = head_dim / 2;
    for (int head = 0; head < heads; head++) {
        const int64_t start = (int64_t)head * head_dim;
        float x[MAX_HEAD_DIM];
#pragma omp simd
        for (int d = 0; d < head_dim; d++) x[d] = load(row_base, start + d, dtype);
#pragma omp simd
        for (int d = 0; d < half; d++) {
            const float c = load(cos, angles + d, dtype), s = load(sin, angles + d, dtype);
            const float rotated = rounded(x[d] * c, dtype) + rounded(-x[d + half] * s, dtype);
            store(row_base, start + d, rotated, dtype);
        }
#pragma omp simd
        for (int d = half; d < head_dim; d++) {
            const float c = load(cos, angles + d, dtype), s = load(sin, angles + d, dtype);
            const float rotated = rounded(x[d] * c, dtype) + rounded(x[d - half] * s, dtype);
            store(row_base, start + d, rotated, dtype);
        }
    }
}

/* Rotates the first `heads` heads of each row in place (rotate-half layout): for
 * d < D/2, x[d] * cos[d] - x[d + D/2] * sin[d]; above, x[d] * cos[d] + x[d - D/2] * sin[d].
 * Queries and keys sit side by side in a fused QKV row, so one call covers both. */
int rotate_heads(void *rows_base,     /* [tokens, row_stride]: heads from column 0 */
                 const void *cos,     /* [tokens, head_dim] */
                 const void *sin,     /* [tokens, head_dim] */
                 int tokens, int heads, int head_dim, int64_t row_stride, int dtype) {
    if (tokens < 0 || heads <= 0 || head_dim <= 0 || head_dim > MAX_HEAD_DIM || head_dim % 2 ||
        row_stride < (int64_t)heads * head_dim ||
        (dtype != DTYPE_FLOAT32 && dtype != DTYPE_BFLOAT16))
        return -1;
    const int element_size = dtype == DTYPE_BFLOAT16 ? 2 : 4;
#define ROTATE_ROW(DTYPE)                                                                  \
    rotate_row((char *)rows_base + row * row_stride * element_size, cos, sin,               \
               (int64_t)row * head_dim, heads, head_dim, DTYPE)
    FOR_EACH_ROW_IN_DTYPE(tokens, (int64_t)tokens * heads * head_dim, dtype, ROTATE_ROW);
#undef ROTATE_ROW
    return 0;
}
