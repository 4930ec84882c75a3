"""The learning peer of bench/learn.sh: the demo recipe trained by PyTorch on the same
shards, scored by `sspose eval`, so that sspose's validation AP and steps/s have an
independent reference measured on the same machine in the same run.

    /usr/bin/python3 bench/learn_torch.py --sspose bin/sspose --config configs/demo.ini \
        --out DIR --budget-min 8 --ranks 2 [--set section.key=value ...]

The network is tools/sspose_torch.py (SPEC section 3, batch norm as model.norm = batch);
the loss is the test suite's PyTorch reference written from SPEC section 4
(tests/torch_ref/loss_ref.py), divided by the grid's cells under loss.normalize = cells;
neither comes from sspose's code. Data: every crop of data.train decoded once, mirrored
at load time with probability data.flip (channels and PAF x signs swapped per SPEC
section 1). Optimizer: torch.optim.AdamW or Adam as train.optimizer says (weight decay on
convolution weights only), linear warm-up from lr·warmup_start then cosine to lr·lr_final, global batch
train.batch × --ranks. Only the demo's feature set is covered (model.offsets = 0,
model.ss = off, train.optimizer = adam|adamw, train.schedule = cosine); anything else
stops with one line.

Like learn.sh's recipes it times 12 steps, turns the budget into a step count, and
validates 8 times: each point's weights go into a copy of an `sspose init` checkpoint
of the same config and `sspose eval` scores them on data.val_ann. Writes
DIR/metrics.jsonl rows shaped as the trainer's ({"step", "time": {"step"}, "val"})."""
import argparse
import glob
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, os.path.join(ROOT, "tests", "torch_ref"))
import convert  # noqa: E402  (tools/convert.py: init template and parameter fill)
import loss_ref  # noqa: E402
import sspose_torch as st  # noqa: E402


def die(msg):
    print(f"bench/learn_torch.py: {msg}", file=sys.stderr)
    sys.exit(1)


def load_shards(pattern):
    from PIL import Image
    paths = sorted(glob.glob(pattern))
    if not paths:
        die(f"data.train '{pattern}' matches no shard")
    X, T = [], {k: [] for k in ("heatmap", "paf", "attention", "mask")}
    for p in paths:
        with h5py.File(p, "r") as f:
            X += [np.asarray(Image.open(io.BytesIO(j.tobytes())).convert("RGB")) for j in f["jpeg"]]
            for k in T:
                T[k].append(f[k][...].astype(np.float32) * np.float32(f[k].attrs["scale"]))
    x = torch.from_numpy(np.stack(X)).permute(0, 3, 1, 2).float() / 255 - 0.5
    t = {k: torch.from_numpy(np.concatenate(v)) for k, v in T.items()}
    t["mask"] = t["mask"][:, None]
    return x, t


class Recipe:
    def __init__(self, text, ranks):
        """text: the resolved config ('section.key = value' lines, a checkpoint's config attribute)."""
        cfg = st.parse_config(text)
        g = lambda k, d=None: cfg.get(k, d)  # noqa: E731
        for key, want in (("model.offsets", "0"), ("model.ss", "off"), ("train.schedule", "cosine")):
            if g(key) != want:
                die(f"{key} = {g(key)}: the PyTorch peer covers the demo recipe only ({key} = {want})")
        if g("train.optimizer") not in ("adam", "adamw"):
            die(f"train.optimizer = {g('train.optimizer')}: the PyTorch peer covers adam and adamw only")
        self.cfg = cfg
        self.batch = int(g("train.batch")) * ranks
        self.lr, self.wd = float(g("train.lr")), float(g("train.weight_decay"))
        self.warmup, self.start, self.final = int(g("train.warmup")), float(g("train.warmup_start")), float(g("train.lr_final"))
        self.loss_cfg = loss_ref.parse_config_text(text)
        self.cells_norm = g("loss.normalize") == "cells"
        self.flip = float(g("data.flip", "0.5"))

    def lr_at(self, s, steps):  # the trainer's cosine schedule (docs/training.md)
        if s < self.warmup:
            return self.lr * (self.start + (1 - self.start) * s / self.warmup)
        t = (s - self.warmup) / max(1, steps - self.warmup)
        return self.lr * (self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t)))

    def build(self, seed):
        torch.manual_seed(seed)
        net = st.SsposeNet(self.cfg)
        for m in net.modules():  # SPEC init: He-normal (fan in) for ReLU convs, N(0, 0.01) for outputs
            if isinstance(m, torch.nn.Conv2d):
                if hasattr(m, "bn"):
                    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                else:
                    torch.nn.init.normal_(m.weight, 0, 0.01)
                torch.nn.init.zeros_(m.bias)
        decay = [p for n, p in net.named_parameters() if n.endswith("weight") and ".bn." not in n]
        rest = [p for n, p in net.named_parameters() if not (n.endswith("weight") and ".bn." not in n)]
        b1, b2 = float(self.cfg["train.beta1"]), float(self.cfg["train.beta2"])
        kind = torch.optim.AdamW if self.cfg["train.optimizer"] == "adamw" else torch.optim.Adam  # L2 decay
        opt = kind([{"params": decay, "weight_decay": self.wd}, {"params": rest, "weight_decay": 0}],
                   lr=self.lr, betas=(b1, b2), eps=float(self.cfg["train.eps"]))
        return net, opt

    def batch_at(self, x, t, idx, gen):
        xb, th, tp, ta, m = x[idx], t["heatmap"][idx], t["paf"][idx], t["attention"][idx], t["mask"][idx]
        f = torch.rand(len(idx), generator=gen) < self.flip
        if f.any():
            xb[f] = xb[f].flip(3)
            th[f] = th[f][:, loss_ref.HEAT_MIRROR].flip(3)
            m[f] = m[f].flip(3)
            ta[f] = ta[f][:, loss_ref.LIMB_MIR].flip(3)
            pf = tp[f][:, loss_ref.PAF_MIRROR].flip(3)
            pf[:, 0::2] *= -1
            tp[f] = pf
        return xb, th, tp, ta, m

    def loss(self, outs, th, tp, ta, m):
        total, _ = loss_ref.spec_loss(outs, {"heat": th, "paf": tp, "attention": ta, "mask": m}, self.loss_cfg)
        return total / (th.shape[2] * th.shape[3]) if self.cells_norm else total


def train(rec, x, t, steps, seed, on_point=None, points=()):
    net, opt = rec.build(seed)
    net.train()
    gen = torch.Generator().manual_seed(seed)
    perm, pos, n = torch.randperm(len(x), generator=gen), 0, len(x)
    clock, times = 0.0, []
    for s in range(steps):
        t0 = time.perf_counter()
        if pos + rec.batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos:pos + rec.batch]
        pos += rec.batch
        xb, th, tp, ta, m = rec.batch_at(x, t, idx, gen)
        for grp in opt.param_groups:
            grp["lr"] = rec.lr_at(s, steps)
        loss = rec.loss(net(xb), th, tp, ta, m)
        if not torch.isfinite(loss):
            die(f"step {s + 1}: loss is {float(loss)}")
        opt.zero_grad()
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        clock += dt
        times.append(dt)
        if on_point and s + 1 in points:
            on_point(net, s + 1, clock, float(loss))
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sspose", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-min", type=float, default=8)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of timing a budget")
    ap.add_argument("--ranks", type=int, default=2, help="the global batch is train.batch x ranks, as in learn.sh")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    tmpl = os.path.join(a.out, "init.h5")
    sets = [x for s in a.set for x in ("--set", s)]
    try:
        convert.template(a.sspose, a.config, a.set, tmpl + ".tmp")
    except convert.ConvertError as e:
        die(str(e))
    os.replace(tmpl + ".tmp", tmpl)
    with h5py.File(tmpl, "r") as f:
        rec = Recipe(f.attrs["config"], a.ranks)
    cfg = rec.cfg
    for k in ("data.val_ann", "data.val_images"):
        if not cfg.get(k):
            die(f"{k} is not set: the peer scores its weights with sspose eval on the validation set")
    x, t = load_shards(cfg["data.train"])
    seed = int(cfg.get("train.seed", "1"))
    steps = a.steps
    if steps <= 0:
        times = train(rec, x, t, 12, seed)
        rate = 1.0 / (sum(times[4:]) / len(times[4:]))
        steps = max(16, int(a.budget_min * 60 * rate) // 8 * 8)
    points = {steps * k // 8 for k in range(1, 9)}
    metrics = open(os.path.join(a.out, "metrics.jsonl.tmp"), "w")
    prev = [0, 0.0]

    def on_point(net, step, clock, loss):
        ck = os.path.join(a.out, f"ckpt-{step:09d}.h5")
        shutil.copy(tmpl, ck + ".tmp")
        params = {n.replace(".", "/"): v.detach().numpy() for n, v in net.state_dict().items()
                  if not n.endswith("num_batches_tracked")}
        try:
            convert.fill_checkpoint(ck + ".tmp", params, "the PyTorch peer")
        except convert.ConvertError as e:
            die(str(e))
        os.replace(ck + ".tmp", ck)
        res = os.path.join(a.out, "val-results.json")
        e = subprocess.run([a.sspose, "eval", "--gt", cfg["data.val_ann"], "--images", cfg["data.val_images"],
                            "--checkpoint", ck, "--out", res, "--json", *sets], capture_output=True, text=True)
        if e.returncode != 0:
            die(f"sspose eval failed at step {step}: {e.stderr.strip()}")
        v = json.loads(e.stdout)
        per_step = (clock - prev[1]) / (step - prev[0])
        prev[:] = [step, clock]
        row = {"step": step, "loss": loss, "lr": rec.lr_at(step - 1, steps), "time": {"step": per_step},
               "val": {"ap": v["AP"], "ap50": v["AP50"], "ap75": v["AP75"], "ar": v["AR"]}}
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
        print(f"step {step}/{steps}: loss {loss:.2f}  AP {v['AP']:.3f}  ({clock:.0f} s of training)", flush=True)

    train(rec, x, t, steps, seed, on_point, points)
    metrics.close()
    os.replace(os.path.join(a.out, "metrics.jsonl.tmp"), os.path.join(a.out, "metrics.jsonl"))


if __name__ == "__main__":
    main()
