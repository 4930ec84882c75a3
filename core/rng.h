/* Seeded, splittable random numbers (splitmix64 seeding + xoshiro256**).
 * Every random decision in sspose is keyed by explicit seeds so that runs
 * are reproducible and independent of thread and rank counts. */
#ifndef SSPOSE_CORE_RNG_H
#define SSPOSE_CORE_RNG_H

#include <stdint.h>

typedef struct core_rng { uint64_t s[4]; } core_rng;

/* Mixes any number of keys into one 64-bit seed (order matters). */
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
