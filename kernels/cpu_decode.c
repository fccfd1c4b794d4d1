/* Paged decode attention on the CPU: each decode's query heads against its own blocks.
 *
 * Built on the machine that runs it (kernels/cpu_build.py: gcc -O3 -march=native
 * -fopenmp), loaded with ctypes, and tested against kernels/reference.py.
 *
 * Work is split into (sequence, KV head, partition of PARTITION tokens) items, run in
 * parallel on torch's OpenMP runtime; each item keeps its running max, its sum of
 * exponentials and its weighted values, and the partitions of a (sequence, KV head)
 * are then merged. Partitions start at token 0 of each sequence, so a sequence's result
 * never depends on the other sequences in the batch. Keys and values are read straight
 * from their blocks: nothing is gathered or padded. Accumulation is in fp32.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PARTITION 512
#define MAX_HEAD_DIM 256
#define MAX_GROUP 32

enum { DTYPE_FLOAT32 = 0, DTYPE_BFLOAT16 = 1 };

static inline float bf16_to_float(uint16_t bits) {
    uint32_t word = (uint32_t)bits << 16;
    float value;
    memcpy(&value, &word, sizeof value);
    return value;
}

static inline uint16_t float_to_bf16(float value) {
    uint32_t word;
    memcpy(&word, &value, sizeof word);
    if ((word & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((word >> 16) | 0x40u); /* NaN */
    word += 0x7fffu + ((word >> 16) & 1u); /* round to nearest even, as torch does */
    return (uint16_t)(word >> 16);
}

/* One row of head_dim elements, widened to fp32. */
static inline void load_row(const void *base, int64_t index, int dtype, int head_dim,
                            float *out) {
    if (dtype == DTYPE_BFLOAT16) {
        const uint16_t *row = (const uint16_t *)base + index * head_dim;
#pragma omp simd
        for (int d = 0; d < head_dim; d++) out[d] = bf16_to_float(row[d]);
    } else {
        memcpy(out, (const float *)base + index * head_dim, sizeof(float) * head_dim);
    }
}

/* exp(x) for x <= 0 (scores minus their max): 2^n * e^r with a degree-6 polynomial,
 * relative error about 2e-7. Branch-free, and the bits of 2^n built through a union, so
 * the loops around it vectorise. */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float shifted = x * 1.44269504f + 12582912.0f; /* 1.5 * 2^23: rounds to an integer */
    const float n = shifted - 12582912.0f;
    const float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    const float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f +
                    r * (0.00833333377f + r * 0.00138888892f)))));
    union { int32_t bits; float value; } scale = {.bits = ((int32_t)n + 127) << 23};
    return p * scale.value;
}

/* GCC/Clang vector types: whole AVX-512 registers, or two AVX2 ones each elsewhere. */
typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef float vec8 __attribute__((vector_size(32)));
typedef float vec4 __attribute__((vector_size(16)));

static inline float sum_lanes(vec16 v) {
    vec8 half = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    vec4 quarter = __builtin_shufflevector(half, half, 0, 1, 2, 3) +
                   __builtin_shufflevector(half, half, 4, 5, 6, 7);
    return (quarter[0] + quarter[2]) + (quarter[1] + quarter[3]);
}

/* Sum of a[d] * b[d]: 16 running sums, then a tree. NOTE: a plain loop with an OpenMP
 * reduction adds the lanes one by one at the end (no -ffast-math), and that chain of
 * scalar adds took most of the kernel's time. */
static inline __attribute__((always_inline)) float dot_product(const float *restrict a,
                                                               const float *restrict b,
                                                               const int D) {
    if (D % 16 != 0) {
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += a[d] * b[d];
        return dot;
    }
    vec16 sums = *(const vec16 *)a * *(const vec16 *)b;
    for (int d = 16; d < D; d += 16) sums += *(const vec16 *)(a + d) * *(const vec16 *)(b + d);
    return sum_lanes(sums);
}

#define CHUNK 16

/* out[d] += sum over i < count of weights[i] * rows[i * D + d]. */
static inline __attribute__((always_inline)) void add_weighted_rows(
    float *restrict out, const float *restrict weights, const float *restrict rows, int count,
    const int D) {
    if (D % 16 != 0) {
        for (int i = 0; i < count; i++)
            for (int d = 0; d < D; d++) out[d] += weights[i] * rows[i * D + d];
        return;
    }
    vec16 sums[MAX_HEAD_DIM / 16];
    for (int j = 0; j < D / 16; j++) sums[j] = *(const vec16 *)(out + 16 * j);
    for (int i = 0; i < count; i++)
        for (int j = 0; j < D / 16; j++) sums[j] += weights[i] * *(const vec16 *)(rows + i * D + 16 * j);
    for (int j = 0; j < D / 16; j++) *(vec16 *)(out + 16 * j) = sums[j];
}

typedef struct PagedCache PagedCache;
struct PagedCache {
    const void *key_cache; /* [num_blocks, block_size, num_kv_heads, head_dim] */
    const void *value_cache;
    const int32_t *block_tables; /* [num_seqs, max_blocks] */
    int max_blocks;
    int block_size;
    int num_kv_heads;
    int head_dim;
    int dtype;
};

/* One (sequence, KV head, partition): its group's max, sum and weighted values. Inlined
 * into one copy per common head size (below), so that D is a constant there and the
 * loops over it unroll into whole vectors. */
static inline __attribute__((always_inline)) void attend_partition(
    const PagedCache *cache, const float *restrict query /* [group, D] */, int group,
    int seq, int kv_head, int start, int end, float *restrict scores /* [group, PARTITION] */,
    float *restrict max_out, float *restrict sum_out, float *restrict acc /* [group, D] */,
    const int D) {
    const int32_t *table = cache->block_tables + (int64_t)seq * cache->max_blocks;
    float row[MAX_HEAD_DIM];
    for (int t = start; t < end; t++) {
        int64_t slot = (int64_t)table[t / cache->block_size] * cache->block_size +
                       t % cache->block_size;
        load_row(cache->key_cache, slot * cache->num_kv_heads + kv_head, cache->dtype, D, row);
        for (int g = 0; g < group; g++)
            scores[g * PARTITION + (t - start)] = dot_product(query + g * D, row, D);
    }
    const int length = end - start;
    for (int g = 0; g < group; g++) {
        float *s = scores + g * PARTITION;
        float peak = s[0];
#pragma omp simd reduction(max : peak)
        for (int i = 1; i < length; i++) peak = s[i] > peak ? s[i] : peak;
        float total = 0.0f;
#pragma omp simd reduction(+ : total)
        for (int i = 0; i < length; i++) {
            s[i] = exp_nonpositive(s[i] - peak);
            total += s[i];
        }
        max_out[g] = peak;
        sum_out[g] = total;
    }
    memset(acc, 0, sizeof(float) * group * D);
    /* Values CHUNK rows at a time, widened once, then each head's sums stay in registers
     * over the chunk (adding into acc row by row stored and reloaded it every token). */
    float rows[CHUNK * MAX_HEAD_DIM];
    for (int chunk = start; chunk < end; chunk += CHUNK) {
        const int count = end - chunk < CHUNK ? end - chunk : CHUNK;
        for (int i = 0; i < count; i++) {
            const int t = chunk + i;
            int64_t slot = (int64_t)table[t / cache->block_size] * cache->block_size +
                           t % cache->block_size;
            load_row(cache->value_cache, slot * cache->num_kv_heads + kv_head, cache->dtype, D,
                     rows + i * D);
        }
        for (int g = 0; g < group; g++)
            add_weighted_rows(acc + g * D, scores + g * PARTITION + (chunk - start), rows,
                              count, D);
    }
}

#define ATTEND_WITH_HEAD_DIM(D)                                                           \
    static void attend_partition_##D(const PagedCache *cache, const float *query, int group, \
                                     int seq, int kv_head, int start, int end,              \
                                     float *scores, float *max_out, float *sum_out,         \
                                     float *acc) {                                          \
        attend_partition(cache, query, group, seq, kv_head, start, end, scores, max_out,    \
                         sum_out, acc, D);                                                  \
    }
ATTEND_WITH_HEAD_DIM(64)
ATTEND_WITH_HEAD_DIM(128)

static void attend_partition_any(const PagedCache *cache, const float *query, int group,
                                 int seq, int kv_head, int start, int end, float *scores,
                                 float *max_out, float *sum_out, float *acc) {
    attend_partition(cache, query, group, seq, kv_head, start, end, scores, max_out, sum_out,
                     acc, cache->head_dim);
}

/* Returns 0; -1 when a size is beyond the kernel's fixed limits (the caller checks them
 * first; this is the last guard), -2 when memory runs out. */
int paged_decode_attention(const void *query,       /* [num_seqs, num_heads, D] */
                           const void *key_cache, const void *value_cache,
                           const int32_t *block_tables, /* [num_seqs, max_blocks] */
                           const int32_t *context_lens, /* [num_seqs] */
                           void *output,               /* [num_seqs, num_heads, D] */
                           int num_seqs, int num_heads, int num_kv_heads, int head_dim,
                           int block_size, int max_blocks, float scale, int dtype) {
    const int group = num_heads / num_kv_heads;
    if (head_dim > MAX_HEAD_DIM || group > MAX_GROUP || group * num_kv_heads != num_heads)
        return -1;
    const PagedCache cache = {key_cache, value_cache, block_tables, max_blocks,
                              block_size, num_kv_heads, head_dim, dtype};
    /* Items are numbered seq-major; item_start[s] is sequence s's first. */
    int64_t *item_start = malloc(sizeof(int64_t) * (num_seqs + 1));
    if (item_start == NULL) return -2;
    item_start[0] = 0;
    for (int s = 0; s < num_seqs; s++) {
        int parts = (context_lens[s] + PARTITION - 1) / PARTITION;
        item_start[s + 1] = item_start[s] + (int64_t)num_kv_heads * (parts > 0 ? parts : 1);
    }
    const int64_t num_items = item_start[num_seqs];
    const int64_t stride = (int64_t)group * (head_dim + 2); /* max, sum, values per head */
    void (*attend)(const PagedCache *, const float *, int, int, int, int, int, float *, float *,
                   float *, float *) = head_dim == 64    ? attend_partition_64
                                       : head_dim == 128 ? attend_partition_128
                                                         : attend_partition_any;
    float *partials = malloc(sizeof(float) * num_items * stride);
    if (partials == NULL) {
        free(item_start);
        return -2;
    }

#pragma omp parallel
    {
        float scores[MAX_GROUP * PARTITION]; /* 64 KiB: a worker's stack holds it */
        float q[MAX_GROUP * MAX_HEAD_DIM];
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < num_items; item++) {
            int seq = 0;
            while (item_start[seq + 1] <= item) seq++;
            const int64_t local = item - item_start[seq];
            const int parts = (int)((item_start[seq + 1] - item_start[seq]) / num_kv_heads);
            const int kv_head = (int)(local / parts);
            const int part = (int)(local % parts);
            const int start = part * PARTITION;
            int end = start + PARTITION;
            end = end < context_lens[seq] ? end : context_lens[seq];
            float *out = partials + item * stride; /* [group] max, [group] sum, [group, D] */
            if (end <= start) { /* an empty context: attends to nothing */
                for (int g = 0; g < group; g++) out[g] = 0.0f, out[group + g] = 0.0f;
                memset(out + 2 * group, 0, sizeof(float) * group * head_dim);
                continue;
            }
            for (int g = 0; g < group; g++) {
                int64_t head = (int64_t)seq * num_heads + kv_head * group + g;
                load_row(query, head, dtype, head_dim, q + g * head_dim);
                for (int d = 0; d < head_dim; d++) q[g * head_dim + d] *= scale;
            }
            attend(&cache, q, group, seq, kv_head, start, end, scores, out, out + group,
                   out + 2 * group);
        }

#pragma omp for collapse(2)
        for (int seq = 0; seq < num_seqs; seq++) {
            for (int kv_head = 0; kv_head < num_kv_heads; kv_head++) {
                const int parts = (int)((item_start[seq + 1] - item_start[seq]) / num_kv_heads);
                const float *first = partials + (item_start[seq] + (int64_t)kv_head * parts) * stride;
                for (int g = 0; g < group; g++) {
                    float peak = first[g];
                    for (int p = 1; p < parts; p++) {
                        float m = first[p * stride + g];
                        peak = m > peak ? m : peak;
                    }
                    float total = 0.0f;
                    float merged[MAX_HEAD_DIM] = {0};
                    for (int p = 0; p < parts; p++) {
                        const float *part = first + p * stride;
                        float weight = parts == 1 ? 1.0f : exp_nonpositive(part[g] - peak);
                        total += weight * part[group + g];
                        const float *acc = part + 2 * group + g * head_dim;
#pragma omp simd
                        for (int d = 0; d < head_dim; d++) merged[d] += weight * acc[d];
                    }
                    const float inverse = total > 0.0f ? 1.0f / total : 0.0f;
                    int64_t head = (int64_t)seq * num_heads + kv_head * group + g;
                    if (dtype == DTYPE_BFLOAT16) {
                        uint16_t *dst = (uint16_t *)output + head * head_dim;
                        for (int d = 0; d < head_dim; d++) dst[d] = float_to_bf16(merged[d] * inverse);
                    } else {
                        float *dst = (float *)output + head * head_dim;
                        for (int d = 0; d < head_dim; d++) dst[d] = merged[d] * inverse;
                    }
                }
            }
        }
    }
    free(partials);
    free(item_start);
    return 0;
}
