"""SPEC section 4 (the loss stack) in PyTorch, written from the SPEC text alone,
as the independent reference for sspose's loss (loss/loss.c).

Used two ways:
  * as a module: `spec_loss(outputs, targets, cfg)` on torch tensors, autograd gives
    the gradients (tests/test_loss_forward.py runs it on the whole network);
  * as a checker: `python3 loss_ref.py --check FILE.h5` reads a file written by
    tests/test_loss_torch (outputs, targets, the config text, our loss values and
    output gradients), recomputes everything here and exits 1 when they disagree.

Tensors are float32 as in sspose; sums are taken in float64 so that the
comparison measures the implementations, not float rounding.
"""
import argparse
import sys

import numpy as np
import torch

# SPEC section 1: limbs and mirrors, OpenPose-18 order
KP_MIRROR = {2: 5, 3: 6, 4: 7, 8: 11, 9: 12, 10: 13, 14: 15, 16: 17}
LIMB_MIRROR = {0: 3, 1: 4, 2: 5, 6: 10, 7: 11, 8: 12, 9: 13, 15: 16, 17: 18}
NUM_LIMBS = 19


def _sym(pairs, n):
    m = list(range(n))
    for a, b in pairs.items():
        m[a], m[b] = b, a
    return m


HEAT_MIRROR = _sym(KP_MIRROR, 19)  # background (18) maps to itself
LIMB_MIR = _sym(LIMB_MIRROR, NUM_LIMBS)
PAF_MIRROR = [2 * LIMB_MIR[c // 2] + (c % 2) for c in range(38)]

BETA_SCHEDULES = {
    "uniform": [1, 1, 1, 1, 1, 1],
    "linear": [0, .2, .4, .6, .8, 1],
    "quadratic_a": [0, .45, .69, .85, .95, 1],
    "quadratic_b": [0, .05, .15, .31, .65, 1],
}
OFFSET_GATE = 0.4


def beta_values(spec, stages):
    """Named schedule or explicit list, resampled linearly onto `stages` points
    (first and last stage keep the end values; one stage takes the last)."""
    v = BETA_SCHEDULES.get(spec)
    if v is None:
        v = [float(x) for x in spec.split(",")]
    if stages == 1 or len(v) == 1:
        return [float(v[-1])] * stages
    return [float(np.interp(s * (len(v) - 1) / (stages - 1), np.arange(len(v)), v)) for s in range(stages)]


def parse_config_text(text):
    """`section.key = value` lines -> dict of the loss/model keys the loss needs."""
    kv = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            kv[k.strip()] = v.strip()
    gamma = float(kv.get("loss.gamma", 9))
    delta = float(kv.get("loss.delta", -1))
    stages = int(kv.get("model.stages", 6))
    return {
        "stages": stages,
        "offsets": int(kv.get("model.offsets", 1)),
        "ss": kv.get("model.ss", "p2h"),
        "gamma": gamma,
        "delta": gamma + 1 if delta < 0 else delta,
        "alpha": float(kv.get("loss.alpha", 10)),
        "beta": beta_values(kv.get("loss.beta", "quadratic_b"), stages),
        "offset_weight": float(kv.get("loss.offset_weight", 1)),
        "pdd_threshold": float(kv.get("loss.pdd_threshold", 0.1)),
        "kl_detach": int(kv.get("loss.kl_detach", 0)),
        "kl_eps": float(kv.get("loss.kl_eps", 1e-3)),
    }


def term_names(cfg):
    names = ["heat", "paf"]
    if cfg["offsets"]:
        names.append("offset")
    if cfg["ss"] in ("p2h", "both"):
        names += ["ps", "kl"]
    if cfg["ss"] in ("h2p", "both"):
        names += ["hp", "consistency"]
    return names


def term_weight(cfg, name):
    return {"heat": cfg["gamma"], "paf": cfg["delta"], "offset": cfg["offset_weight"]}.get(name, 1.0)


def pdd_condition(target, mirror, vector, thr):
    """1 where the mirror channel's target is active and the channel's own is not."""
    if vector:
        n, c, h, w = target.shape
        act_limb = (target.view(n, c // 2, 2, h, w) != 0).any(dim=2)  # [n, limbs, h, w]
        active = act_limb.repeat_interleave(2, dim=1)
    else:
        active = target > thr
    return active[:, mirror] & ~active


def spec_loss(outputs, targets, cfg):
    """outputs: list over stages of dicts with 'paf', 'heat' and, when present, 'offset', 'p2h', 'h2p'.
    targets: dict heat, paf, offset, attention, mask ([N,1,h,w]). Returns (total, {stage: {term: value}})
    with total a 0-d float64 tensor (differentiable) and the per-term values (means over samples,
    unweighted) as 0-d float64 tensors."""
    TH, TP, M = targets["heat"], targets["paf"], targets["mask"]
    n = TH.shape[0]
    thr = torch.tensor(cfg["pdd_threshold"], dtype=torch.float32)
    heat_pdd = pdd_condition(TH, HEAT_MIRROR, False, thr)
    paf_pdd = pdd_condition(TP, PAF_MIRROR, True, thr)
    att = cfg["alpha"] * targets["attention"].double().repeat_interleave(2, dim=1) + 1.0
    gate = (TH[:, :18] > OFFSET_GATE).repeat_interleave(2, dim=1).double()
    Md = M.double()

    def per_sample(x):
        return x.reshape(n, -1).sum(dim=1)

    total = torch.zeros((), dtype=torch.float64)
    values = {}
    for s, out in enumerate(outputs):
        beta = torch.tensor(cfg["beta"][s], dtype=torch.float32).double()
        Wh = torch.where(heat_pdd, beta, torch.ones((), dtype=torch.float64))
        Wp = torch.where(paf_pdd, beta, torch.ones((), dtype=torch.float64))
        H, P = out["heat"].double(), out["paf"].double()
        terms = {}
        terms["heat"] = per_sample(Md * Wh * (H - TH.double()) ** 2)
        terms["paf"] = per_sample(Md * Wp * att * (P - TP.double()) ** 2)
        if cfg["offsets"]:
            terms["offset"] = per_sample(gate * (out["offset"].double() - targets["offset"].double()) ** 2)
        if cfg["ss"] in ("p2h", "both"):
            Hps = out["p2h"].double()
            terms["ps"] = per_sample(Md * Wh * (Hps - TH.double()) ** 2)
            eps = cfg["kl_eps"]
            Hk = H.detach() if cfg["kl_detach"] else H
            p = torch.relu(Hk) + eps
            q = torch.relu(Hps) + eps
            p = p / p.sum(dim=(2, 3), keepdim=True)
            q = q / q.sum(dim=(2, 3), keepdim=True)
            terms["kl"] = per_sample(p * (torch.log(p) - torch.log(q)))
        if cfg["ss"] in ("h2p", "both"):
            Php = out["h2p"].double()
            terms["hp"] = per_sample(Md * (Php - TP.double()) ** 2)
            terms["consistency"] = per_sample((Php - P) ** 2)
        values[s] = {}
        for name, v in terms.items():
            mean = v.mean()
            values[s][name] = mean
            total = total + term_weight(cfg, name) * mean
    return total, values


def _rel(a, b, floor):
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), floor))


def check_file(path, loss_rtol=1e-4, grad_rtol=1e-3):
    """Compares the C loss recorded in `path` (values and output gradients) with this reference."""
    import h5py

    with h5py.File(path, "r") as f:
        cfg_text = f.attrs["config"]
        cfg = parse_config_text(cfg_text.decode() if isinstance(cfg_text, bytes) else cfg_text)
        tg = {k: torch.from_numpy(f["targets"][k][()]) for k in ("heat", "paf", "offset", "attention", "mask")}
        outputs = []
        for s in range(cfg["stages"]):
            g = f[f"outputs/stage{s + 1}"]
            outputs.append({k: torch.from_numpy(g[k][()]).requires_grad_(True) for k in g.keys()})
        total, values = spec_loss(outputs, tg, cfg)
        total.backward()
        problems = []
        ref_total = float(total)
        ours_total = float(f["loss/total"][()])
        if abs(ours_total - ref_total) > loss_rtol * max(abs(ref_total), 1e-12):
            problems.append(f"total {ours_total!r} vs torch {ref_total!r}")
        for s in range(cfg["stages"]):
            g = f[f"loss/stage{s + 1}"]
            if sorted(g.keys()) != sorted(values[s].keys()):
                problems.append(f"stage {s + 1} terms {sorted(g.keys())} vs {sorted(values[s].keys())}")
                continue
            for name, ref in values[s].items():
                ours, ref = float(g[name][()]), float(ref)
                if abs(ours - ref) > loss_rtol * max(abs(ref), 1e-9):
                    problems.append(f"stage {s + 1} {name} {ours!r} vs torch {ref!r}")
            for k, t in outputs[s].items():
                ours = f[f"output_grads/stage{s + 1}/{k}"][()]
                ref = t.grad.numpy()
                r = _rel(ours, ref, 1e-12)
                if r > grad_rtol:
                    problems.append(f"stage {s + 1} d/d{k}: max error {r:.3g} of the largest gradient")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", required=True, help="HDF5 file written by tests/test_loss_torch")
    a = ap.parse_args()
    problems = check_file(a.check)
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
