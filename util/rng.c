/* rng.c: xorshift64* generator; explicit state so runs and tests are reproducible. */
#include "util.h"

#include <math.h>

void rng_seed(Rng *r, uint64_t seed) {
    /* splitmix64 scrambles small seeds into a well-mixed nonzero state */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    r->s = z ? z : 0x2545F4914F6CDD1Dull;
}

uint64_t rng_u64(Rng *r) {
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint32_t rng_u32(Rng *r) { return (uint32_t)(rng_u64(r) >> 32); }

float rng_uniform(Rng *r) { return (float)(rng_u32(r) >> 8) / 16777216.0f; }

float rng_normal(Rng *r) {
    /* Box-Muller; one of the pair is dropped to keep the state a single word */
    double u1 = ((double)(rng_u64(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(rng_u64(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint32_t rng_below(Rng *r, uint32_t n) { return (uint32_t)(((uint64_t)rng_u32(r) * n) >> 32); }
