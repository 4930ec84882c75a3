/* libFuzzer driver: the COCO keypoint results reader (eval/coco_json.c)
 * against a fixed two-image ground truth, then the evaluation of what parsed.
 * Build and run (docs/reliability.md, "Fuzzing"):
 *   bash tests/fuzz/build.sh && bash bench/fuzz.sh 60 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "eval/coco_json.h"
#include "eval/cocoeval.h"

static const char GT[] =
    "{\"images\":[{\"id\":1,\"width\":64,\"height\":48},{\"id\":2,\"width\":32,\"height\":32}],"
    "\"categories\":[{\"id\":1,\"name\":\"person\"}],\"annotations\":["
    "{\"id\":10,\"image_id\":1,\"category_id\":1,\"iscrowd\":0,\"num_keypoints\":2,\"area\":300,\"bbox\":[4,4,20,30],"
    "\"keypoints\":[10,10,2,12,12,2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]},"
    "{\"id\":11,\"image_id\":2,\"category_id\":1,\"iscrowd\":1,\"num_keypoints\":0,\"area\":100,\"bbox\":[0,0,10,10],"
    "\"keypoints\":[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]}]}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static eval_coco_gt gt;
    static int ready;
    char err[512];
    if (!ready) {
        core_set_quiet(1);
        if (eval_coco_parse_gt(GT, sizeof GT - 1, &gt, err, sizeof err) != 0) abort();
        ready = 1;
    }
    eval_coco_dets dets;
    err[0] = 0;
    if (eval_coco_parse_results((const char *)data, size, &gt, &dets, err, sizeof err) == 0) {
        if (dets.ndet <= 2000) { /* keep each run small */
            eval_coco_summary sum;
            eval_coco_evaluate(&gt, &dets, &sum);
        }
        eval_coco_dets_free(&dets);
    } else if (!err[0]) {
        abort(); /* a refusal always says why */
    }
    return 0;
}
