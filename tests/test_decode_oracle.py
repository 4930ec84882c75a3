"""Oracle decoding: SPEC section 2 targets (dataio/targets.h) of the real COCO
sample and of synthetic people go through the decoder
(build/tests/tool_decode_oracle); pycocotools scores what comes back, and
must agree with our own evaluator (eval/cocoeval.h) on the same files."""
import contextlib
import io
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as t  # noqa: E402

from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

BUILD = os.environ.get("SSPOSE_BUILD", "build")
TOOL = os.path.join(BUILD, "tests", "tool_decode_oracle")
GT_REAL = os.path.join(t.SHARED, "test_coco.json")


def coco_ap(gt_path, dt_path):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dets = json.load(open(dt_path))
        if not dets:
            return 0.0
        dt = gt.loadRes(dt_path)
        ev = COCOeval(gt, dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


OP_FROM_COCO = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
         (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]


def reachable_gt(src, dst):
    """The GT without keypoints that no limb target links to the rest of their
    person (a labelled wrist whose elbow is not): no bottom-up decoder can
    assign those, so they would cap the oracle's AP below 1 by design."""
    d = json.load(open(src))
    dropped = 0
    for a in d["annotations"]:
        k = a["keypoints"]
        lab = [k[3 * c + 2] > 0 if c is not None else (k[17] > 0 and k[20] > 0) for c in OP_FROM_COCO]
        parent = list(range(18))

        def root(x):
            while parent[x] != x:
                x = parent[x]
            return x
        for p, q in LIMBS:
            if lab[p] and lab[q]:
                parent[root(p)] = root(q)
        comps = {}
        for o in range(18):
            if lab[o]:
                comps.setdefault(root(o), []).append(o)
        if len(comps) <= 1:
            continue
        keep = set(max(comps.values(), key=len))
        for o, c in enumerate(OP_FROM_COCO):
            if c is not None and lab[o] and o not in keep:
                k[3 * c:3 * c + 3] = [0, 0, 0]
                a["num_keypoints"] -= 1
                dropped += 1
    json.dump(d, open(dst, "w"))
    return dropped


def run_tool(set_name, sigma, strides=(8, 16)):
    out = os.path.join(t.TMP, f"{set_name}_s{sigma:g}")
    os.makedirs(out, exist_ok=True)
    args = [TOOL, "real", GT_REAL, out] if set_name == "real" else [TOOL, "synth", out]
    extra = [str(sigma)] + ([str(strides[0])] if len(strides) == 1 else [])
    p = subprocess.run(args + extra, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr.strip()
    gt = GT_REAL if set_name == "real" else os.path.join(out, "synth_gt.json")
    gt_reach = os.path.join(out, "gt_reachable.json")
    dropped = reachable_gt(gt, gt_reach)
    res = {}
    for line in p.stdout.splitlines():
        m = re.match(r"oracle (\w+) fd=(\d+) (\w+) mean_err=([\d.na]+) median_err=([\d.na]+) found=(\d+)/(\d+) people=\d+ ap=([\d.]+)", line)
        if not m:
            continue
        fd, var = int(m.group(2)), m.group(3)
        dt = os.path.join(out, f"{set_name}_fd{fd}_{var}.json")
        ap, ap_all = coco_ap(gt_reach, dt), coco_ap(gt, dt)
        res[(fd, var)] = dict(mean=float(m.group(4)), median=float(m.group(5)), ap=ap)
        assert abs(float(m.group(8)) - ap_all) < 1e-4, f"eval/cocoeval AP {m.group(8)} != pycocotools {ap_all:.4f}"
        print(f"# {set_name} sigma={sigma:g} fd={fd} {var:9s} AP={ap:.4f} (all GT keypoints: {ap_all:.4f}, "
              f"{dropped} unreachable) mean_err={float(m.group(4)):.3f}px "
              f"median_err={float(m.group(5)):.3f}px found={m.group(6)}/{m.group(7)}")
    assert len(res) == 5 * len(strides), f"tool printed {len(res)} result lines"
    return res


def check_set(set_name):
    # SPEC's sigma = 7: every keypoint's cell has an offset target at stride 8
    r7 = run_tool(set_name, 7)
    for var in ("grid_off", "vote"):
        assert r7[(8, var)]["ap"] >= 0.99, f"{set_name} fd=8 {var}: AP {r7[(8, var)]['ap']:.4f} < 0.99"
    assert r7[(8, "vote_tta")]["ap"] >= 0.98, f"{set_name} fd=8 vote_tta: AP {r7[(8, 'vote_tta')]['ap']:.4f}"
    assert r7[(8, "grid_off")]["mean"] < 0.01, "offsets at stride 8 are not exact"
    for fd in (8, 16):
        assert r7[(fd, "vote")]["mean"] < r7[(fd, "up")]["mean"], f"fd={fd}: offsets no better than upsampling"
    gain8 = r7[(8, "up")]["mean"] - r7[(8, "vote")]["mean"]
    gain16 = r7[(16, "up")]["mean"] - r7[(16, "vote")]["mean"]
    assert gain16 > gain8 > 0, f"offset gain at stride 16 ({gain16:.3f}px) not above stride 8 ({gain8:.3f}px)"
    # At stride 16, sigma = 7 leaves keypoints near a cell corner without any
    # cell above the 0.4 level (no offset target); sigma = 14 keeps the SPEC's
    # geometry of stride 8 and the offsets are exact again.
    # (grid_off is reported, not asserted, here: on the grid, OpenPose's matching
    # order, which adds both peak scores to the limb score, gives one crossed
    # forearm of the crowded image 197388 to the wrong person.)
    r14 = run_tool(set_name, 14, strides=(16,))
    assert r14[(16, "vote")]["ap"] >= 0.99, f"{set_name} sigma=14 fd=16 vote: AP {r14[(16, 'vote')]['ap']:.4f} < 0.99"
    assert r14[(16, "grid_off")]["ap"] >= 0.95
    assert r14[(16, "vote_tta")]["ap"] >= 0.98
    assert r14[(16, "vote")]["mean"] < r14[(16, "up")]["mean"]


def test_oracle_real_coco_sample():
    check_set("real")


def test_oracle_synthetic_people():
    check_set("synth")


if __name__ == "__main__":
    if not os.path.exists(TOOL):
        print(f"FAIL - test_decode_oracle: {TOOL} not built")
        sys.exit(1)
    t.run(test_oracle_real_coco_sample)
    t.run(test_oracle_synthetic_people)
    t.end()
