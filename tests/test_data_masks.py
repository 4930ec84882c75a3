"""mask_miss from COCO segmentations against pycocotools.mask: RLE (compressed
string and uncompressed counts) exactly, polygons up to pixels on the outline."""
import json
import os
import subprocess

import numpy as np
from pycocotools import mask as M

import pyharness as T

TOOL = os.path.join(os.environ.get("SSPOSE_BUILD", "build"), "tests", "tool_data_mask")
H, W = 57, 83


def ann(i, seg, crowd, nkp=0):
    return {"id": i, "image_id": 1, "category_id": 1, "iscrowd": crowd, "num_keypoints": nkp,
            "keypoints": [0] * 51, "bbox": [0, 0, 10, 10], "area": 100, "segmentation": seg}


def run_tool(anns, name):
    d = os.path.join(T.TMP, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "ann.json")
    json.dump({"images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}], "annotations": anns},
              open(path, "w"))
    r = subprocess.run([TOOL, path, d], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    skips = int(r.stdout.split()[1])
    return np.fromfile(os.path.join(d, "1.bin"), np.uint8).reshape(H, W), skips


def random_mask(rng):
    m = np.zeros((H, W), np.uint8)
    for _ in range(3):
        x0, y0 = rng.integers(0, W - 10), rng.integers(0, H - 10)
        m[y0:y0 + rng.integers(2, 20), x0:x0 + rng.integers(2, 30)] = 1
    m[rng.random((H, W)) < 0.03] = 1  # isolated pixels: many short runs
    return m


def uncompressed_counts(m):
    flat = np.asfortranarray(m).ravel(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v != cur:
            counts.append(run)
            cur, run = v, 0
        run += 1
    counts.append(run)
    return counts


def test_rle_compressed_matches_pycocotools():
    rng = np.random.default_rng(1)
    masks = [random_mask(rng) for _ in range(4)]
    anns = []
    for k, m in enumerate(masks):
        rle = M.encode(np.asfortranarray(m))
        anns.append(ann(10 + k, {"size": rle["size"], "counts": rle["counts"].decode()}, 1))
    got, skips = run_tool(anns, "rle_str")
    exp = np.ones((H, W), np.uint8)
    for a in anns:
        exp[M.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()}) > 0] = 0
    assert skips == 0
    assert (exp == 0).sum() > 200
    assert np.array_equal(got, exp), f"{(got != exp).sum()} pixels differ"


def test_rle_uncompressed_matches_pycocotools():
    rng = np.random.default_rng(2)
    m = random_mask(rng)
    counts = uncompressed_counts(m)
    seg = {"size": [H, W], "counts": counts}
    got, skips = run_tool([ann(5, seg, 1)], "rle_list")
    exp = 1 - M.decode(M.frPyObjects(seg, H, W))
    assert skips == 0
    assert np.array_equal(exp, 1 - m)  # our run builder is right
    assert np.array_equal(got, exp), f"{(got != exp).sum()} pixels differ"


def test_rle_known_pixels():
    # column-major runs: 3 zeros, 2 ones, rest zeros -> pixels (x=0,y=3..4) when H = 57? use positions
    seg = {"size": [H, W], "counts": [H + 3, 2, H * W - H - 5]}  # column 1, rows 3 and 4
    got, _ = run_tool([ann(5, seg, 1)], "rle_known")
    assert got[3, 1] == 0 and got[4, 1] == 0
    assert got.sum() == H * W - 2


def seg_distance(px, py, poly):
    p = np.asarray(poly).reshape(-1, 2)
    a, b = p, np.roll(p, -1, 0)
    best = np.inf
    for (ax, ay), (bx, by) in zip(a, b):
        vx, vy = bx - ax, by - ay
        t = np.clip(((px - ax) * vx + (py - ay) * vy) / max(vx * vx + vy * vy, 1e-12), 0, 1)
        best = min(best, np.hypot(px - ax - t * vx, py - ay - t * vy))
    return best


def test_polygons_match_pycocotools_up_to_outline():
    rng = np.random.default_rng(3)
    anns, polys = [], []
    for k in range(6):
        cx, cy = rng.uniform(12, 70), rng.uniform(12, 45)
        n = rng.integers(3, 10)
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        r = rng.uniform(4, 14, n)
        poly = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).ravel().tolist()
        polys.append(poly)
        anns.append(ann(10 + k, [poly], 0, nkp=0))
    # a crowd region given as polygons, too
    anns[-1]["iscrowd"] = 1
    got, skips = run_tool(anns, "poly")
    exp = np.ones((H, W), np.uint8)
    for p in polys:
        exp[M.decode(M.merge(M.frPyObjects([p], H, W))) > 0] = 0
    assert skips == 0
    masked = (exp == 0).sum()
    diff = np.argwhere(got != exp)
    assert len(diff) <= 0.06 * masked, f"{len(diff)} of {masked} pixels differ"
    for y, x in diff:  # only pixels the outline passes next to
        d = min(seg_distance(x + 0.5, y + 0.5, p) for p in polys)
        assert d < 1.0, f"pixel ({x},{y}) differs {d:.2f} px from every outline"
    # a pixel deep inside the first polygon and one far from all
    inside = np.argwhere(exp == 0)
    assert (got[exp == 0] == 0).mean() > 0.95


def test_bad_segmentations_are_counted():
    bad = [
        ann(1, {"size": [H, W], "counts": "#$%"}, 1),               # characters below '0'
        ann(2, {"size": [H, W], "counts": [5, 3]}, 1),               # does not cover the image
        ann(3, {"size": [H + 1, W], "counts": [H * W + W]}, 1),      # size differs from the image
        ann(4, [[1, 2, 3]], 0),                                       # odd coordinate count
        ann(5, {"size": [H, W], "counts": "0"}, 1),                  # one run of 0: sum 0
        ann(6, {"counts": [1]}, 1),                                  # no size
        ann(7, {"size": [H, W], "counts": "k"}, 1),                  # string ends inside a count
        ann(8, "nonsense", 0),
    ]
    got, skips = run_tool(bad, "bad")
    assert skips == len(bad), f"{skips} skips for {len(bad)} bad segmentations"
    assert got.min() == 1


for fn in [test_rle_compressed_matches_pycocotools, test_rle_uncompressed_matches_pycocotools, test_rle_known_pixels,
           test_polygons_match_pycocotools_up_to_outline, test_bad_segmentations_are_counted]:
    T.run(fn)
T.end()
