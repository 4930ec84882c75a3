"""The SPEC section 3 network written independently in PyTorch.

Used by the cross-check tests and the CPU benchmark as the peer implementation.
Parameter names follow SPEC ('/' in HDF5 <-> '.' in PyTorch)."""
import math

import h5py
import torch
import torch.nn as nn
import torch.nn.functional as F


def read_config(text):
    """Parses 'section.key = value' lines into a dict of strings."""
    cfg = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            cfg[k.strip()] = v.strip()
    return cfg


class Net(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        width = float(cfg.get("model.width", 1.0))
        self.stages = int(cfg.get("model.stages", 6))
        self.stride = int(cfg.get("model.stride", 8))
        self.offsets = int(cfg.get("model.offsets", 1)) == 1
        ss = cfg.get("model.ss", "p2h")
        self.use_p2h = ss in ("p2h", "both")
        self.use_h2p = ss in ("h2p", "both")
        w = lambda c: max(1, int(math.floor(c * width + 0.5)))  # noqa: E731  (C lround: half away from zero)
        self.relu = {}
        # model.norm = batch: BatchNorm2d after every conv followed by ReLU, a child "bn" of the
        # conv so that its tensors are <conv>/bn/{weight,bias,running_mean,running_var}
        self.bn = cfg.get("model.norm", "none") == "batch"
        bn_eps = float(cfg.get("model.bn_eps", 1e-5))
        bn_momentum = float(cfg.get("model.bn_momentum", 0.1))

        def conv(name, cin, cout, k, relu=True):
            # nested modules so that named_parameters() gives the SPEC names with '.'
            parent = self
            for part in name.split("/")[:-1]:
                if not hasattr(parent, part):
                    parent.add_module(part, nn.Module())
                parent = getattr(parent, part)
            layer = nn.Conv2d(cin, cout, k, padding=k // 2)
            if self.bn and relu:
                layer.add_module("bn", nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum))
            parent.add_module(name.split("/")[-1], layer)
            self.relu[name] = relu
            return cout

        self.backbone = []
        c = 3
        plan = [("conv1_1", 64), ("conv1_2", 64), "pool", ("conv2_1", 128), ("conv2_2", 128), "pool",
                ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
                ("conv4_1", 512), ("conv4_2", 512)] + (["pool"] if self.stride == 16 else []) + \
               [("conv4_3_CPM", 256), ("conv4_4_CPM", 128)]
        for p in plan:
            if p == "pool":
                self.backbone.append("pool")
            else:
                c = conv(p[0], c, w(p[1]), 3)
                self.backbone.append(p[0])
        feat = c
        heat_out = 19 + (36 if self.offsets else 0)
        self.branches = []
        for s in range(1, self.stages + 1):
            cin = feat if s == 1 else 38 + heat_out + feat
            for b, cout in (("paf", 38), ("heat", heat_out)):
                names, x = [], cin
                n = 5 if s == 1 else 7
                for i in range(1, n + 1):
                    if s == 1:
                        k, co = (3, w(128)) if i <= 3 else (1, w(512))
                    else:
                        k, co = (7, w(128)) if i <= 5 else (1, w(128))
                    last = i == n
                    name = f"stage{s}/{b}/conv{i}"
                    x = conv(name, x, cout if last else co, k, relu=not last)
                    names.append(name)
                self.branches.append(names)
        if self.use_p2h:
            conv("p2h/conv1", 38, w(128), 3)
            conv("p2h/conv2", w(128), w(128), 3)
            conv("p2h/conv3", w(128), 19, 1, relu=False)
        if self.use_h2p:
            conv("h2p/conv1", 19, w(128), 3)
            conv("h2p/conv2", w(128), w(128), 3)
            conv("h2p/conv3", w(128), 38, 1, relu=False)

    def _run(self, names, x):
        for n in names:
            layer = self.get_submodule(n.replace("/", "."))
            x = layer(x)
            if hasattr(layer, "bn"):
                x = layer.bn(x)
            if self.relu[n]:
                x = F.relu(x)
        return x

    def forward(self, x):
        """Returns a list over stages of dicts with paf, heat, offset, p2h, h2p (present ones)."""
        for n in self.backbone:
            x = F.max_pool2d(x, 2, 2) if n == "pool" else self._run([n], x)
        feat = x
        outs, prev = [], None
        for s in range(self.stages):
            inp = feat if s == 0 else torch.cat([prev[0], prev[1], feat], 1)
            p = self._run(self.branches[2 * s], inp)
            ho = self._run(self.branches[2 * s + 1], inp)
            o = {"paf": p, "heat": ho[:, :19]}
            if self.offsets:
                o["offset"] = ho[:, 19:]
            if self.use_p2h:
                o["p2h"] = self._run(["p2h/conv1", "p2h/conv2", "p2h/conv3"], p)
            if self.use_h2p:
                o["h2p"] = self._run(["h2p/conv1", "h2p/conv2", "h2p/conv3"], o["heat"])
            outs.append(o)
            prev = (p, ho)
        return outs

    def spec_names(self):
        """(name, tensor) for every parameter under its SPEC name."""
        for k, t in self.named_parameters():
            yield k.replace(".", "/"), t

    def spec_buffers(self):
        """(name, tensor) for batch norm's running statistics under their checkpoint names."""
        for k, t in self.named_buffers():
            if k.endswith("running_mean") or k.endswith("running_var"):
                yield k.replace(".", "/"), t


def load_checkpoint(path):
    """Builds the network from a checkpoint's config attribute and loads /params (and running statistics)."""
    with h5py.File(path, "r") as f:
        cfg = read_config(f.attrs["config"])
        net = Net(cfg)
        with torch.no_grad():
            for name, t in list(net.spec_names()) + list(net.spec_buffers()):
                t.copy_(torch.from_numpy(f["params/" + name][...]))
    return net, cfg
