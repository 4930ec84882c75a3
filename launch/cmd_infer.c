/* sspose infer: images -> people (COCO-style JSON) and skeleton overlays (PNG). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/check.h"
#include "core/fileid.h"
#include "dataio/image.h"
#include "eval/draw.h"
#include "eval/predict.h"
#include "launch/cli.h"

static const char USAGE[] =
    "usage: sspose infer --checkpoint CK.h5 --out DIR [options] IMAGE...\n"
    "\n"
    "Multi-person pose estimation on JPEG/PNG images. For each IMAGE writes\n"
    "  DIR/NAME.json  a COCO results list: {image_id, category_id, keypoints[51], score}\n"
    "                 per person (COCO-17 order, v = keypoint confidence, 0,0,0 = absent;\n"
    "                 image_id = the file name's number, e.g. 785 for 000000000785.jpg, else 0)\n"
    "  DIR/NAME.png   the image with the skeletons drawn over it\n"
    "\n"
    "  --checkpoint FILE  sspose checkpoint (its own config builds the network)\n"
    "  --out DIR          output folder (created when missing)\n"
    "  --scales LIST      test scales, e.g. 0.5,1,1.5,2 (default: eval.scales)\n"
    "  --flip             also average the mirrored image\n"
    "  --device NAME      auto (default), cpu or cuda\n"
    "  --set S.K=V        config override, e.g. --set eval.thre1=0.2 (repeatable)\n"
    "  -h, --help         this text\n"
    "\n"
    "Decoding and its config keys: docs/decode.md.\n";

/* "path/to/000000000785.jpg" -> name "000000000785", id 785 */
static long long image_name(const char *path, char *name, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(name, len, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    CHECK(*name, "infer: cannot name the outputs of '%s'", path);
    for (const char *p = name; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return strlen(name) < 18 ? atoll(name) : 0;
}

/* Every DIR/NAME.{json,png} this run writes, against the checkpoint and every image. */
static void refuse_overwriting_inputs(const char *out, const char *ck, char **images, int n)
{
    for (int i = 0; i < n; i++) {
        char name[1024], path[4200];
        image_name(images[i], name, sizeof name);
        for (int k = 0; k < 2; k++) {
            snprintf(path, sizeof path, "%s/%s.%s", out, name, k ? "png" : "json");
            core_refuse_input_output("infer", "output", path, (const char *const[]){ck}, (const char *const[]){"--checkpoint"}, 1);
            for (int j = 0; j < n; j++)
                core_refuse_input_output("infer", "output", path, (const char *const[]){images[j]},
                                         (const char *const[]){"image"}, 1);
        }
    }
}

int cmd_infer(int argc, char **argv)
{
    static const struct option opts[] = {
        {"checkpoint", required_argument, 0, 'c'}, {"out", required_argument, 0, 'o'},
        {"scales", required_argument, 0, 'S'},     {"flip", no_argument, 0, 'f'},
        {"device", required_argument, 0, 'd'},     {"set", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},             {0, 0, 0, 0},
    };
    const char *ck = NULL, *out = NULL, *device = "auto";
    const char *sets[66];
    int nsets = 0, c;
    static char scales_set[300];
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'c': ck = optarg; break;
        case 'o': out = optarg; break;
        case 'd': device = optarg; break;
        case 'f': CHECK(nsets < 64, "infer: too many --set options"); sets[nsets++] = "eval.flip=1"; break;
        case 'S':
            CHECK(nsets < 64, "infer: too many --set options");
            snprintf(scales_set, sizeof scales_set, "eval.scales=%s", optarg);
            sets[nsets++] = scales_set;
            break;
        case 's': CHECK(nsets < 64, "infer: too many --set options"); sets[nsets++] = optarg; break;
        default: CORE_DIE("infer: unexpected option (see 'sspose infer --help')");
        }
    }
    CHECK(ck, "infer: --checkpoint CK.h5 is required (see 'sspose infer --help')");
    CHECK(out, "infer: --out DIR is required (see 'sspose infer --help')");
    CHECK(optind < argc, "infer: no images given (see 'sspose infer --help')");
    /* Fail on unreadable images before the (slow) model load. */
    for (int i = optind; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        CHECK(f, "infer: cannot open image %s: %s", argv[i], strerror(errno));
        fclose(f);
    }
    /* Outputs are named after the file: two images of one name would overwrite each other. */
    for (int i = optind; i < argc; i++)
        for (int j = optind; j < i; j++) {
            char a[1024], b[1024];
            image_name(argv[i], a, sizeof a);
            image_name(argv[j], b, sizeof b);
            CHECK(strcmp(a, b), "infer: %s and %s would both write %s/%s.{json,png}", argv[j], argv[i], out, a);
        }
    if (mkdir(out, 0755) != 0 && errno != EEXIST) CORE_DIE("infer: cannot create %s: %s", out, strerror(errno));
    struct stat st;
    CHECK(stat(out, &st) == 0 && S_ISDIR(st.st_mode), "infer: --out %s is not a directory", out);

    refuse_overwriting_inputs(out, ck, argv + optind, argc - optind);
    eval_model *m = eval_model_load(ck, sets, nsets, device);
    const core_config *cfg = eval_model_config(m);
    for (int i = optind; i < argc; i++) {
        dataio_image img;
        char err[256], name[1024];
        if (dataio_image_load(argv[i], &img, err, sizeof err) != 0) CORE_DIE("infer: image %s: %s", argv[i], err);
        long long id = image_name(argv[i], name, sizeof name);
        eval_person *ppl;
        int n = eval_predict_image(img.rgb, img.height, img.width, cfg, eval_model_forward, m, &ppl);
        size_t len = strlen(out) + strlen(name) + 8;
        char *path = core_malloc(len);
        snprintf(path, len, "%s/%s.json", out, name);
        eval_write_people_json(path, id, ppl, n);
        snprintf(path, len, "%s/%s.png", out, name);
        eval_draw_png(path, img.rgb, img.height, img.width, ppl, n);
        printf("%s: %d %s -> %s/%s.{json,png}\n", argv[i], n, n == 1 ? "person" : "people", out, name);
        fflush(stdout);
        free(path);
        free(ppl);
        dataio_image_free(&img);
    }
    eval_model_free(m);
    return 0;
}
