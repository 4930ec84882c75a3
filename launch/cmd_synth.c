/* sspose synth: writes a synthetic COCO-format person-keypoint dataset. */
#include <stdint.h>
#include <stdio.h>

#include "core/check.h"
#include "dataio/synth.h"
#include "launch/cli.h"

static const char USAGE[] =
    "usage: sspose synth --out DIR --images N [--seed S] [--threads T] [--no-people]\n"
    "\n"
    "Renders N images of synthetic people (articulated figures in varied poses,\n"
    "scales and overlaps, with clutter, occluders and crowds) and writes\n"
    "DIR/images/%012d.jpg plus DIR/annotations.json in the official COCO\n"
    "person_keypoints format. The same seed gives the same files, byte for byte.\n"
    "\n"
    "  --out DIR      output directory (created when missing)\n"
    "  --images N     number of images (1..10000000)\n"
    "  --seed S       random seed (default 1)\n"
    "  --threads T    rendering threads (default: OpenMP's, i.e. the CPUs); output does not depend on it\n"
    "  --no-people    render the same scenes without the figures (annotations unchanged)\n"
    "  --help         this text\n";

int cmd_synth(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},   {"images", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},  {"no-people", no_argument, 0, 'P'},
        {"threads", required_argument, 0, 't'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    dataio_synth_opts o = {.seed = 1};
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'o': o.out_dir = optarg; break;
        case 'n': o.images = (int)cli_long("--images", optarg, 1, 10000000); break;
        case 's': o.seed = (uint64_t)cli_long("--seed", optarg, 0, INT64_MAX); break;
        case 'P': o.no_people = 1; break;
        case 't': o.threads = (int)cli_long("--threads", optarg, 1, 1024); break;
        default: CORE_DIE("synth: unexpected option");
        }
    }
    CHECK(optind == argc, "synth: unexpected argument '%s' (see 'sspose synth --help')", argv[optind]);
    CHECK(o.out_dir, "synth: --out DIR is required (see 'sspose synth --help')");
    CHECK(o.images > 0, "synth: --images N is required (see 'sspose synth --help')");
    dataio_synth_stats st;
    dataio_synth_write(&o, &st);
    printf("synth: %d images, %d persons (%d without keypoints), %d crowd regions, keypoints %d visible + %d occluded -> %s\n",
           st.images, st.persons, st.persons_no_kp, st.crowds, st.keypoints_visible, st.keypoints_occluded, o.out_dir);
    return 0;
}
