/* The random streams of core/rng.h, pinned value for value: synthetic images,
 * shards (augmentation), the loader's order and flips, and parameter init all
 * depend on every bit of them, so a change here must be deliberate. The
 * expected values were printed by the four generators this header replaced
 * (core/rng.c, dataio/rng.h, dataio/synth.c's and dataio/loader.c's private
 * copies) before they were merged into it. */
#include <inttypes.h>

#include "core/rng.h"
#include "tests/test.h"

static void test_rng_mix64(void)
{
    T_CHECK(core_rng_mix64(0) == 0);
    T_CHECK(core_rng_mix64(0x123456789abcdefULL) == 0xb2c058e4ebb5112cULL);
    T_CHECK(core_rng_unit(UINT64_MAX) < 1.0 && core_rng_unit(0) == 0.0);
}

static void test_rng_xoshiro_stream(void)
{
    core_rng r;
    core_rng_seed(&r, 42);
    T_CHECK(core_rng_key(1, 2) == 0x819284b45967300fULL);
    const uint64_t want[3] = {0x15780b2e0c2ec716ULL, 0x6104d9866d113a7eULL, 0xae17533239e499a1ULL};
    for (int i = 0; i < 3; i++) {
        uint64_t v = core_rng_u64(&r);
        T_CHECKF(v == want[i], "u64 #%d = %#" PRIx64 ", pinned %#" PRIx64, i, v, want[i]);
    }
    T_CHECK(core_rng_uniform(&r) == 0x1.d9715a8e0766cp-1);
    T_CHECK(core_rng_normal(&r) == 0x1.0409077faf56dp-6);
    T_CHECK(core_rng_below(&r, 1000003) == 885406);
}

/* dataio/rng.h's keyed stream (augmentation draws per sample) */
static void test_rng_sm64_keyed_stream(void)
{
    core_sm64 d = core_sm64_keyed(7, 11, 13, 17);
    T_CHECKF(d.s == 0x56ee21859c9636a2ULL, "keyed state %#" PRIx64, d.s);
    const uint64_t want[3] = {0x4c84c6f08de5729fULL, 0x28ed36f7a2ebc358ULL, 0xc1d5dfe897fada9cULL};
    for (int i = 0; i < 3; i++) {
        uint64_t v = core_sm64_next(&d);
        T_CHECKF(v == want[i], "next #%d = %#" PRIx64 ", pinned %#" PRIx64, i, v, want[i]);
    }
    T_CHECK(core_sm64_range(&d, -3, 5) == -0x1.8dad9aec4c0f8p-1);
}

/* dataio/synth.c's per-image stream, seeded as synth seeds scene (seed 7, image 5) */
static void test_rng_sm64_synth_stream(void)
{
    core_sm64 s = {core_rng_mix64(7 * 0x100000001b3ULL + 5 * CORE_RNG_GOLDEN + 1)};
    T_CHECK(s.s == 0xfa1b4889e9a8f046ULL);
    T_CHECK(core_sm64_next(&s) == 0x927b1a9e1435a5f8ULL);
    T_CHECK(core_sm64_int(&s, 40, 80) == 76);
    T_CHECK(core_sm64_normal(&s) == -0x1.68970e954cda2p+0);
}

int main(void)
{
    T_RUN(test_rng_mix64);
    T_RUN(test_rng_xoshiro_stream);
    T_RUN(test_rng_sm64_keyed_stream);
    T_RUN(test_rng_sm64_synth_stream);
    T_EXIT();
}
