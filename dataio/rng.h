/* Small deterministic random numbers for data generation: a splitmix64
 * stream per sample, seeded from (seed, image, person, copy), so results do
 * not depend on thread count or scheduling. */
#ifndef SSPOSE_DATAIO_RNG_H
#define SSPOSE_DATAIO_RNG_H

#include <stdint.h>

typedef struct { uint64_t s; } dataio_rng;

static inline uint64_t dataio_rng_next(dataio_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double dataio_rng_uniform(dataio_rng *r) { return (dataio_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

/* Uniform in [lo, hi). */
static inline double dataio_rng_range(dataio_rng *r, double lo, double hi) { return lo + (hi - lo) * dataio_rng_uniform(r); }

/* A stream keyed by several values (each mixed in turn). */
static inline dataio_rng dataio_rng_keyed(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    dataio_rng r = {a};
    uint64_t k[3] = {b, c, d};
    for (int i = 0; i < 3; i++) {
        r.s ^= dataio_rng_next(&r) + k[i];
        dataio_rng_next(&r);
    }
    return r;
}

#endif
