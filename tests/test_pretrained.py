"""Pretrained weights in and out (issue 15), without downloads: randomly initialised files in
each outside format are built here (torch state dicts with the real key names and shapes,
h5py files in Keras' layout, both weight spellings), imported, and checked tensor by tensor
and by running the imported network (`sspose forward` on crops of the shared COCO sample)
against the PyTorch module the weights came from; export -> import is bit-identical; bad files
get one error line."""
import io
import os
import subprocess
import sys
from collections import OrderedDict

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import pyharness as H  # noqa: E402
import sspose_torch  # noqa: E402

CONVERT = [sys.executable, "tools/convert.py"]
TMP = H.TMP
torch.set_num_threads(2)
torch.manual_seed(15)
RNG = np.random.default_rng(15)

# torchvision's VGG-19 'features': conv widths, 'M' = max pool; conv i sits at features.{index}
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
FIRST_TEN = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv3_4", "conv4_1",
             "conv4_2"]
KERAS_TEN = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1", "block3_conv2",
             "block3_conv3", "block3_conv4", "block4_conv1", "block4_conv2"]


def sh(cmd, ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if ok and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {r.stderr.strip()[-400:]}")
    return r


class _Result:
    def __init__(self, rc, out, err):
        self.returncode, self.stdout, self.stderr = rc, out, err


def convert_here(args):
    """tools/convert.py's main in this process (no second torch import), as a subprocess result."""
    import contextlib
    import convert
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = convert.main(args)
    return _Result(rc, out.getvalue(), err.getvalue())


def one_error_line(r, prefix, *words):
    assert r.returncode != 0, f"exit 0, stdout {r.stdout[-200:]}"
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), f"stderr: {r.stderr!r}"
    for w in words:
        assert w in lines[0], f"'{w}' not in: {lines[0]}"


def p(name):
    return os.path.join(TMP, name)


_SHARDS = {}


def shard(size):
    """Augmented crops of the shared COCO sample at size x size (real photographs)."""
    if size not in _SHARDS:
        prefix = p(f"coco{size}")
        sh([H.SSPOSE, "data", "--config", "configs/baseline.ini", "--set", f"model.input={size}", "--ann",
            os.path.join(H.SHARED, "test_coco.json"), "--images", H.SHARED, "--out", prefix, "--threads", "1",
            "--progress-every", "1000"])
        _SHARDS[size] = prefix + "-00000.h5"
    return _SHARDS[size]


def crops_rgb(path, count):
    """The shard's crops decoded independently (PIL), RGB uint8."""
    with h5py.File(path, "r") as f:
        return [np.array(Image.open(io.BytesIO(f["jpeg"][i].tobytes())).convert("RGB")) for i in range(count)]


def forward(ck, shard_path, count, name):
    out = p(name)
    sh([H.SSPOSE, "forward", "--checkpoint", ck, "--shard", shard_path, "--index", "0", "--count", str(count),
        "--out", out])
    with h5py.File(out, "r") as f:
        outs = {k: f["outputs/" + k][...] for k in _walk(f["outputs"])}
        return f["input"][...], outs


def _walk(g):
    names = []
    g.visit(lambda n: names.append(n) if isinstance(g[n], h5py.Dataset) else None)
    return names


def close(got, ref, what, tol=1e-5):
    """Each tensor on its own: max |got - ref| <= tol * max(1, max |ref|)."""
    ref = np.asarray(ref, dtype=np.float64)
    err = np.abs(np.asarray(got, dtype=np.float64) - ref).max()
    bound = tol * max(1.0, np.abs(ref).max())
    assert err <= bound, f"{what}: max error {err:.3g} > {bound:.3g}"


def check_input(inp, rgbs, fn, what):
    """sspose's network input against the documented formula applied here to the decoded crops."""
    for i, rgb in enumerate(rgbs):
        close(inp[i], fn(rgb.astype(np.float64)), f"{what} input {i}", 1e-6)


# ------------------------------------------------------------------ VGG-19, torchvision

def vgg19_state_dict():
    sd, c, i = OrderedDict(), 3, 0
    for v in VGG19_CFG:
        if v == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"] = torch.randn(v, c, 3, 3) * (2.0 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(v) * 0.1
        c, i = v, i + 2
    # the classifier's last layer at its real shape (the two 100M-value layers before it are left out)
    sd["classifier.6.weight"] = torch.randn(1000, 4096) * 0.01
    sd["classifier.6.bias"] = torch.zeros(1000)
    return sd


def vgg19_features(sd):
    """torchvision's features layout, loaded strictly from the state dict."""
    layers, c = [], 3
    for v in VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    seq = nn.Sequential(*layers)
    seq.load_state_dict(OrderedDict((k[len("features."):], t) for k, t in sd.items() if k.startswith("features.")))
    return seq


def imagenet(rgb):
    mean, sd = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((rgb / 255.0 - mean) / sd).transpose(2, 0, 1)


def test_vgg19_torchvision_import():
    sd = vgg19_state_dict()
    torch.save(sd, p("vgg19.pth"))
    sh(CONVERT + ["vgg19", p("vgg19.pth"), p("vgg19.h5")])
    with h5py.File(p("vgg19.h5"), "r") as f:
        assert f.attrs["format"] == "sspose-backbone" and f.attrs["version"] == 1 and f.attrs["input_norm"] == "imagenet"
        idx = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21]
        for name, i in zip(FIRST_TEN, idx):
            assert np.array_equal(f[f"params/{name}/weight"][...], sd[f"features.{i}.weight"].numpy()), name
            assert np.array_equal(f[f"params/{name}/bias"][...], sd[f"features.{i}.bias"].numpy()), name
    ck, plain = p("vgg_ck.h5"), p("plain_ck.h5")
    sh([H.SSPOSE, "init", "--config", "configs/baseline.ini", "--set", "model.input_norm=imagenet", "--set",
        "model.stages=2", "--backbone", p("vgg19.h5"), "--out", ck])
    sh([H.SSPOSE, "init", "--config", "configs/baseline.ini", "--set", "model.input_norm=imagenet", "--set",
        "model.stages=2", "--out", plain])
    with h5py.File(ck, "r") as f, h5py.File(plain, "r") as g:
        assert "model.input_norm = imagenet" in f.attrs["config"]
        for n in _walk(f["params"]):
            layer = n.split("/")[0]
            if layer in FIRST_TEN:
                i = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21][FIRST_TEN.index(layer)]
                assert np.array_equal(f["params/" + n][...], sd[f"features.{i}.{n.split('/')[1]}"].numpy()), n
            else:  # SPEC init, the same draw as a plain init
                assert np.array_equal(f["params/" + n][...], g["params/" + n][...]), n
    # the imported network against torchvision's layout of the same weights, on real crops
    count = 2
    inp, outs = forward(ck, shard(128), count, "vgg_fwd.h5")
    check_input(inp, crops_rgb(shard(128), count), imagenet, "imagenet")
    net = sspose_torch.SsposeNet.from_checkpoint(ck).eval()
    feats = vgg19_features(sd)[:23].eval()  # through the ReLU of conv4_2 (features.22)
    with torch.no_grad():
        x = torch.from_numpy(inp)
        ref = net.heads(net.features(feats(x), start="conv4_2"))
    for s, o in enumerate(ref, 1):
        for k in ("paf", "heat"):
            close(outs[f"stage{s}/{k}"], o[k].numpy(), f"stage{s}/{k}")


# ------------------------------------------------------------------ VGG-19, Keras

def keras_file(path, kernels, spelling, wrapper=False, weight_names=True, rename=None, mutate=None):
    """Keras' save_weights layout: layer groups named by the root attribute layer_names, each with
    weight_names listing its datasets relative to the group."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if wrapper else f
        layers = ["input_1"] + [n for b in range(1, 5) for n in KERAS_TEN if n.startswith(f"block{b}_")]
        layers.insert(3, "block1_pool")
        names = []
        for lname in layers:
            g = root.create_group(rename.get(lname, lname) if rename else lname)
            names.append(g.name.split("/")[-1].encode())
            if lname not in kernels:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            k, b = kernels[lname]
            if mutate:
                k, b = mutate(lname, k, b)
            if spelling == "new":
                wn = [f"{lname}/kernel:0", f"{lname}/bias:0"]
            else:
                wn = [f"{lname}_W_1:0", f"{lname}_b_1:0"]
            g.create_dataset(wn[0], data=k)
            g.create_dataset(wn[1], data=b)
            if weight_names:
                g.attrs["weight_names"] = np.array([n.encode() for n in wn])
        root.attrs["layer_names"] = np.array(names)
        f.attrs["keras_version"] = b"2.2.4"
        f.attrs["backend"] = b"tensorflow"


def keras_kernels():
    out, c = {}, 3
    for lname, o in zip(KERAS_TEN, [64, 64, 128, 128, 256, 256, 256, 256, 512, 512]):
        out[lname] = (RNG.normal(0, (2.0 / (9 * c)) ** 0.5, (3, 3, c, o)).astype(np.float32),
                      RNG.normal(0, 0.1, (o,)).astype(np.float32))
        c = o
    return out


def hwio_conv_relu(x, k, b):
    """TF/Keras convolution by its definition: y[o,i,j] = b[o] + sum_{dy,dx,c} x[c,i+dy-1,j+dx-1] k[dy,dx,c,o]."""
    cols = F.unfold(x, 3, padding=1)  # [N, C*3*3, L], rows ordered (c, dy, dx)
    n, _, L = cols.shape
    cols = cols.view(n, x.shape[1], 3, 3, L)
    y = torch.einsum("ncyxl,yxco->nol", cols, torch.from_numpy(k)) + torch.from_numpy(b)[None, :, None]
    return F.relu(y.view(n, -1, x.shape[2], x.shape[3]))


def keras_features(kernels, x):
    for lname in KERAS_TEN:
        x = hwio_conv_relu(x, *kernels[lname])
        if lname in ("block1_conv2", "block2_conv2", "block3_conv4"):
            x = F.max_pool2d(x, 2, 2)
    return x


def caffe(rgb):
    return (rgb[:, :, ::-1] - np.array([103.939, 116.779, 123.68])).transpose(2, 0, 1)


def test_vgg19_keras_import_both_spellings():
    kernels = keras_kernels()
    cks = []
    for tag, kw in (("new", {"spelling": "new"}), ("old", {"spelling": "old"}),
                    ("wrapped", {"spelling": "new", "wrapper": True}),
                    ("noattr", {"spelling": "old", "weight_names": False})):
        kf, ck = p(f"keras_{tag}.h5"), p(f"keras_{tag}_ck.h5")
        keras_file(kf, kernels, **kw)
        sh([H.SSPOSE, "init", "--config", "configs/baseline.ini", "--set", "model.input_norm=caffe", "--set",
            "model.stages=2", "--backbone", kf, "--out", ck])
        with h5py.File(ck, "r") as f:
            for ours, lname in zip(FIRST_TEN, KERAS_TEN):
                k, b = kernels[lname]
                assert np.array_equal(f[f"params/{ours}/weight"][...], k.transpose(3, 2, 0, 1)), (tag, ours)
                assert np.array_equal(f[f"params/{ours}/bias"][...], b), (tag, ours)
        cks.append(ck)
    count = 2
    inp, outs = forward(cks[0], shard(128), count, "keras_fwd.h5")
    check_input(inp, crops_rgb(shard(128), count), caffe, "caffe")
    net = sspose_torch.SsposeNet.from_checkpoint(cks[0]).eval()
    with torch.no_grad():
        x = torch.from_numpy(inp)
        ref = net.heads(net.features(keras_features(kernels, x), start="conv4_2"))
    for s, o in enumerate(ref, 1):
        for k in ("paf", "heat"):
            close(outs[f"stage{s}/{k}"], o[k].numpy(), f"stage{s}/{k}")


def test_bad_backbones_one_line():
    kernels = keras_kernels()
    init = [H.SSPOSE, "init", "--config", "configs/baseline.ini", "--set", "model.input_norm=caffe", "--set",
            "model.stages=1", "--out", p("bad_ck.h5"), "--backbone"]
    cases = [
        ("wrong_name", {"rename": {"block3_conv2": "block3_convX"}}, ["block3_conv2", "missing"]),
        ("wrong_shape", {"mutate": lambda n, k, b: (k[:, :, :, :32], b[:32]) if n == "block2_conv1" else (k, b)},
         ["block2_conv1", "shape"]),
        ("float64", {"mutate": lambda n, k, b: (k.astype(np.float64), b) if n == "block4_conv2" else (k, b)},
         ["block4_conv2", "float32"]),
        ("int", {"mutate": lambda n, k, b: (k, b.astype(np.int32)) if n == "block1_conv1" else (k, b)},
         ["block1_conv1", "integer"]),
    ]
    for tag, kw, words in cases:
        kf = p(f"bad_{tag}.h5")
        keras_file(kf, kernels, "new", **kw)
        one_error_line(sh(init + [kf], ok=False), "sspose: error:", *words)
        assert not os.path.exists(p("bad_ck.h5")), tag
    good = p("good_keras.h5")
    keras_file(good, kernels, "new")
    one_error_line(sh([H.SSPOSE, "init", "--config", "configs/baseline.ini", "--backbone", good, "--out",
                       p("bad_ck.h5")], ok=False), "sspose: error:", "model.input_norm = caffe")
    one_error_line(sh(init + [good, "--set", "model.width=0.5"], ok=False), "sspose: error:", "model.width = 1")
    with open(p("not.h5"), "wb") as f:
        f.write(b"\x89HDF garbage")
    one_error_line(sh(init + [p("not.h5")], ok=False), "sspose: error:", "not an HDF5 file")
    with h5py.File(p("other.h5"), "w") as f:
        f.create_dataset("x", data=np.zeros(3, np.float32))
    one_error_line(sh(init + [p("other.h5")], ok=False), "sspose: error:", "layer_names")
    one_error_line(sh(init + [p("missing.h5")], ok=False), "sspose: error:", "does not exist")


def test_convert_bad_pth_one_line():
    sd = vgg19_state_dict()
    bad = [("missing", lambda d: d.pop("features.14.weight"), "features.14.weight"),
           ("shape", lambda d: d.__setitem__("features.5.weight", torch.zeros(128, 32, 3, 3)), "shape"),
           ("dtype", lambda d: d.__setitem__("features.0.bias", d["features.0.bias"].double()), "float64"),
           ("extra", lambda d: d.__setitem__("backbone.conv.weight", torch.zeros(1)), "unexpected")]
    for tag, edit, word in bad:
        d = OrderedDict(sd)
        edit(d)
        torch.save(d, p(f"bad_{tag}.pth"))
        one_error_line(convert_here(["vgg19", p(f"bad_{tag}.pth"), p("bad.h5")]), "convert.py: error:", word)
        assert not os.path.exists(p("bad.h5"))
    with open(p("junk.pth"), "wb") as f:
        f.write(b"not a pickle")
    one_error_line(sh(CONVERT + ["vgg19", p("junk.pth"), p("bad.h5")], ok=False), "convert.py: error:", "torch.load")
    cmu, _ = cmu_state_dict(flat=True)
    for tag, edit, word in [("name", lambda d: d.__setitem__("Mconv3_stage4_L9.weight", d.pop("Mconv3_stage4_L2.weight")),
                             "Mconv3_stage4_L2.weight"),
                            ("shape", lambda d: d.__setitem__("conv5_5_CPM_L1.weight", torch.zeros(19, 512, 1, 1)),
                             "shape"),
                            ("dtype", lambda d: d.__setitem__("conv4_4_CPM.bias", d["conv4_4_CPM.bias"].half()),
                             "float16")]:
        d = OrderedDict(cmu)
        edit(d)
        torch.save(d, p(f"badcmu_{tag}.pth"))
        one_error_line(convert_here(["openpose", p(f"badcmu_{tag}.pth"), p("bad.h5")]), "convert.py: error:", word)
        assert not os.path.exists(p("bad.h5"))


# ------------------------------------------------------------------ OpenPose (CMU) body model

class CMUBody(nn.Module):
    """The CMU COCO body model as the PyTorch ports define it: model0 (VGG + CPM layers),
    model{t}_1 (PAF, 'L1') and model{t}_2 (heatmaps, 'L2') per stage, stage t >= 2 reading
    concat(L1, L2, features); input BGR pixel/256 - 0.5."""

    def __init__(self):
        super().__init__()
        self.linear = set()

        def seq(spec):
            m = nn.Sequential()
            for name, cin, cout, k in spec:
                if name == "pool":
                    continue
                m.add_module(name, nn.Conv2d(cin, cout, k, padding=k // 2))
            return m

        self.spec = {}
        vgg = [("conv1_1", 3, 64, 3), ("conv1_2", 64, 64, 3), ("pool", 0, 0, 0), ("conv2_1", 64, 128, 3),
               ("conv2_2", 128, 128, 3), ("pool", 0, 0, 0), ("conv3_1", 128, 256, 3), ("conv3_2", 256, 256, 3),
               ("conv3_3", 256, 256, 3), ("conv3_4", 256, 256, 3), ("pool", 0, 0, 0), ("conv4_1", 256, 512, 3),
               ("conv4_2", 512, 512, 3), ("conv4_3_CPM", 512, 256, 3), ("conv4_4_CPM", 256, 128, 3)]
        self.spec["model0"] = vgg
        for L, out in ((1, 38), (2, 19)):
            self.spec[f"model1_{L}"] = [(f"conv5_1_CPM_L{L}", 128, 128, 3), (f"conv5_2_CPM_L{L}", 128, 128, 3),
                                        (f"conv5_3_CPM_L{L}", 128, 128, 3), (f"conv5_4_CPM_L{L}", 128, 512, 1),
                                        (f"conv5_5_CPM_L{L}", 512, out, 1)]
            self.linear.add(f"conv5_5_CPM_L{L}")
            for t in range(2, 7):
                sp = [(f"Mconv1_stage{t}_L{L}", 185, 128, 7)]
                sp += [(f"Mconv{i}_stage{t}_L{L}", 128, 128, 7) for i in range(2, 6)]
                sp += [(f"Mconv6_stage{t}_L{L}", 128, 128, 1), (f"Mconv7_stage{t}_L{L}", 128, out, 1)]
                self.spec[f"model{t}_{L}"] = sp
                self.linear.add(f"Mconv7_stage{t}_L{L}")
        for k, sp in self.spec.items():
            self.add_module(k, seq(sp))

    def run(self, block, x):
        m = getattr(self, block)
        for name, _, _, _ in self.spec[block]:
            if name == "pool":
                x = F.max_pool2d(x, 2, 2)
                continue
            x = getattr(m, name)(x)
            if name not in self.linear:
                x = F.relu(x)
        return x

    def forward(self, x):
        feat = self.run("model0", x)
        outs, inp = [], feat
        for t in range(1, 7):
            l1, l2 = self.run(f"model{t}_1", inp), self.run(f"model{t}_2", inp)
            outs.append((l1, l2))
            inp = torch.cat([l1, l2, feat], 1)
        return outs


def cmu_state_dict(flat):
    net = CMUBody()
    with torch.no_grad():
        for name, t in net.named_parameters():
            if name.endswith("weight"):
                fan_in = t.shape[1] * t.shape[2] * t.shape[3]
                t.normal_(0, (2.0 / fan_in) ** 0.5 if "Mconv7" not in name and "conv5_5" not in name else 0.05)
            else:
                t.normal_(0, 0.05)
    sd = net.state_dict()
    # the published body_pose_model.pth has the layer names without the block prefix
    return OrderedDict((k.split(".", 1)[1] if flat else k, v) for k, v in sd.items()), net


def cmu_bgr(rgb):
    return (rgb[:, :, ::-1] / 256.0 - 0.5).transpose(2, 0, 1)


# The ports' decoding tables (1-based parts): limb k joins limbSeq[k] and its PAF x, y are
# channels mapIdx[k] - 19 of the PAF output; heatmap parts are in CMU's COCO order, the same
# names as SPEC's.
LIMBSEQ = [[2, 3], [2, 6], [3, 4], [4, 5], [6, 7], [7, 8], [2, 9], [9, 10], [10, 11], [2, 12], [12, 13], [13, 14],
           [2, 1], [1, 15], [15, 17], [1, 16], [16, 18], [3, 17], [6, 18]]
MAPIDX = [[31, 32], [39, 40], [33, 34], [35, 36], [41, 42], [43, 44], [19, 20], [21, 22], [23, 24], [25, 26],
          [27, 28], [29, 30], [47, 48], [49, 50], [53, 54], [51, 52], [55, 56], [37, 38], [45, 46]]
SPEC_LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16), (1, 5), (5, 6),
              (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]


def cmu_paf_to_spec(paf):
    """CMU PAF channels [N,38,h,w] in SPEC order: limb l's (x, y) from the port's table, negated if reversed."""
    out = np.zeros_like(paf)
    for l, (a, b) in enumerate(SPEC_LIMBS):
        for k, (pa, pb) in enumerate(LIMBSEQ):
            if (pa - 1, pb - 1) in ((a, b), (b, a)):
                sign = 1.0 if (pa - 1, pb - 1) == (a, b) else -1.0
                out[:, 2 * l] = sign * paf[:, MAPIDX[k][0] - 19]
                out[:, 2 * l + 1] = sign * paf[:, MAPIDX[k][1] - 19]
    return out


def test_openpose_import():
    sd, net = cmu_state_dict(flat=True)
    torch.save(sd, p("body_pose_model.pth"))
    ck = p("openpose_ck.h5")
    sh(CONVERT + ["openpose", p("body_pose_model.pth"), ck])
    prefixed, _ = cmu_state_dict(flat=False)
    with h5py.File(ck, "r") as f:
        cfg = sspose_torch.parse_config(f.attrs["config"])
        assert cfg["model.input_norm"] == "cmu" and cfg["model.offsets"] == "0" and cfg["model.ss"] == "off"
        assert cfg["model.stages"] == "6" and cfg["model.width"] == "1"
        assert np.array_equal(f["params/conv4_4_CPM/weight"][...], sd["conv4_4_CPM.weight"].numpy())
        assert np.array_equal(f["params/stage3/heat/conv2/weight"][...], sd["Mconv2_stage3_L2.weight"].numpy())
        assert np.array_equal(f["params/stage1/paf/conv4/bias"][...], sd["conv5_4_CPM_L1.bias"].numpy())
    # the module's own state_dict() names (model0.conv1_1.weight ...) give the same checkpoint
    torch.save(OrderedDict((k, v) for k, v in net.state_dict().items()), p("body_prefixed.pth"))
    r = convert_here(["openpose", p("body_prefixed.pth"), p("openpose_ck2.h5")])
    assert r.returncode == 0, r.stderr
    with h5py.File(ck, "r") as f, h5py.File(p("openpose_ck2.h5"), "r") as g:
        for n in _walk(f["params"]):
            assert np.array_equal(f["params/" + n][...], g["params/" + n][...]), n
    count = 2
    inp, outs = forward(ck, shard(128), count, "openpose_fwd.h5")
    check_input(inp, crops_rgb(shard(128), count), cmu_bgr, "cmu")
    with torch.no_grad():
        ref = net.eval()(torch.from_numpy(inp))
    for s, (l1, l2) in enumerate(ref, 1):
        close(outs[f"stage{s}/paf"], cmu_paf_to_spec(l1.numpy()), f"stage{s}/paf")
        close(outs[f"stage{s}/heat"], l2.numpy(), f"stage{s}/heat")  # CMU's part order is SPEC's
    # sspose infer runs it
    img = os.path.join(H.SHARED, "000000000785.jpg")
    sh([H.SSPOSE, "infer", "--checkpoint", ck, "--set", "eval.base_size=128", "--out", p("infer"), img])
    assert os.path.exists(p("infer/000000000785.json")) and os.path.exists(p("infer/000000000785.png"))


# ------------------------------------------------------------------ export / import

def test_export_matches_module_and_round_trips():
    ck = p("tiny_ck.h5")
    sh([H.SSPOSE, "init", "--config", "configs/tiny.ini", "--seed", "7", "--set", "model.input_norm=imagenet",
        "--out", ck])
    sh(CONVERT + ["export", ck, p("tiny.pth")])
    sd = torch.load(p("tiny.pth"))
    with h5py.File(ck, "r") as f:
        names = _walk(f["params"])
        assert sorted(sd) == sorted(n.replace("/", ".") for n in names)
        for n in names:
            assert sd[n.replace("/", ".")].dtype == torch.float32
            assert np.array_equal(sd[n.replace("/", ".")].numpy(), f["params/" + n][...]), n
        text = f.attrs["config"]
    net = sspose_torch.SsposeNet.from_state_dict(sd).eval()
    assert net.input_norm == "imagenet"
    inp, outs = forward(ck, shard(128), 3, "tiny_fwd.h5")
    with torch.no_grad():
        ref = net(torch.from_numpy(inp))
    for s, o in enumerate(ref, 1):
        for k in ("paf", "heat", "offset", "p2h"):
            close(outs[f"stage{s}/{k}"], o[k].numpy(), f"stage{s}/{k}")
    # the module's own normalisation is the C side's
    rgb = crops_rgb(shard(128), 1)[0]
    close(sspose_torch.normalize(rgb, "imagenet").numpy(), inp[0], "normalize", 1e-6)
    sh(CONVERT + ["import", p("tiny.pth"), p("tiny_back.h5")])
    with h5py.File(ck, "r") as f, h5py.File(p("tiny_back.h5"), "r") as g:
        assert g.attrs["config"] == text and g.attrs["format"] == "sspose-checkpoint"
        assert sorted(_walk(g["params"])) == sorted(names)
        for n in names:
            a, b = f["params/" + n][...], g["params/" + n][...]
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), n
    r = convert_here(["export", p("tiny_back.h5"), p("tiny2.pth")])
    assert r.returncode == 0, r.stderr
    sd2 = torch.load(p("tiny2.pth"))
    assert all(sd[k].numpy().tobytes() == sd2[k].numpy().tobytes() for k in sd)


def test_export_refuses_batch_norm_and_bad_input():
    ck = p("tiny_ck.h5")
    if not os.path.exists(ck):
        sh([H.SSPOSE, "init", "--config", "configs/tiny.ini", "--out", ck])
    bn = p("tiny_bn.h5")
    with open(ck, "rb") as a, open(bn, "wb") as b:
        b.write(a.read())
    with h5py.File(bn, "r+") as f:
        f.create_dataset("params/conv1_1/bn/weight", data=np.ones(16, np.float32))
    one_error_line(convert_here(["export", bn, p("bn.pth")]), "convert.py: error:", "model.norm")
    with open(ck, "rb") as a, open(bn, "wb") as b:
        b.write(a.read())
    with h5py.File(bn, "r+") as f:
        f.attrs["config"] = f.attrs["config"] + "model.norm = batch\n"
    one_error_line(sh(CONVERT + ["export", bn, p("bn.pth")], ok=False), "convert.py: error:", "model.norm = batch")
    assert not os.path.exists(p("bn.pth"))
    one_error_line(convert_here(["export", p("vgg19.pth"), p("x.pth")]), "convert.py: error:", "HDF5")
    torch.save(vgg19_state_dict(), p("plain.pth"))
    one_error_line(convert_here(["import", p("plain.pth"), p("x.h5")]), "convert.py: error:", "no sspose config")


def test_train_starts_from_init():
    """sspose train --init: a fresh run starts from the given weights (lr 0 keeps them through a step);
    a run with a checkpoint to resume ignores it; another input_norm is refused in one line."""
    init = p("train_init.h5")
    sh([H.SSPOSE, "init", "--config", "configs/tiny.ini", "--seed", "9", "--out", init])
    common = ["--config", "configs/tiny.ini", "--set", f"data.train={shard(128)}", "--set", "train.steps=1",
              "--set", "train.lr=0", "--set", "train.batch=2", "--set", "data.threads=0", "--set", "comm.device=cpu"]
    run = p("run_init")
    sh([H.SSPOSE, "train", "--out", run, "--init", init] + common)
    with h5py.File(init, "r") as f, h5py.File(os.path.join(run, "ckpt-000000001.h5"), "r") as g:
        for n in _walk(f["params"]):
            assert f["params/" + n][...].tobytes() == g["params/" + n][...].tobytes(), n
    run2 = p("run_seed")
    sh([H.SSPOSE, "train", "--out", run2] + common)
    with h5py.File(init, "r") as f, h5py.File(os.path.join(run2, "ckpt-000000001.h5"), "r") as g:
        assert not np.array_equal(f["params/conv1_1/weight"][...], g["params/conv1_1/weight"][...])
    # resuming run2 with --init continues run2 (step 1 -> 2), it does not restart from init
    sh([H.SSPOSE, "train", "--out", run2, "--resume", "--init", init] + common[:4] + ["--set", "train.steps=2"] +
       common[6:])
    with h5py.File(os.path.join(run2, "ckpt-000000001.h5"), "r") as f, \
            h5py.File(os.path.join(run2, "ckpt-000000002.h5"), "r") as g:
        assert np.array_equal(f["params/conv1_1/weight"][...], g["params/conv1_1/weight"][...])
    one_error_line(sh([H.SSPOSE, "train", "--out", p("run_bad"), "--init", init, "--set", "model.input_norm=caffe"] +
                      common, ok=False), "sspose: error:", "model.input_norm = centered")


if __name__ == "__main__":
    for t in (test_vgg19_torchvision_import, test_vgg19_keras_import_both_spellings, test_bad_backbones_one_line,
              test_convert_bad_pth_one_line, test_openpose_import, test_export_matches_module_and_round_trips,
              test_export_refuses_batch_norm_and_bad_input, test_train_starts_from_init):
        H.run(t)
    H.end()
