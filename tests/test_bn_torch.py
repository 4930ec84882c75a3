"""Batch norm (model.norm = batch) against torch.nn.BatchNorm2d: the C network and the
independent PyTorch one (tests/torch_ref/net_ref.py, float64) built from the same
checkpoint, with random gamma, beta, conv biases and running statistics written into it.

Training mode: the outputs of every stage, every parameter gradient and the running
statistics after one forward pass (torch's momentum rule, unbiased variance), each tensor
bounded on its own. Eval mode: outputs and gradients with the running statistics, which
the pass leaves unchanged."""
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


def _walk(g, prefix=""):
    names = []
    for k, v in g.items():
        names += [prefix + k] if isinstance(v, h5py.Dataset) else _walk(v, prefix + k + "/")
    return names


def make_checkpoint(tag, sets):
    ck = os.path.join(H.TMP, f"{tag}.h5")
    args = [H.SSPOSE, "init", "--config", "configs/tiny.ini", "--out", ck, "--seed", "5"]
    for s in sets:
        args += ["--set", s]
    subprocess.run(args, check=True, capture_output=True)
    rng = np.random.default_rng(11)
    with h5py.File(ck, "r+") as f:
        names = _walk(f["params"])
        assert any(n.endswith("/bn/running_var") for n in names), "no batch-norm tensors in the checkpoint"
        for n in names:
            d = f["params/" + n]
            if n.endswith("/bn/weight"):
                v = 1 + 0.3 * rng.standard_normal(d.shape)
            elif n.endswith("/bn/bias") or n.endswith("/bn/running_mean"):
                v = 0.2 * rng.standard_normal(d.shape)
            elif n.endswith("/bn/running_var"):
                v = rng.uniform(0.5, 2.0, d.shape)
            elif n.endswith("/bias"):
                v = 0.1 * rng.standard_normal(d.shape)
            else:
                continue
            d[...] = v.astype(np.float32)
    return ck


def rel(got, ref):
    return np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12)


def crosscheck(tag, sets, mode, n=2, size=64):
    ck = make_checkpoint(tag, sets)
    net, _ = load_checkpoint(ck)
    net = net.double()
    net.train(mode == "train")
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
    subprocess.run([os.path.join(BUILD, "tests", "tool_netdump"), ck, inp, out, mode], check=True,
                   capture_output=True)
    worst = {"out": 0.0, "grad": 0.0, "buf": 0.0}
    with h5py.File(out, "r") as f, h5py.File(ck, "r") as c:
        for s, o in enumerate(outs):
            for k, t in o.items():
                e = rel(f[f"outputs/stage{s + 1}/{k}"][...], t.detach().numpy())
                worst["out"] = max(worst["out"], e)
                assert e <= 1e-4, f"{mode} stage{s + 1}/{k}: relative error {e:.3g}"
        names = dict(net.spec_names())
        assert set(names) == set(_walk(f["grads"])), "parameter name sets differ"
        for name, p in names.items():
            got, ref = f["grads/" + name][...], p.grad.numpy()
            layer = name.rsplit("/", 1)[0]
            if mode == "train" and name.endswith("/bias") and layer + "/bn/bias" in names:
                # batch statistics cancel a conv bias in front of BN: its true gradient is 0
                # (torch: ~1e-16); ours is float rounding of a sum that cancels, bounded
                # against the same layer's beta gradient (the sum before cancellation)
                scale = np.abs(names[layer + "/bn/bias"].grad.numpy()).max()
                e = np.abs(got - ref).max() / max(scale, 1e-12)
                assert e <= 1e-4, f"{mode} grad {name}: {e:.3g} of the beta gradient (should cancel)"
                continue
            e = rel(got, ref)
            worst["grad"] = max(worst["grad"], e)
            assert e <= 1e-3, f"{mode} grad {name}: relative error {e:.3g}"
        bufs = dict(net.spec_buffers())
        assert bufs and set(bufs) == set(_walk(f["buffers"])), "buffer name sets differ"
        for name, b in bufs.items():
            got, ref = f["buffers/" + name][...], b.numpy()
            e = rel(got, ref)
            worst["buf"] = max(worst["buf"], e)
            assert e <= 1e-5, f"{mode} running statistic {name}: relative error {e:.3g}"
            moved = rel(c["params/" + name][...], ref)
            # training moves every running statistic by momentum*(batch - running); eval leaves them
            assert (moved > 1e-3) if mode == "train" else (moved == 0), f"{mode} {name}: moved by {moved:.3g}"
    print(f"  {tag}: worst rel err outputs {worst['out']:.2e}, grads {worst['grad']:.2e}, "
          f"running stats {worst['buf']:.2e}")


SETS = ["model.width=0.125", "model.norm=batch", "model.stages=2", "model.ss=both", "model.bn_momentum=0.3",
        "model.bn_eps=1e-3"]


def test_bn_train_mode_outputs_grads_running_stats():
    crosscheck("bn_train", SETS, "train")


def test_bn_eval_mode_running_stats():
    crosscheck("bn_eval", SETS, "eval")


def test_bn_stride16_h2p_single_sample():
    # one sample: the statistics are over one image's cells only
    crosscheck("bn_s16", ["model.width=0.125", "model.norm=batch", "model.stages=2", "model.ss=h2p",
                          "model.stride=16", "model.offsets=0"], "train", n=1, size=64)


for t in (test_bn_train_mode_outputs_grads_running_stats, test_bn_eval_mode_running_stats,
          test_bn_stride16_h2p_single_sample):
    H.run(t)
H.end()
