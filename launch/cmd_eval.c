/* sspose eval: COCO keypoint AP of a results file against ground truth.
 *
 * The command is two steps so that the inference mode (--checkpoint/--images,
 * eval/predict.h, docs/eval.md) plugs in before the second: it writes the
 * results file and then hands its path to cmd_eval_score like --results does. */
#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "core/fileid.h"
#include "eval/coco_json.h"
#include "eval/cocoeval.h"
#include "eval/predict.h"
#include "launch/cli.h"

static const char USAGE[] =
    "usage: sspose eval --gt ANNOTATIONS.json --results RESULTS.json [--json]\n"
    "       sspose eval --gt ANNOTATIONS.json --checkpoint CK.h5 --images DIR --out RESULTS.json\n"
    "                   [--scales LIST] [--flip] [--device NAME] [--set S.K=V ...] [--json]\n"
    "\n"
    "COCO keypoint evaluation, the numbers of pycocotools' COCOeval(iouType='keypoints'):\n"
    "AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl (OKS, at most 20 persons per image).\n"
    "\n"
    "  --gt FILE       COCO person-keypoint annotations (e.g. person_keypoints_val2017.json)\n"
    "  --results FILE  results: a JSON list of {image_id, category_id, keypoints[51], score}\n"
    "  --json          print one JSON object instead of the ten summary lines\n"
    "  --checkpoint FILE  run inference first (docs/decode.md) on every GT image found\n"
    "                  in --images DIR, write the results to --out, then evaluate them;\n"
    "                  --scales LIST, --flip, --device auto|cpu|cuda, --set as in 'sspose infer'\n"
    "  -h, --help      this text\n"
    "\n"
    "A stat is -1 when no ground truth counts for it (as pycocotools prints).\n"
    "Results for images not in the ground truth are an error; see docs/eval.md.\n";

/* Loads, evaluates and prints; returns the exit status. */
static int cmd_eval_score(const char *gt_path, const char *results_path, int json)
{
    eval_coco_gt gt;
    eval_coco_dets dets;
    eval_coco_summary sum;
    eval_coco_load_gt(gt_path, &gt);
    eval_coco_load_results(results_path, &gt, &dets);
    if (dets.n_other_category)
        core_warn("%d results have a category_id absent from the ground truth and were ignored (as pycocotools does)",
                  dets.n_other_category);
    eval_coco_evaluate(&gt, &dets, &sum);
    if (json) eval_coco_print_json(stdout, &sum);
    else eval_coco_print(stdout, &sum);
    fflush(stdout);
    eval_coco_dets_free(&dets);
    eval_coco_gt_free(&gt);
    CHECK(!ferror(stdout), "eval: cannot write the summary to stdout");
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    static const struct option opts[] = {
        {"gt", required_argument, 0, 'g'},
        {"results", required_argument, 0, 'r'},
        {"json", no_argument, 0, 'j'},
        {"checkpoint", required_argument, 0, 'c'},
        {"images", required_argument, 0, 'i'},
        {"out", required_argument, 0, 'o'},
        {"scales", required_argument, 0, 'S'},
        {"flip", no_argument, 0, 'f'},
        {"device", required_argument, 0, 'd'},
        {"set", required_argument, 0, 's'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *gt = NULL, *results = NULL, *ck = NULL, *images = NULL, *out = NULL, *device = "auto";
    const char *sets[66];
    static char scales_set[300];
    int json = 0, c, nsets = 0;
    optind = 1;
    while ((c = cli_getopt(argc, argv, opts, USAGE)) != -1) {
        switch (c) {
        case 'g': gt = optarg; break;
        case 'r': results = optarg; break;
        case 'j': json = 1; break;
        case 'c': ck = optarg; break;
        case 'i': images = optarg; break;
        case 'o': out = optarg; break;
        case 'd': device = optarg; break;
        case 'f': CHECK(nsets < 64, "eval: too many --set options"); sets[nsets++] = "eval.flip=1"; break;
        case 'S':
            CHECK(nsets < 64, "eval: too many --set options");
            snprintf(scales_set, sizeof scales_set, "eval.scales=%s", optarg);
            sets[nsets++] = scales_set;
            break;
        case 's': CHECK(nsets < 64, "eval: too many --set options"); sets[nsets++] = optarg; break;
        default: CORE_DIE("eval: unexpected option (see 'sspose eval --help')");
        }
    }
    CHECK(optind == argc, "eval: unexpected argument '%s' (see 'sspose eval --help')", argv[optind]);
    CHECK(gt, "eval: --gt ANNOTATIONS.json is required (see 'sspose eval --help')");
    if (ck) {
        CHECK(!results, "eval: give either --results or --checkpoint, not both");
        CHECK(images, "eval: --checkpoint needs --images DIR (see 'sspose eval --help')");
        CHECK(out, "eval: --checkpoint needs --out RESULTS.json (see 'sspose eval --help')");
        core_refuse_input_output("eval", "--out", out, (const char *const[]){gt, ck},
                                 (const char *const[]){"--gt", "--checkpoint"}, 2);
        eval_model *m = eval_model_load(ck, sets, nsets, device);
        long n = eval_predict_coco(gt, images, eval_model_config(m), eval_model_forward, m, out);
        eval_model_free(m);
        fprintf(stderr, "wrote %s: %ld people\n", out, n); /* stdout carries the summary (--json) */
        results = out;
    } else {
        CHECK(!nsets && !images && !out, "eval: --images, --out, --scales, --flip and --set need --checkpoint");
    }
    CHECK(results, "eval: --results RESULTS.json is required (see 'sspose eval --help')");
    return cmd_eval_score(gt, results, json);
}
