"""Slow, opt-in (SSPOSE_SLOW_TESTS=1): a small CNN learns keypoint heatmaps from
`sspose synth` data converted by `sspose data`, far above chance on held-out images.
Peaks are scored per keypoint channel, so left/right confusions count as misses."""
import io
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H

BUDGET_S = float(os.environ.get("SSPOSE_LEARN_SECONDS", "420"))


def make(split, images, seed):
    d = os.path.join(H.TMP, split)
    subprocess.run([H.SSPOSE, "synth", "--out", d, "--images", str(images), "--seed", str(seed)], check=True,
                   capture_output=True)
    subprocess.run([H.SSPOSE, "data", "--ann", f"{d}/annotations.json", "--images", f"{d}/images", "--out",
                    f"{d}-shard", "--set", "model.input=184", "--samples-per-shard", "100000", "--seed", str(seed)],
                   check=True, capture_output=True)
    return f"{d}-shard-00000.h5"


def load(path):
    import h5py
    import torch
    from PIL import Image
    with h5py.File(path, "r") as f:
        imgs = np.stack([np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("RGB")) for b in f["jpeg"]])
        heat = f["heatmap"][:].astype(np.float32) * f["heatmap"].attrs["scale"]
        mask = f["mask"][:].astype(np.float32) * f["mask"].attrs["scale"]
    return (torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255 - 0.5, torch.from_numpy(heat),
            torch.from_numpy(mask)[:, None])


def test_small_cnn_learns_synth_keypoints():
    if os.environ.get("SSPOSE_SLOW_TESTS") != "1":
        raise H.Skip("slow (minutes of CPU); run with SSPOSE_SLOW_TESTS=1")
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    xt, ht, mt = load(make("train", 300, 1))
    xv, hv, mv = load(make("val", 40, 2))

    def block(i, o, s=1):
        return [nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o), nn.ReLU()]
    net = nn.Sequential(*block(3, 32, 2), *block(32, 32), *block(32, 64, 2), *block(64, 64), *block(64, 96, 2),
                        *block(96, 96), *block(96, 96), nn.Conv2d(96, 96, 3, 1, 2, dilation=2), nn.ReLU(),
                        nn.Conv2d(96, 96, 3, 1, 4, dilation=4), nn.ReLU(), nn.Conv2d(96, 19, 1))
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    t0 = time.time()
    while time.time() - t0 < BUDGET_S:
        i = torch.randint(0, len(xt), (16,))
        loss = ((net(xt[i]) - ht[i]) ** 2 * mt[i]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        p = torch.cat([net(xv[i:i + 32]) for i in range(0, len(xv), 32)])
    val = ((p - hv) ** 2 * mv).mean().item()
    base = ((ht.mean(0, keepdim=True) - hv) ** 2 * mv).mean().item()
    hits = tot = 0
    for k in range(18):
        present = hv[:, k].flatten(1).max(1).values > 0.9
        on = hv[:, k].flatten(1).gather(1, p[:, k].flatten(1).argmax(1)[:, None])[:, 0] > 0.5
        hits += (on & present).sum().item()
        tot += present.sum().item()
    chance = (hv[:, :18] > 0.5).float().mean().item()
    print(f"# val loss {val:.5f} vs mean-heatmap baseline {base:.5f}; peak on the right keypoint "
          f"{hits / tot:.3f} vs chance {chance:.3f}", flush=True)
    assert val < 0.9 * base, (val, base)
    assert hits / tot > 10 * chance, (hits / tot, chance)


H.run(test_small_cnn_learns_synth_keypoints)
H.end()
