"""The C network against an independent PyTorch implementation (tests/torch_ref/net_ref.py),
both built from the same `sspose init` checkpoint: outputs of every stage and parameter
gradients of a fixed random linear objective."""
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H  # noqa: E402
from torch_ref.net_ref import load_checkpoint  # noqa: E402

BUILD = os.environ.get("SSPOSE_BUILD", "build")
torch.set_num_threads(2)


def crosscheck(tag, sets, n=2, size=64):
    ck = os.path.join(H.TMP, f"{tag}.h5")
    args = [H.SSPOSE, "init", "--config", "configs/tiny.ini", "--out", ck, "--seed", "5"]
    for s in sets:
        args += ["--set", s]
    subprocess.run(args, check=True, capture_output=True)
    net, _ = load_checkpoint(ck)
    net = net.double()  # the reference runs in double: the error measured is the C side's
    rng = np.random.default_rng(7)
    x = rng.uniform(-0.5, 0.5, (n, 3, size, size)).astype(np.float32)
    outs = net(torch.from_numpy(x).double())
    inp = os.path.join(H.TMP, f"{tag}-in.h5")
    obj = 0
    with h5py.File(inp, "w") as f:
        f["input"] = x
        for s, o in enumerate(outs):
            for k, t in o.items():
                r = rng.uniform(-1, 1, t.shape).astype(np.float32)
                f[f"r/stage{s + 1}/{k}"] = r
                obj = obj + (t * torch.from_numpy(r).double()).sum()
    obj.backward()
    out = os.path.join(H.TMP, f"{tag}-out.h5")
    subprocess.run([os.path.join(BUILD, "tests", "tool_netdump"), ck, inp, out], check=True, capture_output=True)
    worst_out = worst_grad = 0.0
    with h5py.File(out, "r") as f:
        for s, o in enumerate(outs):
            for k, t in o.items():
                ref = t.detach().numpy()
                got = f[f"outputs/stage{s + 1}/{k}"][...]
                assert got.shape == ref.shape, (k, got.shape, ref.shape)
                rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
                worst_out = max(worst_out, rel)
                assert rel <= 1e-4, f"stage{s + 1}/{k}: relative error {rel:.3g}"
        names = dict(net.spec_names())
        assert set(names) == set(_walk(f["grads"])), "parameter name sets differ"
        for name, p in names.items():
            ref = p.grad.numpy()
            got = f["grads/" + name][...]
            rel = np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)
            worst_grad = max(worst_grad, rel)
            assert rel <= 1e-3, f"grad {name}: relative error {rel:.3g}"
    print(f"  {tag}: worst output rel err {worst_out:.2e}, worst grad rel err {worst_grad:.2e}")


def _walk(g, prefix=""):
    names = []
    for k, v in g.items():
        if isinstance(v, h5py.Dataset):
            names.append(prefix + k)
        else:
            names += _walk(v, prefix + k + "/")
    return names


def test_tiny_offsets_p2h_all_stages():
    crosscheck("tiny", ["model.width=0.125"])


def test_stride16_both_subnets():
    crosscheck("s16", ["model.width=0.125", "model.stride=16", "model.ss=both", "model.stages=3"])


def test_baseline_no_offsets_h2p():
    crosscheck("base", ["model.width=0.125", "model.offsets=0", "model.ss=h2p", "model.stages=2"], n=1, size=48)


for t in (test_tiny_offsets_p2h_all_stages, test_stride16_both_subnets, test_baseline_no_offsets_h2p):
    H.run(t)
H.end()
