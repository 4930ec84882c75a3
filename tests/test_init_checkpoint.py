"""`sspose init` checkpoints read back with h5py: exactly the SPEC section 3/6 names and shapes
(expected set written out here from the SPEC text, independently of the C and PyTorch code)."""
import os
import subprocess
import sys

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H  # noqa: E402


def spec_shapes(width, stages, stride, offsets, ss):
    w = lambda c: max(1, int(np.floor(c * width + 0.5)))  # noqa: E731
    shapes = {}

    def conv(name, cin, cout, k):
        shapes[name + "/weight"] = (cout, cin, k, k)
        shapes[name + "/bias"] = (cout,)
        return cout

    c = 3
    for name, ch in [("conv1_1", 64), ("conv1_2", 64), ("conv2_1", 128), ("conv2_2", 128), ("conv3_1", 256),
                     ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), ("conv4_1", 512), ("conv4_2", 512),
                     ("conv4_3_CPM", 256), ("conv4_4_CPM", 128)]:
        c = conv(name, c, w(ch), 3)
    feat = c
    heat = 19 + (36 if offsets else 0)
    for t in range(1, stages + 1):
        for b, out in (("paf", 38), ("heat", heat)):
            x = feat if t == 1 else 38 + heat + feat
            if t == 1:
                x = conv(f"stage1/{b}/conv1", x, w(128), 3)
                x = conv(f"stage1/{b}/conv2", x, w(128), 3)
                x = conv(f"stage1/{b}/conv3", x, w(128), 3)
                x = conv(f"stage1/{b}/conv4", x, w(512), 1)
                conv(f"stage1/{b}/conv5", x, out, 1)
            else:
                for i in range(1, 6):
                    x = conv(f"stage{t}/{b}/conv{i}", x, w(128), 7)
                x = conv(f"stage{t}/{b}/conv6", x, w(128), 1)
                conv(f"stage{t}/{b}/conv7", x, out, 1)
    if ss in ("p2h", "both"):
        conv("p2h/conv3", conv("p2h/conv2", conv("p2h/conv1", 38, w(128), 3), w(128), 3), 19, 1)
    if ss in ("h2p", "both"):
        conv("h2p/conv3", conv("h2p/conv2", conv("h2p/conv1", 19, w(128), 3), w(128), 3), 38, 1)
    return shapes


def datasets(g, prefix=""):
    out = {}
    for k, v in g.items():
        if isinstance(v, h5py.Dataset):
            out[prefix + k] = v
        else:
            out.update(datasets(v, prefix + k + "/"))
    return out


def check(config, sets, expect):
    ck = os.path.join(H.TMP, "ck.h5")
    args = [H.SSPOSE, "init", "--config", config, "--out", ck]
    for s in sets:
        args += ["--set", s]
    subprocess.run(args, check=True, capture_output=True)
    want = spec_shapes(**expect)
    with h5py.File(ck, "r") as f:
        assert f.attrs["format"] == "sspose-checkpoint"
        assert int(f.attrs["version"]) == 1 and int(f.attrs["step"]) == 0
        cfg = dict(l.split(" = ", 1) for l in f.attrs["config"].splitlines())
        assert cfg["model.stride"] == str(expect["stride"]) and cfg["model.ss"] == expect["ss"]
        params, mom = datasets(f["params"]), datasets(f["optim/momentum"])
        assert set(params) == set(want), f"extra {set(params) - set(want)}, missing {set(want) - set(params)}"
        assert set(mom) == set(want)
        for name, shape in want.items():
            assert params[name].shape == shape, (name, params[name].shape, shape)
            assert params[name].dtype == np.float32
            assert not np.any(mom[name][...]), f"momentum {name} not zero"
        assert not np.any(params["stage1/paf/conv5/bias"][...])
        wt = params["conv3_1/weight"][...]
        assert abs(wt.std() - np.sqrt(2 / (wt.shape[1] * 9))) < 0.05 * np.sqrt(2 / (wt.shape[1] * 9))
        assert abs(params["stage2/heat/conv7/weight"][...].std() - 0.01) < 0.002


def test_baseline_names_and_shapes():
    check("configs/baseline.ini", [], dict(width=1.0, stages=6, stride=8, offsets=0, ss="off"))


def test_paper_names_and_shapes():
    check("configs/paper.ini", [], dict(width=1.0, stages=6, stride=8, offsets=1, ss="p2h"))


def test_stride16_both_names_and_shapes():
    check("configs/paper.ini", ["model.stride=16", "model.ss=both", "model.width=0.5", "model.stages=4"],
          dict(width=0.5, stages=4, stride=16, offsets=1, ss="both"))


for t in (test_baseline_names_and_shapes, test_paper_names_and_shapes, test_stride16_both_names_and_shapes):
    H.run(t)
H.end()
