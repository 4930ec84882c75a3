#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) { return core_rng_mix64(*x += CORE_RNG_GOLDEN); }

uint64_t core_rng_key(uint64_t a, uint64_t b)
{
    uint64_t x = a * CORE_RNG_GOLDEN ^ (b + 0x632be59bd9b4e019ULL);
    return splitmix64(&x);
}

void core_rng_seed(core_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t core_rng_u64(core_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double core_rng_uniform(core_rng *r) { return core_rng_unit(core_rng_u64(r)); }

uint64_t core_rng_below(core_rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = core_rng_u64(r);
    while (x >= limit);
    return x % n;
}

double core_rng_normal(core_rng *r)
{
    double u1 = core_rng_uniform(r), u2 = core_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
