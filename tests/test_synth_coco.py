"""sspose synth output read by pycocotools: loads, evaluates, and its keypoints lie on the drawn figures."""
import copy
import io
import json
import os
import subprocess
import sys
import contextlib

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H

OUT = os.path.join(H.TMP, "synth")
BG = os.path.join(H.TMP, "synth_bg")
N = 24
NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
         "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
         "left_knee", "right_knee", "left_ankle", "right_ankle"]
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
            [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]

subprocess.run([H.SSPOSE, "synth", "--out", OUT, "--images", str(N), "--seed", "11"], check=True, capture_output=True)
subprocess.run([H.SSPOSE, "synth", "--out", BG, "--images", str(N), "--seed", "11", "--no-people"], check=True,
               capture_output=True)


def quiet_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(path)


GT = quiet_coco(os.path.join(OUT, "annotations.json"))
RAW = json.load(open(os.path.join(OUT, "annotations.json")))


def load(dirname, img):
    return np.asarray(Image.open(os.path.join(dirname, "images", img["file_name"])).convert("RGB"), dtype=np.int32)


def test_pycocotools_loads():
    assert len(GT.getImgIds()) == N
    assert GT.getCatIds(catNms=["person"]) == [1]
    cat = GT.loadCats(1)[0]
    assert cat["keypoints"] == NAMES, cat["keypoints"]
    assert cat["skeleton"] == SKELETON
    assert len(GT.getAnnIds()) == len(RAW["annotations"]) > N
    for img in GT.loadImgs(GT.getImgIds()):
        w, h = Image.open(os.path.join(OUT, "images", img["file_name"])).size
        assert (w, h) == (img["width"], img["height"]), img


def test_annotations_are_consistent():
    for a in RAW["annotations"]:
        img = GT.loadImgs(a["image_id"])[0]
        k = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        assert set(k[:, 2]) <= {0, 1, 2}
        assert a["num_keypoints"] == int((k[:, 2] > 0).sum()), a["id"]
        assert np.all(k[k[:, 2] == 0, :2] == 0), "v=0 keypoints must be (0,0)"
        lab = k[k[:, 2] > 0]
        assert np.all((lab[:, 0] >= 0) & (lab[:, 0] <= img["width"] - 1) &
                      (lab[:, 1] >= 0) & (lab[:, 1] <= img["height"] - 1)), a["id"]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
        m = GT.annToMask(a)
        assert m.shape == (img["height"], img["width"])
        # our area is the rasterised outline; pycocotools' rasteriser may differ on edge pixels
        assert abs(m.sum() - a["area"]) <= 0.1 * a["area"] + 20, (a["id"], m.sum(), a["area"])
        if a["iscrowd"]:
            assert isinstance(a["segmentation"], dict) and a["segmentation"]["size"] == [img["height"], img["width"]]
            assert a["num_keypoints"] == 0
        else:
            assert isinstance(a["segmentation"], list) and all(len(p) >= 6 for p in a["segmentation"])


def test_dataset_has_every_case():
    anns = RAW["annotations"]
    v = np.concatenate([np.array(a["keypoints"]).reshape(17, 3)[:, 2] for a in anns])
    assert sum(a["iscrowd"] for a in anns) >= 2, "no crowd regions"
    assert sum(1 for a in anns if not a["iscrowd"] and a["num_keypoints"] == 0) >= 5, "no unannotated persons"
    assert (v == 1).sum() >= 20 and (v == 2).sum() >= 200, "too few occluded/visible keypoints"
    persons = [a for a in anns if a["num_keypoints"] > 0]
    assert sum(1 for a in persons if a["num_keypoints"] < 17) >= 5, "no truncated/back-facing persons"
    heights = [a["bbox"][3] for a in persons]
    assert max(heights) / min(heights) > 3, "no variety in scale"
    per_image = {}
    for a in persons:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert max(per_image.values()) >= 3, "no image with several people"


def test_keypoints_lie_on_figures():
    """Visible keypoints change the pixels (figure drawn there); far from every person nothing changes."""
    diffs, outside = [], []
    for img in GT.loadImgs(GT.getImgIds()):
        a_img, b_img = load(OUT, img), load(BG, img)
        anns = GT.loadAnns(GT.getAnnIds(imgIds=img["id"], iscrowd=None))
        covered = np.zeros(a_img.shape[:2], bool)
        for a in anns:
            x, y, w, h = a["bbox"]
            covered[max(0, int(y) - 4):int(y + h) + 5, max(0, int(x) - 4):int(x + w) + 5] = True
            k = np.array(a["keypoints"]).reshape(17, 3)
            for x, y, v in k:
                if v != 2:
                    continue
                xi, yi = int(round(x)), int(round(y))
                pa = a_img[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2]
                pb = b_img[max(0, yi - 1):yi + 2, max(0, xi - 1):xi + 2]
                diffs.append(np.abs(pa - pb).mean())
        d = np.abs(a_img - b_img).mean(axis=2)
        outside.append(d[~covered].mean() if (~covered).any() else 0)
    diffs = np.array(diffs)
    assert len(diffs) > 200
    assert (diffs > 10).mean() > 0.97, f"{(diffs <= 10).sum()} of {len(diffs)} visible keypoints on background"
    assert np.median(diffs) > 40, np.median(diffs)
    assert max(outside) < 3, f"figures drawn outside their annotations: mean diff {max(outside)}"


def dets_from_gt(shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    dets = []
    for a in RAW["annotations"]:
        if a["iscrowd"] or a["num_keypoints"] == 0:
            continue
        k = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        scale = np.sqrt(a["area"])
        k[:, :2] += shift * scale * rng.standard_normal((17, 2))
        k[:, 2] = 1
        dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": k.ravel().tolist(),
                     "score": float(rng.uniform(0.5, 1))})
    return dets


def evaluate(dets):
    with contextlib.redirect_stdout(io.StringIO()):
        dt = GT.loadRes(copy.deepcopy(dets))
        ev = COCOeval(GT, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_cocoeval_runs_and_ranks():
    perfect = evaluate(dets_from_gt(0.0))
    assert abs(perfect[0] - 1.0) < 1e-6, f"AP of the ground truth itself = {perfect[0]}"
    noisy = evaluate(dets_from_gt(0.08, seed=1))
    worse = evaluate(dets_from_gt(0.3, seed=2))
    assert 0 <= worse[0] < noisy[0] < perfect[0], (perfect[0], noisy[0], worse[0])


def test_segm_eval_runs():
    """The segmentation side of the JSON (polygons, RLE crowds) goes through COCOeval as well."""
    dets = []
    for a in RAW["annotations"]:
        if a["iscrowd"]:
            continue
        rle = mask_util.encode(np.asfortranarray(GT.annToMask(a)))
        rle["counts"] = rle["counts"].decode()
        dets.append({"image_id": a["image_id"], "category_id": 1, "segmentation": rle, "score": 1.0})
    with contextlib.redirect_stdout(io.StringIO()):
        ev = COCOeval(GT, GT.loadRes(dets), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] > 0.99, ev.stats[0]


for t in [test_pycocotools_loads, test_annotations_are_consistent, test_dataset_has_every_case,
          test_keypoints_lie_on_figures, test_cocoeval_runs_and_ranks, test_segm_eval_runs]:
    H.run(t)
H.end()
