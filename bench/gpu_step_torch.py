#!/usr/bin/env python3
"""PyTorch peer of bench/gpu_step.c: the SPEC section 3 network (OpenPose body
with offsets and the p2h/h2p subnets, as configured), forward + backward on
the GPU as PyTorch users train it: eager mode, channels_last,
cudnn.benchmark, and --precision bf16 (autocast to bfloat16, the default),
tf32 (fp32 tensors, TF32 tensor cores) or fp32 (TF32 off).

It serves timed rounds so that gpu_step can alternate them with its own:
on start it prints
  torch_flops_per_step <float>   (conv FLOPs counted by forward hooks; x3 for
                                  training, less the input layer's backward-data)
  torch_precision <bf16|tf32|fp32>
  torch_ready
then answers each stdin line "warmup N" with "ok" and "round N" with
  round_ms <float>               (N steps, timed with CUDA events)
until "quit" or end of input. Any failure prints one line on stderr and
exits 1.

  /usr/bin/python3 bench/gpu_step_torch.py --width 1 --stages 6 --stride 8 \
      --offsets 1 --ss p2h --batch 10 --input 368 --precision bf16
"""
import argparse
import math
import sys


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


def serve(torch, net, x, a):
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if a.precision == "bf16" else torch.autocast("cuda", enabled=False)

    def step():
        with ctx:
            outs = net(x)
        torch.autograd.backward(outs, [torch.full_like(o, 1e-3) for o in outs])
        net.zero_grad(set_to_none=False)

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    print("torch_ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if len(parts) != 2 or parts[0] not in ("warmup", "round") or not parts[1].isdigit():
            fail(f"bad command {line.strip()!r} (expected 'warmup N', 'round N' or 'quit')")
        n = int(parts[1])
        if parts[0] == "warmup":
            for _ in range(n):
                step()
            torch.cuda.synchronize()
            print("ok", flush=True)
            continue
        start.record()
        for _ in range(n):
            step()
        stop.record()
        stop.synchronize()
        print(f"round_ms {start.elapsed_time(stop):.6f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--stages", type=int, default=6)
    ap.add_argument("--stride", type=int, default=8, choices=(8, 16))
    ap.add_argument("--offsets", type=int, default=1, choices=(0, 1))
    ap.add_argument("--ss", default="p2h", choices=("off", "p2h", "h2p", "both"))
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--input", type=int, default=368)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "tf32", "fp32"))
    a = ap.parse_args()
    try:
        import torch
        import torch.nn as nn
    except ImportError as e:
        fail(f"PyTorch is not importable ({e})")
    if not torch.cuda.is_available():
        fail(f"PyTorch {torch.__version__} sees no CUDA device (a CPU-only torch, or no GPU)")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = a.precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = a.precision != "fp32"
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
    print(f"torch_flops_per_step {3 * flops[0] - first[0]:.6e}")
    print(f"torch_precision {a.precision}", flush=True)
    serve(torch, net, x, a)


if __name__ == "__main__":
    main()
