#!/usr/bin/env python3
"""PyTorch peer of bench/gpu_step.c: the SPEC section 3 network (OpenPose body
with offsets and the p2h/h2p subnets, as configured) timed for forward +
backward on the GPU, channels-last, cudnn.benchmark on.

Prints two machine-read lines for gpu_step.c:
  torch_samples_per_s <float>
  torch_flops_per_step <float>   (conv FLOPs counted by forward hooks; x3 for
                                  training, less the input layer's backward-data)
Any failure prints one line on stderr and exits 1.

  /usr/bin/python3 bench/gpu_step_torch.py --width 1 --stages 6 --stride 8 \
      --offsets 1 --ss p2h --batch 10 --input 368
"""
import argparse
import math
import sys
import time


def fail(msg):
    print(f"gpu_step_torch: error: {msg}", file=sys.stderr)
    sys.exit(1)


def w_of(c, width):
    # SPEC: w(c) = max(1, round(c*width)); C's round() (half away from zero), not Python's banker's rounding
    return max(1, int(math.floor(c * width + 0.5)))


def build(nn, torch, a):
    W = lambda c: w_of(c, a.width)

    def conv(cin, cout, k, relu=True):
        layers = [nn.Conv2d(cin, cout, k, padding=k // 2)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        return layers

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            b = []
            b += conv(3, W(64), 3) + conv(W(64), W(64), 3) + [nn.MaxPool2d(2, 2)]
            b += conv(W(64), W(128), 3) + conv(W(128), W(128), 3) + [nn.MaxPool2d(2, 2)]
            b += conv(W(128), W(256), 3) + sum((conv(W(256), W(256), 3) for _ in range(3)), []) + [nn.MaxPool2d(2, 2)]
            b += conv(W(256), W(512), 3) + conv(W(512), W(512), 3)
            if a.stride == 16:
                b += [nn.MaxPool2d(2, 2)]
            b += conv(W(512), W(256), 3) + conv(W(256), W(128), 3)
            self.backbone = nn.Sequential(*b)
            self.first = self.backbone[0]
            heat_out = 19 + (36 if a.offsets else 0)
            f = W(128)
            self.stages = nn.ModuleList()
            for t in range(a.stages):
                branches = nn.ModuleDict()
                for name, out in (("paf", 38), ("heat", heat_out)):
                    if t == 0:
                        L = conv(f, W(128), 3) + conv(W(128), W(128), 3) + conv(W(128), W(128), 3)
                        L += conv(W(128), W(512), 1) + conv(W(512), out, 1, relu=False)
                    else:
                        cin = 38 + 19 + (36 if a.offsets else 0) + f
                        L = conv(cin, W(128), 7)
                        for _ in range(4):
                            L += conv(W(128), W(128), 7)
                        L += conv(W(128), W(128), 1) + conv(W(128), out, 1, relu=False)
                    branches[name] = nn.Sequential(*L)
                self.stages.append(branches)
            self.p2h = self.h2p = None
            if a.ss in ("p2h", "both"):
                self.p2h = nn.Sequential(*(conv(38, W(128), 3) + conv(W(128), W(128), 3) + conv(W(128), 19, 1, False)))
            if a.ss in ("h2p", "both"):
                self.h2p = nn.Sequential(*(conv(19, W(128), 3) + conv(W(128), W(128), 3) + conv(W(128), 38, 1, False)))

        def forward(self, x):
            feat = self.backbone(x)
            outs, prev = [], None
            for st in self.stages:
                inp = feat if prev is None else torch.cat(prev + [feat], 1)
                p = st["paf"](inp)
                ho = st["heat"](inp)
                h = ho[:, :19]
                prev = [p, h] + ([ho[:, 19:]] if a.offsets else [])
                outs += [p, ho]
                if self.p2h is not None:
                    outs.append(self.p2h(p))
                if self.h2p is not None:
                    outs.append(self.h2p(h))
            return outs

    return Net()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--stages", type=int, default=6)
    ap.add_argument("--stride", type=int, default=8, choices=(8, 16))
    ap.add_argument("--offsets", type=int, default=1, choices=(0, 1))
    ap.add_argument("--ss", default="p2h", choices=("off", "p2h", "h2p", "both"))
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--input", type=int, default=368)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--tf32", type=int, default=0, choices=(0, 1))
    ap.add_argument("--deterministic", type=int, default=0, choices=(0, 1))
    a = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
    except ImportError as e:
        fail(f"PyTorch is not importable ({e})")
    if not torch.cuda.is_available():
        fail(f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only torch, or no GPU)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.deterministic = bool(a.deterministic)
    torch.backends.cudnn.allow_tf32 = bool(a.tf32)
    torch.backends.cuda.matmul.allow_tf32 = bool(a.tf32)
    dev = torch.device("cuda", 0)
    net = build(nn, torch, a).to(dev).to(memory_format=torch.channels_last)
    x = (torch.rand(a.batch, 3, a.input, a.input, device=dev) - 0.5).contiguous(memory_format=torch.channels_last)

    flops = [0.0]
    first = [0.0]

    def hook(mod, inp, out):
        f = 2.0 * out.numel() * mod.weight[0].numel()  # N*H*W*cout * cin*k*k, x2
        flops[0] += f
        if mod is net.first:
            first[0] = f

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    train_flops = 3 * flops[0] - first[0]

    def step():
        outs = net(x)
        torch.autograd.backward(outs, [torch.full_like(o, 1e-3) for o in outs])
        net.zero_grad(set_to_none=False)

    for _ in range(a.warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.iters
    print(f"torch_samples_per_s {a.batch / dt:.6f}")
    print(f"torch_flops_per_step {train_flops:.6e}")


if __name__ == "__main__":
    main()
