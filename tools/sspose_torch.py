"""The sspose network (SPEC section 3) as a torch.nn.Module, for checkpoints exported with
`tools/convert.py export CK.h5 OUT.pth`.

    import torch, sspose_torch
    sd = torch.load("model.pth")
    net = sspose_torch.SsposeNet.from_state_dict(sd)       # config from the export
    x = sspose_torch.normalize(rgb_uint8_hwc, net.input_norm)[None]  # [1,3,H,W], H, W multiples of the stride
    outs = net(x)                 # one dict per stage: paf [N,38,h,w], heat [N,19,h,w], offset, p2h, h2p
    heat, paf = outs[-1]["heat"], outs[-1]["paf"]

Parameter names are SPEC's with '.' for '/' (conv1_1.weight, stage2.paf.conv3.bias, p2h.conv1.weight).
Only model.norm = none networks: a config with batch norm (model.norm = batch, params
<conv>/bn/{weight,bias,running_mean,running_var}) is refused with one line, because the layer's
exact definition (eps, placement) belongs to the C side and is not mirrored here yet."""
import math
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG_KEY = "sspose_config"  # where an export keeps the checkpoint's config text (state_dict._metadata[""])

# dataio/input_norm.h: input[c] = pixel[src[c]] * scale[c] + bias[c]
_IMNET_MEAN, _IMNET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
INPUT_NORMS = {
    "centered": ((0, 1, 2), [1 / 255.0] * 3, [-0.5] * 3),
    "imagenet": ((0, 1, 2), [1 / (255.0 * s) for s in _IMNET_STD], [-m / s for m, s in zip(_IMNET_MEAN, _IMNET_STD)]),
    "caffe": ((2, 1, 0), [1.0] * 3, [-m for m in _CAFFE_MEAN_BGR]),
    "cmu": ((2, 1, 0), [1 / 256.0] * 3, [-0.5] * 3),
}


class ConfigError(ValueError):
    pass


def parse_config(text):
    """'section.key = value' lines (a checkpoint's config attribute) to a dict of strings."""
    cfg = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line:
            k, v = line.split("=", 1)
            cfg[k.strip()] = v.strip()
    return cfg


def normalize(rgb, mode="centered"):
    """An RGB image (H x W x 3 uint8, numpy) as the network input [3,H,W] float32 (model.input_norm)."""
    if mode not in INPUT_NORMS:
        raise ConfigError(f"unknown model.input_norm '{mode}'")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConfigError(f"expected an H x W x 3 image, got shape {rgb.shape}")
    src, scale, bias = INPUT_NORMS[mode]
    px = rgb.astype(np.float32)
    planes = [px[:, :, src[c]] * np.float32(scale[c]) + np.float32(bias[c]) for c in range(3)]
    return torch.from_numpy(np.stack(planes, 0))


def _w(width, c):
    return max(1, int(math.floor(c * width + 0.5)))  # C's lround for positive values


class SsposeNet(nn.Module):
    """SPEC section 3, built from a config dict (parse_config)."""

    def __init__(self, cfg):
        super().__init__()
        norm = cfg.get("model.norm", "none")
        if norm != "none":
            raise ConfigError(f"model.norm = {norm} is not supported by tools/sspose_torch.py (only none)")
        width = float(cfg.get("model.width", 1.0))
        self.stages = int(cfg.get("model.stages", 6))
        self.stride = int(cfg.get("model.stride", 8))
        self.offsets = int(cfg.get("model.offsets", 1)) == 1
        self.input_norm = cfg.get("model.input_norm", "centered")
        if self.input_norm not in INPUT_NORMS:
            raise ConfigError(f"unknown model.input_norm '{self.input_norm}'")
        ss = cfg.get("model.ss", "p2h")
        self.use_p2h = ss in ("p2h", "both")
        self.use_h2p = ss in ("h2p", "both")
        self.linear = set()
        self.plan = []
        c = 3
        layers = [("conv1_1", 64), ("conv1_2", 64), "pool", ("conv2_1", 128), ("conv2_2", 128), "pool",
                  ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), "pool",
                  ("conv4_1", 512), ("conv4_2", 512)]
        layers += ["pool"] if self.stride == 16 else []
        layers += [("conv4_3_CPM", 256), ("conv4_4_CPM", 128)]
        for item in layers:
            if item == "pool":
                self.plan.append("pool")
            else:
                c = self._conv(item[0], c, _w(width, item[1]), 3)
                self.plan.append(item[0])
        feat = c
        heat_out = 19 + (36 if self.offsets else 0)
        self.branch = {}
        for s in range(1, self.stages + 1):
            cin = feat if s == 1 else 38 + heat_out + feat
            for b, out in (("paf", 38), ("heat", heat_out)):
                x, names = cin, []
                convs = [(3, 128)] * 3 + [(1, 512)] if s == 1 else [(7, 128)] * 5 + [(1, 128)]
                for i, (k, co) in enumerate(convs + [(1, None)], 1):
                    name = f"stage{s}/{b}/conv{i}"
                    x = self._conv(name, x, out if co is None else _w(width, co), k, linear=co is None)
                    names.append(name)
                self.branch[(s, b)] = names
        for sub, cin, cout, on in (("p2h", 38, 19, self.use_p2h), ("h2p", 19, 38, self.use_h2p)):
            if on:
                self._conv(f"{sub}/conv1", cin, _w(width, 128), 3)
                self._conv(f"{sub}/conv2", _w(width, 128), _w(width, 128), 3)
                self._conv(f"{sub}/conv3", _w(width, 128), cout, 1, linear=True)

    def _conv(self, name, cin, cout, k, linear=False):
        parent = self
        for part in name.split("/")[:-1]:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        parent.add_module(name.split("/")[-1], nn.Conv2d(cin, cout, k, padding=k // 2))
        if linear:
            self.linear.add(name)
        return cout

    def _run(self, names, x):
        for n in names:
            x = self.get_submodule(n.replace("/", "."))(x)
            if n not in self.linear:
                x = F.relu(x)
        return x

    def features(self, x, start=None, until=None):
        """The backbone on x, or the part after layer `start` (x is then that layer's activation)
        up to and including layer `until` (e.g. until="conv4_2": VGG-19's first ten convolutions)."""
        running = start is None
        for n in self.plan:
            if running:
                x = F.max_pool2d(x, 2, 2) if n == "pool" else self._run([n], x)
            running = running or n == start
            if n == until:
                return x
        return x

    def forward(self, x):
        return self.heads(self.features(x))

    def heads(self, feat):
        """The stages on the backbone's output."""
        outs, prev = [], None
        for s in range(1, self.stages + 1):
            inp = feat if s == 1 else torch.cat([prev[0], prev[1], feat], 1)
            p = self._run(self.branch[(s, "paf")], inp)
            ho = self._run(self.branch[(s, "heat")], inp)
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

    @classmethod
    def from_state_dict(cls, sd):
        """A network from an export's state dict (its config travels in sd._metadata[''])."""
        meta = getattr(sd, "_metadata", None) or {}
        text = meta.get("", {}).get(CONFIG_KEY)
        if text is None:
            raise ConfigError("the state dict carries no sspose config (not written by tools/convert.py export?)")
        net = cls(parse_config(text))
        net.load_state_dict(OrderedDict(sd), strict=True)
        net.config_text = text
        return net

    @classmethod
    def from_checkpoint(cls, path):
        """A network straight from an sspose checkpoint (h5py)."""
        import h5py
        with h5py.File(path, "r") as f:
            text = f.attrs["config"]
            net = cls(parse_config(text))
            with torch.no_grad():
                for name, t in net.named_parameters():
                    t.copy_(torch.from_numpy(f["params/" + name.replace(".", "/")][...]))
        net.config_text = text
        return net
