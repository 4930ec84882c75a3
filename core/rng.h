/* Seeded random numbers, the one generator family of sspose. Every random
 * decision is keyed by explicit seeds so that runs are reproducible and
 * independent of thread and rank counts.
 *
 * Two kinds of stream, both built on splitmix64 (Steele, Lea, Flood 2014;
 * the output function is Stafford's "Mix13" finaliser):
 *   core_rng  : xoshiro256** seeded through splitmix64; long period, for
 *               parameter init and tests (core/rng.c);
 *   core_sm64 : one splitmix64 word, inline and keyable per item (image,
 *               person, copy, epoch), for data generation, augmentation and
 *               the loader's order and flips.
 * The streams are pinned value for value by tests/test_core_rng.c: shards,
 * synthetic images and training runs depend on every bit of them. */
#ifndef SSPOSE_CORE_RNG_H
#define SSPOSE_CORE_RNG_H

#include <math.h>
#include <stdint.h>

/* splitmix64's increment (2^64 / golden ratio) and output function */
#define CORE_RNG_GOLDEN 0x9e3779b97f4a7c15ULL

static inline uint64_t core_rng_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The top 53 bits of x as a double in [0, 1). */
static inline double core_rng_unit(uint64_t x) { return (x >> 11) * (1.0 / 9007199254740992.0); }

/* ---- core_sm64: one splitmix64 word ---- */
typedef struct { uint64_t s; } core_sm64;

static inline uint64_t core_sm64_next(core_sm64 *r) { return core_rng_mix64(r->s += CORE_RNG_GOLDEN); }
/* uniform in [0, 1) */
static inline double core_sm64_uniform(core_sm64 *r) { return core_rng_unit(core_sm64_next(r)); }
/* uniform in [lo, hi) */
static inline double core_sm64_range(core_sm64 *r, double lo, double hi)
{
    return lo + (hi - lo) * core_sm64_uniform(r);
}
/* integer in [lo, hi] (truncation of a uniform: bias below 2^-53 * range) */
static inline int core_sm64_int(core_sm64 *r, int lo, int hi) { return lo + (int)(core_sm64_uniform(r) * (hi - lo + 1)); }
/* standard normal by Box-Muller, one value per two draws (u offset by 1e-12 so log(0) never happens) */
static inline double core_sm64_normal(core_sm64 *r)
{
    double u = core_sm64_uniform(r) + 1e-12, v = core_sm64_uniform(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}
/* A stream keyed by four values (a is the seed; b, c, d mixed in turn). */
static inline core_sm64 core_sm64_keyed(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    core_sm64 r = {a};
    uint64_t k[3] = {b, c, d};
    for (int i = 0; i < 3; i++) {
        r.s ^= core_sm64_next(&r) + k[i];
        core_sm64_next(&r);
    }
    return r;
}

/* ---- core_rng: xoshiro256** ---- */
typedef struct core_rng { uint64_t s[4]; } core_rng;

/* Mixes two keys into one 64-bit seed (order matters). */
uint64_t core_rng_key(uint64_t a, uint64_t b);
void core_rng_seed(core_rng *r, uint64_t seed);
uint64_t core_rng_u64(core_rng *r);
/* uniform in [0, 1) with 53 random bits */
double core_rng_uniform(core_rng *r);
/* uniform integer in [0, n) without modulo bias */
uint64_t core_rng_below(core_rng *r, uint64_t n);
/* standard normal (Box-Muller, no cached second value so the state alone determines the stream) */
double core_rng_normal(core_rng *r);

#endif
