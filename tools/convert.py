#!/usr/bin/python3
"""Weights in and out of sspose (docs/coco.md, "Pretrained weights").

  convert.py vgg19 IN.pth OUT.h5       torchvision VGG-19 state dict -> backbone file for
                                       `sspose init --backbone` (format sspose-backbone)
  convert.py openpose IN.pth OUT.h5    CMU OpenPose body model (the PyTorch ports' body_pose_model.pth)
                                       -> sspose checkpoint of configs/baseline.ini, input_norm = cmu
  convert.py export CK.h5 OUT.pth      sspose checkpoint -> PyTorch state dict for tools/sspose_torch.py
  convert.py import IN.pth OUT.h5      such a state dict -> sspose checkpoint (the inverse of export)

openpose and import build the checkpoint from `sspose init` (--sspose BIN, default bin/sspose of
this tree or $SSPOSE_BIN), so its layout is exactly the C side's. Every output is written to a
temporary name and renamed; a bad input prints one line `convert.py: error: ...` and exits 1."""
import argparse
import os
import subprocess
import sys
import tempfile
from collections import OrderedDict

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sspose_torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BACKBONE_FORMAT, BACKBONE_VERSION = "sspose-backbone", 1
CKPT_FORMAT = "sspose-checkpoint"

# VGG-19's first ten convolutions: sspose name, torchvision features index, [out, in]
VGG19 = [("conv1_1", 0, 64, 3), ("conv1_2", 2, 64, 64), ("conv2_1", 5, 128, 64), ("conv2_2", 7, 128, 128),
         ("conv3_1", 10, 256, 128), ("conv3_2", 12, 256, 256), ("conv3_3", 14, 256, 256),
         ("conv3_4", 16, 256, 256), ("conv4_1", 19, 512, 256), ("conv4_2", 21, 512, 512)]

# SPEC section 1.
SPEC_PARTS = ["nose", "neck", "r_sho", "r_elb", "r_wri", "l_sho", "l_elb", "l_wri", "r_hip", "r_knee", "r_ank",
              "l_hip", "l_knee", "l_ank", "r_eye", "l_eye", "r_ear", "l_ear", "background"]
SPEC_LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16), (1, 5), (5, 6),
              (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]

# CMU's COCO body model. Heatmap channels: CMU's part order (Nose, Neck, RShoulder, RElbow, RWrist,
# LShoulder, LElbow, LWrist, RHip, RKnee, RAnkle, LHip, LKnee, LAnkle, REye, LEye, REar, LEar,
# Background). PAF channels: the ports' decoders read limb k = limbSeq[k] (1-based parts) from PAF
# channels mapIdx[k] - 19, the first of the pair being x, vectors pointing from limbSeq[k][0] to
# limbSeq[k][1]; here that table is written per PAF channel pair (0-based parts), i.e. the limb
# whose x/y live in channels 2j, 2j+1 of Mconv7_stage*_L1 / conv5_5_CPM_L1.
CMU_PARTS = ["nose", "neck", "r_sho", "r_elb", "r_wri", "l_sho", "l_elb", "l_wri", "r_hip", "r_knee", "r_ank",
             "l_hip", "l_knee", "l_ank", "r_eye", "l_eye", "r_ear", "l_ear", "background"]
CMU_PAF_LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16), (1, 5),
                 (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]


class ConvertError(Exception):
    pass


def fail(msg):
    raise ConvertError(msg)


# ---------------------------------------------------------------- reading and writing

def load_pth(path):
    if not os.path.isfile(path):
        fail(f"'{path}' does not exist")
    try:
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch without weights_only
            sd = torch.load(path, map_location="cpu")
    except Exception as e:  # any unpickling problem is one line
        fail(f"'{path}' is not a PyTorch file torch.load can read ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        fail(f"'{path}' does not hold a state dict (a dict of name -> tensor)")
    return sd


def tensor(sd, key, shape, path):
    if key not in sd:
        fail(f"'{path}': tensor '{key}' is missing")
    t = sd[key]
    if not isinstance(t, torch.Tensor):
        fail(f"'{path}': '{key}' is not a tensor")
    if t.dtype != torch.float32:
        fail(f"'{path}': tensor '{key}' has dtype {str(t.dtype).replace('torch.', '')}, expected float32")
    if tuple(t.shape) != tuple(shape):
        fail(f"'{path}': tensor '{key}' has shape {list(t.shape)}, expected {list(shape)}")
    a = t.detach().contiguous().numpy()
    if not np.isfinite(a).all():
        fail(f"'{path}': tensor '{key}' holds non-finite values")
    return a


def check_no_extra(sd, used, path):
    extra = sorted(k for k in sd if k not in used)
    if extra:
        fail(f"'{path}': unexpected tensor '{extra[0]}'" + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""))


def tmp_name(out):
    d = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(d):
        fail(f"output directory '{d}' does not exist")
    return os.path.join(d, f".{os.path.basename(out)}.tmp.{os.getpid()}")


def same_file(a, b):
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def commit(tmp, out):
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)


def sspose_bin(arg):
    b = arg or os.environ.get("SSPOSE_BIN") or os.path.join(ROOT, "bin", "sspose")
    if not os.access(b, os.X_OK):
        fail(f"sspose binary '{b}' not found (build it with make, or pass --sspose BIN)")
    return b


def template(binary, config_path, sets, out_tmp):
    """A fresh checkpoint from `sspose init`, whose /params the caller overwrites."""
    cmd = [binary, "init", "--config", config_path, "--out", out_tmp]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"sspose init failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")


def fill_checkpoint(tmp, params, source):
    """Writes every tensor of params (SPEC name -> array) over the template's /params; all must match."""
    with h5py.File(tmp, "r+") as f:
        names = []
        f["params"].visit(lambda n: names.append(n) if isinstance(f["params"][n], h5py.Dataset) else None)
        missing = sorted(set(names) - set(params))
        if missing:
            fail(f"the network has '{missing[0]}', which {source} does not provide (config mismatch?)")
        extra = sorted(set(params) - set(names))
        if extra:
            fail(f"{source} provides '{extra[0]}', which the network does not have (config mismatch?)")
        for n in names:
            ds = f["params"][n]
            if ds.shape != params[n].shape:
                fail(f"{source}: '{n}' has shape {list(params[n].shape)}, the network wants {list(ds.shape)}")
            ds[...] = params[n].astype(np.float32)
        f.attrs["step"] = np.int64(0)


# ---------------------------------------------------------------- vgg19

def cmd_vgg19(a):
    sd = load_pth(a.input)
    used, out = set(), {}
    for name, idx, o, i in VGG19:
        for suffix, shape in (("weight", (o, i, 3, 3)), ("bias", (o,))):
            key = f"features.{idx}.{suffix}"
            out[f"{name}/{suffix}"] = tensor(sd, key, shape, a.input)
            used.add(key)
    # the rest of VGG-19 (later convolutions, classifier) is allowed and ignored, anything else is not
    for k in sd:
        if not (k.startswith("features.") or k.startswith("classifier.")):
            fail(f"'{a.input}': unexpected tensor '{k}' (not a torchvision VGG-19 state dict)")
    tmp = tmp_name(a.output)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = BACKBONE_FORMAT
            f.attrs["version"] = np.int64(BACKBONE_VERSION)
            f.attrs["input_norm"] = "imagenet"
            f.attrs["source"] = os.path.basename(a.input)
            for k, v in out.items():
                f.create_dataset("params/" + k, data=v)
        commit(tmp, a.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {a.output}: conv1_1 ... conv4_2 from {a.input} (model.input_norm = imagenet)")


# ---------------------------------------------------------------- openpose

def cmu_layers():
    """(CMU module prefix, CMU layer, sspose name, [out, in, k]) of every convolution of the body model."""
    layers = []
    c = 3
    for name, o in [("conv1_1", 64), ("conv1_2", 64), ("conv2_1", 128), ("conv2_2", 128), ("conv3_1", 256),
                    ("conv3_2", 256), ("conv3_3", 256), ("conv3_4", 256), ("conv4_1", 512), ("conv4_2", 512),
                    ("conv4_3_CPM", 256), ("conv4_4_CPM", 128)]:
        layers.append(("model0", name, name, (o, c, 3)))
        c = o
    for L, branch, out in ((1, "paf", 38), (2, "heat", 19)):
        chans = [(128, 128, 3), (128, 128, 3), (128, 128, 3), (512, 128, 1), (out, 512, 1)]
        for i, shp in enumerate(chans, 1):
            cmu = f"conv5_{i}_CPM_L{L}"
            layers.append((f"model1_{L}", cmu, f"stage1/{branch}/conv{i}", shp))
        for t in range(2, 7):
            chans = [(128, 185, 7)] + [(128, 128, 7)] * 4 + [(128, 128, 1), (out, 128, 1)]
            for i, shp in enumerate(chans, 1):
                layers.append((f"model{t}_{L}", f"Mconv{i}_stage{t}_L{L}", f"stage{t}/{branch}/conv{i}", shp))
    return layers


def cmu_permutations():
    """For each of our heat/PAF channels: the CMU channel it comes from and the sign."""
    heat = [CMU_PARTS.index(p) for p in SPEC_PARTS]
    paf_src, paf_sign = [], []
    for a, b in SPEC_LIMBS:
        if (a, b) in CMU_PAF_LIMBS:
            j, s = CMU_PAF_LIMBS.index((a, b)), 1.0
        elif (b, a) in CMU_PAF_LIMBS:  # CMU's vector points the other way: both components negate
            j, s = CMU_PAF_LIMBS.index((b, a)), -1.0
        else:
            raise AssertionError(f"limb {(a, b)} has no CMU channel")
        paf_src += [2 * j, 2 * j + 1]
        paf_sign += [s, s]
    return np.array(heat), np.array(paf_src), np.array(paf_sign, dtype=np.float32)


def cmd_openpose(a):
    sd = load_pth(a.input)
    # the ports publish flat names (conv1_1.weight, Mconv1_stage2_L1.weight); their module's
    # state_dict() prefixes the block (model0.conv1_1.weight): accept either
    prefixed = any(k.startswith("model0.") for k in sd)
    heat_src, paf_src, paf_sign = cmu_permutations()
    params, used = {}, set()
    for prefix, cmu, ours, (o, i, k) in cmu_layers():
        key = f"{prefix}.{cmu}" if prefixed else cmu
        w = tensor(sd, key + ".weight", (o, i, k, k), a.input)
        b = tensor(sd, key + ".bias", (o,), a.input)
        used |= {key + ".weight", key + ".bias"}
        last = cmu.startswith("conv5_5") or cmu.startswith("Mconv7")
        if last and "paf" in ours:
            w, b = w[paf_src] * paf_sign[:, None, None, None], b[paf_src] * paf_sign
        elif last:
            w, b = w[heat_src], b[heat_src]
        if cmu.startswith("Mconv1_"):  # input = concat(PAF, heat, features) in CMU's channel orders
            w = np.concatenate([w[:, paf_src] * paf_sign[None, :, None, None], w[:, 38 + heat_src], w[:, 57:]], 1)
        params[ours + "/weight"], params[ours + "/bias"] = np.ascontiguousarray(w), np.ascontiguousarray(b)
    check_no_extra(sd, used, a.input)
    binary = sspose_bin(a.sspose)
    tmp = tmp_name(a.output)
    try:
        template(binary, a.config, ["model.input_norm=cmu"], tmp)
        fill_checkpoint(tmp, params, a.input)
        commit(tmp, a.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {a.output}: CMU body model {a.input} as {os.path.basename(a.config)} (model.input_norm = cmu)")


# ---------------------------------------------------------------- export / import

def read_checkpoint(path):
    if not os.path.isfile(path):
        fail(f"'{path}' does not exist")
    if not h5py.is_hdf5(path):
        fail(f"'{path}' is not an HDF5 file")
    with h5py.File(path, "r") as f:
        fmt = f.attrs.get("format")
        if fmt != CKPT_FORMAT:
            fail(f"'{path}' is not an sspose checkpoint (format attribute is not '{CKPT_FORMAT}')")
        text = f.attrs.get("config")
        if not isinstance(text, str):
            fail(f"'{path}' has no config attribute")
        names = []
        f["params"].visit(lambda n: names.append(n) if isinstance(f["params"][n], h5py.Dataset) else None)
        bn = [n for n in names if "/bn/" in n]
        cfg = sspose_torch.parse_config(text)
        if bn or cfg.get("model.norm", "none") != "none":
            fail(f"'{path}' has batch norm (model.norm = {cfg.get('model.norm', 'batch')}): export supports "
                 "model.norm = none networks only")
        arrays = {}
        for n in names:
            ds = f["params"][n]
            if ds.dtype != np.float32:
                fail(f"'{path}': params/{n} has dtype {ds.dtype}, expected float32")
            arrays[n] = ds[...]
    return text, cfg, arrays


def cmd_export(a):
    if same_file(a.input, a.output):
        fail("the output must not be the input")
    text, cfg, arrays = read_checkpoint(a.input)
    try:
        net = sspose_torch.SsposeNet(cfg)
    except sspose_torch.ConfigError as e:
        fail(f"'{a.input}': {e}")
    sd = OrderedDict()
    for name, p in net.named_parameters():
        spec = name.replace(".", "/")
        if spec not in arrays:
            fail(f"'{a.input}': params/{spec} is missing")
        if arrays[spec].shape != tuple(p.shape):
            fail(f"'{a.input}': params/{spec} has shape {list(arrays[spec].shape)}, expected {list(p.shape)}")
        sd[name] = torch.from_numpy(arrays.pop(spec))
    if arrays:
        fail(f"'{a.input}': params/{sorted(arrays)[0]} is not part of the network its config describes")
    sd._metadata = OrderedDict({"": {sspose_torch.CONFIG_KEY: text}})
    tmp = tmp_name(a.output)
    try:
        torch.save(sd, tmp)
        commit(tmp, a.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {a.output}: {len(sd)} tensors (load with tools/sspose_torch.py SsposeNet.from_state_dict)")


def cmd_import(a):
    if same_file(a.input, a.output):
        fail("the output must not be the input")
    sd = load_pth(a.input)
    meta = getattr(sd, "_metadata", None) or {}
    text = meta.get("", {}).get(sspose_torch.CONFIG_KEY) if isinstance(meta, dict) else None
    if not isinstance(text, str):
        fail(f"'{a.input}' carries no sspose config (not written by convert.py export?)")
    try:
        net = sspose_torch.SsposeNet(sspose_torch.parse_config(text))
    except sspose_torch.ConfigError as e:
        fail(f"'{a.input}': {e}")
    params = {}
    for name, p in net.named_parameters():
        params[name.replace(".", "/")] = tensor(sd, name, tuple(p.shape), a.input)
    check_no_extra(sd, {n for n, _ in net.named_parameters()}, a.input)
    binary = sspose_bin(a.sspose)
    tmp = tmp_name(a.output)
    with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as cf:
        cf.write(text)
    try:
        template(binary, cf.name, [], tmp)
        fill_checkpoint(tmp, params, a.input)
        commit(tmp, a.output)
    finally:
        os.unlink(cf.name)
        if os.path.exists(tmp):
            os.unlink(tmp)
    print(f"wrote {a.output}: {len(params)} tensors from {a.input}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("vgg19", help="torchvision VGG-19 .pth -> backbone HDF5 for sspose init --backbone")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(fn=cmd_vgg19)
    p = sub.add_parser("openpose", help="CMU body_pose_model.pth -> sspose checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "baseline.ini"))
    p.add_argument("--sspose", help="the sspose binary (default: bin/sspose of this tree, or $SSPOSE_BIN)")
    p.set_defaults(fn=cmd_openpose)
    p = sub.add_parser("export", help="sspose checkpoint -> PyTorch state dict")
    p.add_argument("input")
    p.add_argument("output")
    p.set_defaults(fn=cmd_export)
    p = sub.add_parser("import", help="state dict of export -> sspose checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--sspose", help="the sspose binary (default: bin/sspose of this tree, or $SSPOSE_BIN)")
    p.set_defaults(fn=cmd_import)
    a = ap.parse_args(argv)
    if a.cmd != "export" and same_file(a.input, a.output):
        print("convert.py: error: the output must not be the input", file=sys.stderr)
        return 1
    try:
        a.fn(a)
    except ConvertError as e:
        print(f"convert.py: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
