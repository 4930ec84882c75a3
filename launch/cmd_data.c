/* sspose data: COCO person keypoints (JSON + images) -> training shards (SPEC
 * section 5). Flag parsing only: the pipeline is dataio_convert (dataio/convert.h). */
#include <stdio.h>
#include <unistd.h>

#include "core/check.h"
#include "core/config.h"
#include "dataio/convert.h"
#include "launch/cli.h"

static const char USAGE[] =
    "usage: sspose data --ann ANN.json --images DIR --out PREFIX [options]\n"
    "\n"
    "Converts COCO person-keypoint annotations and their images into training\n"
    "shards PREFIX-00000.h5, PREFIX-00001.h5, ... (format: docs/data.md).\n"
    "One sample per main person (>= 5 keypoints, area >= 32^2, not near an\n"
    "earlier main person), randomly scaled, rotated, shifted and flipped.\n"
    "\n"
    "  --config FILE           config (model.input, model.stride, data.sigma,\n"
    "                          data.paf_width, data.scale_min/max, data.max_rotate,\n"
    "                          data.center_perturb, data.target_height, data.flip)\n"
    "  --set section.key=v     override one config key (repeatable)\n"
    "  --ann FILE              COCO person_keypoints JSON\n"
    "  --images DIR            folder holding the images' file_name\n"
    "  --out PREFIX            output prefix (its folder must exist)\n"
    "  --overwrite             replace the shards PREFIX-*.h5 of an earlier run (refused\n"
    "                          without it); the old ones past the new last are removed\n"
    "  --seed S                augmentation seed (default 1)\n"
    "  --samples-per-shard N   samples per file (default 1000)\n"
    "  --copies K              independently augmented copies per person (default 1)\n"
    "  --threads T             worker threads (default: CPUs online)\n"
    "  --jpeg-quality Q        crop JPEG quality 50..100 (default 90)\n"
    "  --deflate L             zlib level of the targets 1..9 (default 1)\n"
    "  --max-images N          convert only the first N images (0 = all)\n"
    "  --progress-every SEC    seconds between progress lines off a terminal (default 10)\n"
    "  -h, --help              this text\n";

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cmd_data(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"set", required_argument, 0, 'S'},
        {"ann", required_argument, 0, 'a'}, {"images", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'}, {"seed", required_argument, 0, 's'},
        {"samples-per-shard", required_argument, 0, 'n'}, {"copies", required_argument, 0, 'k'},
        {"threads", required_argument, 0, 't'}, {"jpeg-quality", required_argument, 0, 'q'},
        {"deflate", required_argument, 0, 'z'}, {"max-images", required_argument, 0, 'm'},
        {"progress-every", required_argument, 0, 'p'}, {"overwrite", no_argument, 0, 'O'},
        {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    cli_config_args ca = {0};
    dataio_convert_opts o = {.seed = 1, .per_shard = 1000, .copies = 1, .threads = online_cpus(), .jpeg_quality = 90,
                             .deflate = 1, .progress_every = 10};
    int c;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ca.config_path = optarg; break;
        case 'S': cli_config_add_set(&ca, optarg); break;
        case 'a': o.ann = optarg; break;
        case 'i': o.images_dir = optarg; break;
        case 'o': o.prefix = optarg; break;
        case 's': o.seed = cli_long("--seed", optarg, 0, 0x7fffffffffffffffL); break;
        case 'n': o.per_shard = cli_long("--samples-per-shard", optarg, 1, 100000000); break;
        case 'k': o.copies = (int)cli_long("--copies", optarg, 1, 10000); break;
        case 't': o.threads = (int)cli_long("--threads", optarg, 1, 1024); break;
        case 'q': o.jpeg_quality = (int)cli_long("--jpeg-quality", optarg, 50, 100); break;
        case 'z': o.deflate = (int)cli_long("--deflate", optarg, 1, 9); break;
        case 'm': o.max_images = cli_long("--max-images", optarg, 0, 1000000000); break;
        case 'p': o.progress_every = cli_double("--progress-every", optarg, 0.01, 1e6); break;
        case 'O': o.overwrite = 1; break;
        default: CORE_DIE("data: unexpected option");
        }
    }
    CHECK(optind == argc, "data: unexpected argument '%s' (see 'sspose data --help')", argv[optind]);
    CHECK(o.ann, "data: --ann is required (see 'sspose data --help')");
    CHECK(o.images_dir, "data: --images is required (see 'sspose data --help')");
    CHECK(o.prefix, "data: --out is required (see 'sspose data --help')");
    core_config cfg;
    cli_config_build(&ca, &cfg);
    core_config_resolve(&cfg);
    o.ap = (dataio_aug_params){cfg.model.input, cfg.model.stride, cfg.data.sigma, cfg.data.paf_width,
                               cfg.data.scale_min, cfg.data.scale_max, cfg.data.max_rotate,
                               cfg.data.center_perturb, cfg.data.target_height, cfg.data.flip};
    dataio_convert_stats st;
    dataio_convert(&o, &st);
    return 0;
}
