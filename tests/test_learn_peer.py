"""bench/learn_torch.py, the PyTorch peer that bench/learn.sh measures sspose's
learning against: its loss (the reference loss plus loss.normalize = cells, batch norm
in training mode, its own data path) must be sspose's on the same weights and samples
or the comparison means nothing; its flips must mirror; a short run must write
validation rows that `sspose eval` produced."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "bench"))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
import pyharness as H  # noqa: E402

D = os.path.join(H.TMP, "learn_peer")
CFG = "configs/demo.ini"


def sh(*args):
    r = subprocess.run([H.SSPOSE, *args], capture_output=True, text=True)
    assert r.returncode == 0, f"sspose {args[0]}: {r.stderr.strip()[-400:]}"
    return r.stdout


def dataset():
    shard = os.path.join(D, "shards", "train-00000.h5")
    if not os.path.exists(shard):
        sh("synth", "--out", f"{D}/synth", "--images", "12", "--seed", "5")
        sh("synth", "--out", f"{D}/val", "--images", "4", "--seed", "6")
        os.makedirs(f"{D}/shards", exist_ok=True)
        sh("data", "--config", CFG, "--ann", f"{D}/synth/annotations.json", "--images", f"{D}/synth/images",
           "--out", f"{D}/shards/train", "--seed", "1", "--threads", "2")
    return shard, [f"data.train={D}/shards/train-*.h5", f"data.val_ann={D}/val/annotations.json",
                   f"data.val_images={D}/val/images"]


def test_peer_loss_equals_sspose_forward():
    import learn_torch as LT
    import sspose_torch as st
    shard, sets = dataset()
    setargs = [a for s in sets for a in ("--set", s)]
    ck, fw = os.path.join(D, "ck.h5"), os.path.join(D, "fw.h5")
    sh("init", "--config", CFG, "--out", ck, *setargs)
    sh("forward", "--checkpoint", ck, "--shard", shard, "--index", "0", "--count", "4", "--out", fw)
    net = st.SsposeNet.from_checkpoint(ck)
    net.train()
    rec = LT.Recipe(net.config_text, 1)
    x, t = LT.load_shards(shard)
    idx = torch.arange(4)
    g = torch.Generator().manual_seed(0)
    rec.flip = 0.0  # forward takes samples as stored
    xb, th, tp, ta, m = rec.batch_at(x, t, idx, g)
    with h5py.File(fw, "r") as f:
        ref = float(f["loss/total"][()])
        d = np.max(np.abs(f["input"][()] - xb.numpy()))
        assert d <= 1.5 / 255, f"peer input differs from sspose's by {d}"
        xb = torch.from_numpy(f["input"][()])  # the same pixels, so the loss compares the math only
    with torch.no_grad():
        got = float(rec.loss(net(xb), th, tp, ta, m))
    assert abs(got - ref) <= 1e-5 * abs(ref), f"peer loss {got} vs sspose forward {ref}"


def test_peer_flip_is_a_mirror():
    """Mirroring twice is the identity, and once moves a left keypoint's map to the right channel."""
    import learn_torch as LT
    shard, _ = dataset()
    x, t = LT.load_shards(shard)
    keys = {"model.offsets": "0", "model.ss": "off", "train.schedule": "cosine", "train.optimizer": "adamw",
            "train.batch": "2", "train.lr": "1", "train.weight_decay": "0", "train.warmup": "0",
            "train.warmup_start": "1", "train.lr_final": "1", "loss.normalize": "cells", "data.flip": "1"}
    rec = LT.Recipe("\n".join(f"{k} = {v}" for k, v in keys.items()), 1)
    idx = torch.arange(2)
    g = torch.Generator().manual_seed(0)
    xb, th, tp, ta, m = rec.batch_at(x, t, idx, g)
    assert torch.equal(th[:, 5], t["heatmap"][:2, 2].flip(2)), "left shoulder of the mirror is the right one flipped"
    assert torch.equal(tp[:, 0], -t["paf"][:2, 6].flip(2)), "limb 0's x is limb 3's x mirrored and negated"
    x2 = {"heatmap": th, "paf": tp, "attention": ta, "mask": m}
    xb2, th2, tp2, ta2, m2 = rec.batch_at(xb, x2, idx, g)
    for a, b in ((xb2, x[:2]), (th2, t["heatmap"][:2]), (tp2, t["paf"][:2]), (ta2, t["attention"][:2]),
                 (m2, t["mask"][:2])):
        assert torch.equal(a, b), "flipping twice is not the identity"


def test_peer_short_run_writes_validation_rows():
    _, sets = dataset()
    out = os.path.join(D, "run")
    r = subprocess.run([sys.executable, "bench/learn_torch.py", "--sspose", H.SSPOSE, "--config", CFG, "--out", out,
                        "--steps", "16", "--ranks", "1", *[a for s in sets for a in ("--set", s)]],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-600:]
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    assert [row["step"] for row in rows] == [2, 4, 6, 8, 10, 12, 14, 16], [row["step"] for row in rows]
    for row in rows:
        assert 0 <= row["val"]["ap"] <= 1 and row["time"]["step"] > 0 and np.isfinite(row["loss"]), row
    last = os.path.join(out, "ckpt-000000016.h5")
    e = json.loads(sh("eval", "--gt", f"{D}/val/annotations.json", "--images", f"{D}/val/images", "--checkpoint",
                      last, "--out", os.path.join(D, "e.json"), "--json"))
    assert e["AP"] == rows[-1]["val"]["ap"], (e["AP"], rows[-1]["val"]["ap"])


def test_peer_refuses_other_recipes():
    _, sets = dataset()
    r = subprocess.run([sys.executable, "bench/learn_torch.py", "--sspose", H.SSPOSE, "--config", CFG, "--out",
                        os.path.join(D, "bad"), "--steps", "8", "--set", "model.ss=p2h",
                        *[a for s in sets for a in ("--set", s)]], capture_output=True, text=True)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "model.ss = p2h" in lines[0], r.stderr


if __name__ == "__main__":
    os.makedirs(D, exist_ok=True)
    for t in (test_peer_loss_equals_sspose_forward, test_peer_flip_is_a_mirror, test_peer_short_run_writes_validation_rows,
              test_peer_refuses_other_recipes):
        H.run(t)
    H.end()
