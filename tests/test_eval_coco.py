"""sspose eval against pycocotools' COCOeval(iouType='keypoints'): all ten stats agree to 1e-6.

Cases: the real sample (test_coco.json + example_preds.json), then seeded random
ground truth / detection sets that exercise every rule of the evaluation: dropped
keypoints, jitter, missing and extra persons, crowd regions, gt without labelled
keypoints (ignored, and not ignored but with v all 0 -> bbox OKS), gt id 0,
duplicate detections, more than 20 detections per image, score ties, results
carrying 'bbox', results of other categories, two categories, empty results."""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H  # noqa: E402

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NAMES = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
GT_SAMPLE = os.path.join(H.SHARED, "test_coco.json")
DT_SAMPLE = os.path.join(H.SHARED, "example_preds.json")


def pycoco(gt, dt):
    """stats and printed summary of pycocotools; dt an in-memory list (may be empty)."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        cg = COCO()
        cg.dataset = json.loads(json.dumps(gt))
        cg.createIndex()
        if dt:
            cd = cg.loadRes(json.loads(json.dumps(dt)))
        else:  # loadRes cannot take an empty list; an empty result set is what it would mean
            cd = COCO()
            cd.dataset = {"images": list(gt["images"]), "categories": list(gt["categories"]), "annotations": []}
            cd.createIndex()
        E = COCOeval(cg, cd, "keypoints")
        E.evaluate()
        E.accumulate()
        E.summarize()
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith(" Average")]
    return [float(s) for s in E.stats], lines


def sspose(gt, dt, name, json_out=True):
    gp = os.path.join(H.TMP, name + "_gt.json")
    dp = os.path.join(H.TMP, name + "_dt.json")
    with open(gp, "w") as f:
        json.dump(gt, f)
    with open(dp, "w") as f:
        json.dump(dt, f)
    args = [H.SSPOSE, "eval", "--gt", gp, "--results", dp] + (["--json"] if json_out else [])
    p = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"sspose eval failed rc={p.returncode}: {p.stderr.strip()}"
    return p.stdout


def compare(gt, dt, name):
    ref, _ = pycoco(gt, dt)
    got = json.loads(sspose(gt, dt, name))
    for i, n in enumerate(NAMES):
        assert abs(got[n] - ref[i]) <= 1e-6, f"{name}: {n} sspose {got[n]!r} vs pycocotools {ref[i]!r}"
    return ref


def test_sample_matches_pycocotools():
    gt = json.load(open(GT_SAMPLE))
    dt = json.load(open(DT_SAMPLE))
    ref = compare(gt, dt, "sample")
    assert 0.5 < ref[0] < 1.0, f"sample AP {ref[0]} is not a meaningful check"


def test_sample_summary_text_identical():
    gt = json.load(open(GT_SAMPLE))
    dt = json.load(open(DT_SAMPLE))
    _, ref_lines = pycoco(gt, dt)
    got = sspose(gt, dt, "sample_text", json_out=False).splitlines()
    assert got == ref_lines, f"summary differs:\n{got}\nvs\n{ref_lines}"


# ---------------------------------------------------------------- random cases

# a rough standing person in unit box coordinates (COCO-17 order)
TEMPLATE = np.array([[.5, .08], [.53, .06], [.47, .06], [.56, .08], [.44, .08], [.62, .2], [.38, .2],
                     [.68, .35], [.32, .35], [.7, .48], [.3, .48], [.58, .52], [.42, .52], [.58, .75],
                     [.42, .75], [.58, .97], [.42, .97]])


def make_gt(rng, nimg, ncat=1, id_zero=False):
    images = [{"id": int(i), "width": 640, "height": 480, "file_name": f"{i}.jpg"}
              for i in rng.choice(100000, nimg, replace=False)]
    cats = [{"id": c, "name": f"c{c}", "supercategory": "person"} for c in ([1, 3][:ncat])]
    anns, nid = [], 1
    for img in images:
        if rng.random() < 0.1:
            continue  # an image without any annotation
        for _ in range(rng.integers(1, 9)):
            # log-uniform person height: small, medium and large areas all occur
            h = float(np.exp(rng.uniform(np.log(12), np.log(420))))
            w = h * rng.uniform(0.3, 0.8)
            x0, y0 = rng.uniform(-0.1 * w, 640 - 0.9 * w), rng.uniform(-0.1 * h, 480 - 0.9 * h)
            kind = rng.random()
            kp = np.zeros((17, 3))
            crowd = 0
            if kind < 0.07:  # crowd region
                crowd = 1
                w, h = w * 2, h * 1.2
                nk = 0
            else:
                kp[:, 0] = x0 + TEMPLATE[:, 0] * w + rng.normal(0, 0.03 * w, 17)
                kp[:, 1] = y0 + TEMPLATE[:, 1] * h + rng.normal(0, 0.03 * h, 17)
                vis = rng.random(17) < rng.uniform(0, 1.1)
                if kind < 0.14:
                    vis[:] = False  # annotated person without labelled keypoints
                kp[:, 2] = np.where(vis, rng.integers(1, 3, 17), 0)
                kp[~vis, :2] = 0
                nk = int(vis.sum())
                if kind > 0.97:
                    nk = 0 if nk else 3  # num_keypoints disagreeing with v: ignored / bbox-OKS paths
            area = float(w * h * rng.uniform(0.35, 0.7))
            anns.append({"id": 0 if (id_zero and nid == 2) else nid, "image_id": img["id"],
                         "category_id": int(rng.choice([c["id"] for c in cats])), "iscrowd": crowd,
                         "num_keypoints": nk, "area": area, "bbox": [x0, y0, w, h],
                         "keypoints": [round(float(v), 2) for v in kp.ravel()], "segmentation": []})
            nid += 1
    rng.shuffle(anns)
    return {"images": images, "annotations": anns, "categories": cats}


def make_dets(rng, gt, opts):
    dts = []
    tie_levels = opts.get("ties")
    for a in gt["annotations"]:
        if rng.random() < opts.get("miss", 0.15):
            continue  # missing person
        kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        x0, y0, w, h = a["bbox"]
        if a["num_keypoints"] == 0 or (kp[:, 2] == 0).all():
            # predict a plausible full body where the annotation has none (crowd etc.)
            kp[:, 0] = x0 + TEMPLATE[:, 0] * w
            kp[:, 1] = y0 + TEMPLATE[:, 1] * h
        else:
            lab = kp[:, 2] > 0
            kp[~lab, 0] = x0 + TEMPLATE[~lab, 0] * w
            kp[~lab, 1] = y0 + TEMPLATE[~lab, 1] * h
        s = np.sqrt(max(a["area"], 1.0))
        jit = opts.get("jitter", 0.05) * rng.uniform(0.2, 2.0)
        kp[:, :2] += rng.normal(0, jit * s, (17, 2))
        kp[:, 2] = rng.uniform(0.05, 1.0, 17)
        drop = rng.random(17) < opts.get("drop", 0.15)
        kp[drop] = 0  # dropped keypoints: written as 0, 0, 0 and counted in the area extent
        copies = 1 + (rng.random() < opts.get("dup", 0.1)) * int(rng.integers(1, 3))
        for c in range(copies):
            k = kp.copy()
            if c:
                k[:, :2] += rng.normal(0, 0.02 * s, (17, 2))
            dts.append({"image_id": a["image_id"], "category_id": a["category_id"],
                        "keypoints": [float(v) for v in k.ravel()], "score": 0.0})
    for img in gt["images"]:
        for _ in range(rng.poisson(opts.get("extra", 1.0))):
            h = float(np.exp(rng.uniform(np.log(10), np.log(400))))
            x0, y0 = rng.uniform(0, 600), rng.uniform(0, 440)
            k = np.zeros((17, 3))
            k[:, 0] = x0 + TEMPLATE[:, 0] * h * 0.5 + rng.normal(0, 3, 17)
            k[:, 1] = y0 + TEMPLATE[:, 1] * h + rng.normal(0, 3, 17)
            k[:, 2] = rng.uniform(0, 1, 17)
            dts.append({"image_id": img["id"], "category_id": int(gt["categories"][0]["id"]),
                        "keypoints": [float(v) for v in k.ravel()], "score": 0.0})
    for d in dts:
        d["score"] = float(rng.integers(0, tie_levels)) / tie_levels if tie_levels else float(rng.random())
    if opts.get("other_cat"):
        dts.append(dict(dts[0], category_id=99))
    if opts.get("bbox"):
        for d in dts:
            k = np.array(d["keypoints"]).reshape(17, 3)
            d["bbox"] = [float(k[:, 0].min()), float(k[:, 1].min()), float(np.ptp(k[:, 0])) * 1.1,
                         float(np.ptp(k[:, 1])) * 0.9]
    rng.shuffle(dts)
    if opts.get("bbox") == "empty_first" and dts:
        dts[0]["bbox"] = []  # loadRes then takes the keypoint-extent branch for all results
    return dts


CASES = [
    dict(),
    dict(ties=3),
    dict(ties=1),                      # every score equal: order decides everything
    dict(jitter=0.15, drop=0.4),
    dict(jitter=0.01, miss=0.0, dup=0.5),
    dict(extra=6.0),                   # often more than 20 detections on an image
    dict(extra=25.0, ties=5),          # the cap at 20 with ties at the cut
    dict(miss=0.6, jitter=0.3),
    dict(bbox=True),                   # results with 'bbox': area from it, as loadRes does
    dict(bbox="empty_first"),          # ... unless the first result's bbox is []
    dict(other_cat=True, ties=4),
    dict(ncat=2),
    dict(ncat=2, ties=2, extra=3.0),
    dict(id_zero=True, miss=0.0),      # gt id 0: pycocotools counts its matches as misses
    dict(jitter=0.0, miss=0.0, drop=0.0),
]


def test_random_perturbations_match_pycocotools():
    seeds = int(os.environ.get("SSPOSE_EVAL_SEEDS", "3"))  # more for a longer sweep
    n = 0
    for ci, opts in enumerate(CASES):
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * ci + seed)
            gt = make_gt(rng, nimg=int(rng.integers(6, 30)), ncat=opts.get("ncat", 1), id_zero=opts.get("id_zero", False))
            dt = make_dets(rng, gt, opts)
            compare(gt, dt, f"case{ci}_{seed}")
            n += 1
    assert n == seeds * len(CASES)


def test_sample_gt_perturbed_matches_pycocotools():
    base = json.load(open(GT_SAMPLE))
    for seed in range(12):
        rng = np.random.default_rng(77 + seed)
        gt = json.loads(json.dumps(base))
        if seed % 3 == 1:  # a crowd region over one image
            gt["annotations"].append({"id": 9000001, "image_id": 197388, "category_id": 1, "iscrowd": 1,
                                      "num_keypoints": 0, "area": 60000.0, "bbox": [100, 50, 400, 300],
                                      "keypoints": [0] * 51, "segmentation": {"counts": [], "size": [1, 1]}})
        opts = dict(ties=[None, 2, 7][seed % 3], extra=[0.5, 4.0, 8.0][seed % 3], dup=0.3)
        compare(gt, make_dets(rng, gt, opts), f"sample_pert{seed}")


def test_empty_results():
    gt = json.load(open(GT_SAMPLE))
    ref = compare(gt, [], "empty")
    assert ref == [0.0] * 10, f"empty results should give 0 everywhere here, pycocotools says {ref}"


def test_only_ignored_gt_gives_minus_one():
    gt = json.load(open(GT_SAMPLE))
    for a in gt["annotations"]:
        a["num_keypoints"] = 0
    dt = json.load(open(DT_SAMPLE))
    ref = compare(gt, dt, "all_ignored")
    assert ref == [-1.0] * 10, ref
    _, ref_lines = pycoco(gt, dt)
    got = sspose(gt, dt, "all_ignored_text", json_out=False).splitlines()
    assert got == ref_lines and got[0].endswith("= -1.000"), f"{got} vs {ref_lines}"


def test_large_set_matches_pycocotools():
    # 2000 images x ~5 persons with 20+ detections each (timing lives in --bench, not here)
    rng = np.random.default_rng(5)
    gt = make_gt(rng, nimg=2000)
    dt = make_dets(rng, gt, dict(extra=3.0))
    got = json.loads(sspose(gt, dt, "large"))
    ref, _ = pycoco(gt, dt)
    for i, n in enumerate(NAMES):
        assert abs(got[n] - ref[i]) <= 1e-6, f"{n}: {got[n]} vs {ref[i]}"


def bench(nimg=5000):
    """python3 tests/test_eval_coco.py --bench: val2017-sized timing against pycocotools."""
    import time
    rng = np.random.default_rng(11)
    gt = make_gt(rng, nimg=nimg)
    dt = make_dets(rng, gt, dict(extra=15.0))
    t = time.time()
    ref, _ = pycoco(gt, dt)
    tp = time.time() - t
    gp, dp = os.path.join(H.TMP, "bench_gt.json"), os.path.join(H.TMP, "bench_dt.json")
    json.dump(gt, open(gp, "w"))
    json.dump(dt, open(dp, "w"))
    t = time.time()
    out = subprocess.run([H.SSPOSE, "eval", "--gt", gp, "--results", dp, "--json"], capture_output=True, text=True, check=True)
    ts = time.time() - t
    got = json.loads(out.stdout)
    diff = max(abs(got[n] - ref[i]) for i, n in enumerate(NAMES))
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} gt, {len(dt)} results: "
          f"pycocotools {tp:.2f}s (in memory), sspose eval {ts:.2f}s (incl. reading the JSON files), "
          f"ratio {tp / ts:.1f}x, max |stat diff| {diff:.2e}")


if __name__ == "__main__" and "--bench" in sys.argv:
    bench()
elif __name__ == "__main__":
    for fn in [test_sample_matches_pycocotools, test_sample_summary_text_identical,
               test_random_perturbations_match_pycocotools, test_sample_gt_perturbed_matches_pycocotools,
               test_empty_results, test_only_ignored_gt_gives_minus_one, test_large_set_matches_pycocotools]:
        H.run(fn)
    H.end()
