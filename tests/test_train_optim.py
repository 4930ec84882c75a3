"""The trainer's optimizers against torch.optim: tests/tool_optim drives
trainer/optim.c (the CPU backend's kernels) over 8 steps of given gradients,
torch.optim.SGD / Adam / AdamW replays the same steps from the same initial
weights with one parameter group per tensor (its lr multiplier, its weight
decay: none on biases), and every parameter and every optimizer state tensor
must agree on its own within float32 rounding."""
import os
import subprocess
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H  # noqa: E402

BUILD = os.environ.get("SSPOSE_BUILD", "build")
STEPS = 8
# a small network keeps the tool fast: the update is elementwise, tensor shapes do not matter
NET = ["model.stages=1", "model.width=0.05", "model.ss=off", "model.offsets=0", "train.weight_decay=0.01"]


def tensors(f, grp):
    out = {}
    f[grp].visit(lambda n: out.__setitem__(n, f[grp + "/" + n][...]) if isinstance(f[grp + "/" + n], h5py.Dataset)
                 else None)
    return out


def run_tool(tag, sets):
    out = os.path.join(H.TMP, tag)
    os.makedirs(out, exist_ok=True)
    subprocess.run([os.path.join(BUILD, "tests", "tool_optim"), str(STEPS), out] + NET + sets, check=True,
                   capture_output=True)
    with h5py.File(os.path.join(out, "init.h5")) as f:
        init = tensors(f, "params")
    with h5py.File(os.path.join(out, "grads.h5")) as f:
        lrs = f["lr"][...]
        grads = [tensors(f, f"step{k}") for k in range(STEPS)]
        meta = {n: (f[f"step0/{n}"].attrs["lr_mult"], f[f"step0/{n}"].attrs["weight_decay"]) for n in init}
    with h5py.File(os.path.join(out, "final.h5")) as f:
        final = tensors(f, "params")
        state = {g: tensors(f, "optim/" + g) for g in f["optim"]}
        updates = int(f["optim"].attrs["updates"])
        kind = f["optim"].attrs["optimizer"]
    return init, grads, lrs, meta, final, state, updates, kind


def replay(init, grads, lrs, meta, make):
    """torch.optim over the same gradients; one group per tensor."""
    params = {n: torch.nn.Parameter(torch.from_numpy(v.copy())) for n, v in init.items()}
    groups = [{"params": [params[n]], "name": n, "mult": meta[n][0], "weight_decay": meta[n][1]} for n in init]
    opt = make(groups)
    for k, lr in enumerate(lrs):
        for g in opt.param_groups:
            g["lr"] = float(lr) * g["mult"]
        for n, p in params.items():
            p.grad = torch.from_numpy(grads[k][n].copy())
        opt.step()
    return params, opt


def close(tag, name, a, b, rtol):
    """One tensor: |a - b| <= rtol * max|b| elementwise, plus a float32 floor."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    bound = rtol * max(np.abs(b).max(), 1e-30) + 1e-30
    err = np.abs(a - b).max()
    assert err <= bound, f"{tag} {name}: max |sspose - torch| {err:.3g} > {bound:.3g} (max |torch| {np.abs(b).max():.3g})"
    return err / max(np.abs(b).max(), 1e-30)


def compare(tag, sets, make, state_map, rtol=2e-5):
    init, grads, lrs, meta, final, state, updates, kind = run_tool(tag, sets)
    assert updates == STEPS, f"{tag}: updates {updates}"
    params, opt = replay(init, grads, lrs, meta, make)
    worst = 0
    moved = 0
    for n, p in params.items():
        worst = max(worst, close(tag, n, final[n], p.detach().numpy(), rtol))
        moved += not np.array_equal(final[n], init[n])
        st = opt.state[p]
        for ours, theirs in state_map.items():
            ref = st[theirs].numpy()
            if ours == "momentum" and "lr_scaled" in tag:
                ref = ref * float(lrs[0]) * meta[n][0]  # Caffe keeps lr inside the buffer
            worst = max(worst, close(tag, f"{ours}/{n}", state[ours][n], ref, rtol))
    assert moved == len(params), f"{tag}: {len(params) - moved} tensors never moved"
    assert set(state) == set(state_map), f"{tag}: /optim holds {sorted(state)}"
    print(f"# {tag}: {len(params)} tensors, worst relative difference {worst:.2g}")
    return kind


def test_sgd_momentum_matches_torch():
    kind = compare("sgd_lr_scaled", ["train.optimizer=sgd", "train.lr=0.01", "train.lr_step=0", "train.warmup=0"],
                   lambda g: torch.optim.SGD(g, lr=0.01, momentum=0.9), {"momentum": "momentum_buffer"})
    assert kind == "sgd", kind


def test_sgd_nesterov_matches_torch():
    compare("nesterov_lr_scaled", ["train.optimizer=sgd", "train.nesterov=1", "train.lr=0.01", "train.lr_step=0",
                                   "train.warmup=0", "train.momentum=0.8"],
            lambda g: torch.optim.SGD(g, lr=0.01, momentum=0.8, nesterov=True), {"momentum": "momentum_buffer"})


ADAM_SETS = ["train.lr=0.003", "train.beta1=0.85", "train.beta2=0.99", "train.eps=1e-7", "train.schedule=cosine",
             "train.warmup=3", "train.warmup_start=0.04", "train.lr_final=0.001", f"train.steps={STEPS}"]


def test_adam_matches_torch():
    kind = compare("adam", ["train.optimizer=adam"] + ADAM_SETS,
                   lambda g: torch.optim.Adam(g, lr=0.003, betas=(0.85, 0.99), eps=1e-7),
                   {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})
    assert kind == "adam", kind


def test_adamw_matches_torch():
    kind = compare("adamw", ["train.optimizer=adamw"] + ADAM_SETS,
                   lambda g: torch.optim.AdamW(g, lr=0.003, betas=(0.85, 0.99), eps=1e-7),
                   {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})
    assert kind == "adamw", kind


def test_adam_and_adamw_decay_differ():
    """L2 (adam) and decoupled (adamw) weight decay are different rules: with the same
    keys the weights must differ, biases (no decay) must not."""
    _, _, _, meta, a, _, _, _ = run_tool("decay_adam", ["train.optimizer=adam"] + ADAM_SETS)
    _, _, _, _, w, _, _, _ = run_tool("decay_adamw", ["train.optimizer=adamw"] + ADAM_SETS)
    for n in a:
        same = np.array_equal(a[n], w[n])
        assert same == (meta[n][1] == 0), f"{n}: weight decay {meta[n][1]}, identical {same}"


if __name__ == "__main__":
    for t in (test_sgd_momentum_matches_torch, test_sgd_nesterov_matches_torch, test_adam_matches_torch,
              test_adamw_matches_torch, test_adam_and_adamw_decay_differ):
        H.run(t)
    H.end()
