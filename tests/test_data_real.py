"""sspose data on the four real COCO images: the shards per SPEC section 5 read
with h5py, targets where the keypoints are, mask_miss over the persons without
keypoints, meta consistent with the keypoints, our reader equal to h5py, the
flip equal to a numpy mirror, and the same bytes for any --threads."""
import filecmp
import glob
import io
import json
import os
import subprocess

import h5py
import numpy as np
from PIL import Image
from pycocotools import mask as M

import pyharness as T

ANN = os.path.join(T.SHARED, "test_coco.json")
TOOL = os.path.join(os.environ.get("SSPOSE_BUILD", "build"), "tests", "tool_data_shard")
OUT = os.path.join(T.TMP, "real")
S, FD, G = 368, 8, 46
# SPEC section 1, written out again here (independent of core/skeleton.c)
FROM_COCO = [0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3]
LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16), (1, 5), (5, 6),
         (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]
KP_MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16]
LIMB_MIRROR = [3, 4, 5, 0, 1, 2, 10, 11, 12, 13, 6, 7, 8, 9, 14, 16, 15, 18, 17]

coco = json.load(open(ANN))
images = {im["id"]: im for im in coco["images"]}
anns = {a["id"]: a for a in coco["annotations"]}


def convert(prefix, threads):
    r = subprocess.run([T.SSPOSE, "data", "--ann", ANN, "--images", T.SHARED, "--out", prefix, "--copies", "3",
                        "--samples-per-shard", "16", "--threads", str(threads), "--seed", "7"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


os.makedirs(OUT, exist_ok=True)
RUN = convert(os.path.join(OUT, "a"), 2)
SHARDS = sorted(glob.glob(os.path.join(OUT, "a-*.h5")))


def op18(a):
    k = np.array(a["keypoints"], np.float64).reshape(17, 3)
    out = np.zeros((18, 3))
    for j, c in enumerate(FROM_COCO):
        if c is None:
            if k[5, 2] > 0 and k[6, 2] > 0:
                out[j] = [(k[5, 0] + k[6, 0]) / 2, (k[5, 1] + k[6, 1]) / 2, 1]
        elif k[c, 2] > 0:
            out[j] = [k[c, 0], k[c, 1], 1]
    return out


def affine(meta):
    """image -> crop, from meta alone: x' = s R (x - c) + (S-1)/2, then the flip"""
    s, cx, cy, th = float(meta["scale"]), float(meta["center_x"]), float(meta["center_y"]), np.radians(float(meta["rotation"]))
    A = s * np.array([[np.cos(th), np.sin(th)], [-np.sin(th), np.cos(th)]])
    b = (S - 1) / 2 - A @ np.array([cx, cy])
    if meta["flipped"]:
        A = np.array([[-1, 0], [0, 1]]) @ A
        b = np.array([S - 1 - b[0], b[1]])
    return A, b


def samples():
    for path in SHARDS:
        with h5py.File(path, "r") as f:
            for i in range(f["meta"].shape[0]):
                yield path, i, f


def test_layout_per_spec():
    assert len(SHARDS) == 3, SHARDS  # 12 main persons x 3 copies = 36 samples, 16 per shard
    counts = []
    for path in SHARDS:
        with h5py.File(path, "r") as f:
            a = f.attrs
            assert a["format"] == "sspose-shard" and a["version"] == 1
            assert a["input_size"] == S and a["stride"] == FD and a["sigma"] == 7 and a["paf_width"] == 1
            assert a["num_keypoints"] == 18 and a["num_limbs"] == 19 and a["seed"] == 7
            assert np.array_equal(a["limbs"], np.array(LIMBS)) and a["source"] == ANN and "copies=3" in a["augment"]
            n = f["meta"].shape[0]
            counts.append(n)
            spec = {"mask": ("u1", (n, G, G), 1 / 255), "heatmap": ("u1", (n, 19, G, G), 1 / 255),
                    "paf": ("i1", (n, 38, G, G), 1 / 127), "offset": ("i1", (n, 36, G, G), 1 / 254),
                    "attention": ("u1", (n, 19, G, G), 1 / 255)}
            for name, (dt, shape, scale) in spec.items():
                d = f[name]
                assert d.dtype == np.dtype(dt) and d.shape == shape, (name, d.dtype, d.shape)
                assert d.chunks == (1,) + shape[1:], (name, d.chunks)
                assert d.compression == "gzip" and d.compression_opts >= 1
                assert abs(float(d.attrs["scale"]) - scale) < 1e-9 and d.attrs["scale"].dtype == np.float32
            assert f["jpeg"].shape == (n,) and f["jpeg"].dtype.kind == "O" and f["jpeg"].chunks == (1,)
            assert h5py.check_vlen_dtype(f["jpeg"].dtype) == np.dtype("uint8")
            k = f["keypoints"]
            assert k.dtype == np.float32 and k.shape[0] == n and k.shape[2:] == (18, 3) and k.chunks == (1,) + k.shape[1:]
            assert set(np.unique(k[..., 2])) <= {0.0, 1.0}
            m = f["meta"]
            assert m.chunks == (1,)
            assert m.dtype.names == ("image_id", "person", "scale", "center_x", "center_y", "rotation", "flipped")
            assert [m.dtype[x] for x in m.dtype.names] == [np.dtype(t) for t in ("<i8", "<i4", "<f4", "<f4", "<f4", "<f4", "u1")]
    assert counts == [16, 16, 4]
    assert not glob.glob(os.path.join(OUT, "*.tmp*"))
    assert "wrote 36 samples" in RUN.stdout and "skipped 0" in RUN.stdout and "bytes/sample" in RUN.stdout


def test_keypoints_follow_meta():
    seen = set()
    for _, i, f in samples():
        meta = f["meta"][i]
        seen.add((int(meta["image_id"]), int(meta["person"])))
        A, b = affine(meta)
        main = op18(anns[int(meta["person"])])
        exp = main[:, :2] @ A.T + b
        if meta["flipped"]:
            exp, lab = exp[KP_MIRROR], main[KP_MIRROR, 2]
        else:
            lab = main[:, 2]
        got = f["keypoints"][i, 0]
        assert np.array_equal(got[:, 2], lab)
        err = np.abs(got[lab > 0, :2] - exp[lab > 0]).max()
        assert err < 0.05, f"sample {i}: keypoints {err:.3f} px from meta's projection"
        # the person fills ~0.6 * S * [0.5, 1.1] of the crop's height
        h = anns[int(meta["person"])]["bbox"][3] * float(meta["scale"])
        assert 0.6 * S * 0.5 - 1e-3 <= h <= 0.6 * S * 1.1 + 1e-3
        assert abs(float(meta["rotation"])) <= 40
    assert len(seen) == 12  # every main person, 3 copies each
    flips = sum(int(f["meta"][i]["flipped"]) for _, i, f in samples())
    assert 6 <= flips <= 30, flips


def test_heatmap_peaks_and_offsets_at_keypoints():
    checked = 0
    for _, i, f in samples():
        hm = f["heatmap"][i] / 255.0
        off = f["offset"][i] / 254.0
        kps = f["keypoints"][i]
        for p in kps:
            for k in range(18):
                x, y, v = p[k]
                if v == 0 or not (4 <= x < S - 4 and 4 <= y < S - 4):
                    continue
                others = [q[k] for q in kps if q[k, 2] > 0 and 0 < np.hypot(q[k, 0] - x, q[k, 1] - y) < 48]
                # the cell whose centre is nearest (centres at 8j + 3.5)
                j, r = int(round((x - (FD - 1) / 2) / FD)), int(round((y - (FD - 1) / 2) / FD))
                assert hm[k, r, j] > 0.6, (i, k, hm[k, r, j])
                assert hm[18, r, j] < 0.4
                if others:
                    continue
                # the local maximum is the cell holding the keypoint or a neighbour
                r0, j0 = max(r - 3, 0), max(j - 3, 0)
                win = hm[k, r0:r + 4, j0:j + 4]
                rr, jj = np.unravel_index(np.argmax(win), win.shape)
                assert abs(rr + r0 - r) <= 1 and abs(jj + j0 - j) <= 1, (i, k, rr, jj, r, j)
                # decoding the cell holding the keypoint gives it back (|dx| <= half a cell there)
                dx = j * FD + (FD - 1) / 2 + FD * off[2 * k, r, j]
                dy = r * FD + (FD - 1) / 2 + FD * off[2 * k + 1, r, j]
                assert abs(dx - x) < 0.05 and abs(dy - y) < 0.05, (i, k, dx, x, dy, y)
                checked += 1
    assert checked > 200, checked


def test_paf_along_limbs():
    checked = 0
    for _, i, f in samples():
        paf = f["paf"][i] / 127.0
        p = f["keypoints"][i, 0]
        for l, (a, b) in enumerate(LIMBS):
            if p[a, 2] == 0 or p[b, 2] == 0:
                continue
            v = p[b, :2] - p[a, :2]
            n = np.linalg.norm(v)
            mid = (p[a, :2] + p[b, :2]) / 2
            if n < 24 or not (0 <= mid[0] < S and 0 <= mid[1] < S):
                continue
            j, r = int(mid[0] // FD), int(mid[1] // FD)
            got = paf[2 * l:2 * l + 2, r, j]
            # another person's same limb may be averaged in: then only require a unit-ish vector
            if np.linalg.norm(got - v / n) > 0.05:
                continue
            checked += 1
    assert checked > 60, checked


def test_mask_zero_over_persons_without_keypoints():
    noskp = {}
    for a in coco["annotations"]:
        if a["num_keypoints"] == 0:
            im = images[a["image_id"]]
            rle = M.frPyObjects(a["segmentation"], im["height"], im["width"])
            noskp.setdefault(a["image_id"], []).append(M.decode(M.merge(rle)))
    assert set(noskp) == {40083, 196141}
    # every crop pixel centre mapped back into the image
    ys, xs = np.mgrid[0:S, 0:S]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64)
    tested = 0
    for _, i, f in samples():
        meta = f["meta"][i]
        iid = int(meta["image_id"])
        im = images[iid]
        mask = f["mask"][i] / 255.0
        if iid not in noskp:
            assert mask.min() == 1.0, "mask zeroed in an image without crowd or keypoint-less persons"
            continue
        A, b = affine(meta)
        src = (pts - b) @ np.linalg.inv(A).T
        sx, sy = np.floor(src[:, 0] + 0.5).astype(int), np.floor(src[:, 1] + 0.5).astype(int)
        inside = (sx >= 0) & (sy >= 0) & (sx < im["width"]) & (sy < im["height"])
        hole = np.zeros(len(pts), bool)
        for m in noskp[iid]:
            hole[inside] |= m[sy[inside], sx[inside]] > 0
        frac = hole.reshape(G, FD, G, FD).mean(axis=(1, 3))
        exp = 1 - frac
        assert np.abs(mask - exp).mean() < 0.02, np.abs(mask - exp).mean()
        assert np.all(mask[frac > 0.95] < 0.2)
        far = np.ones((G, G), bool)  # cells with no hole pixel within a cell: exactly 1
        hf = frac > 0
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                far &= ~np.roll(np.roll(hf, di, 0), dj, 1)
        assert np.all(mask[far] == 1.0)
        tested += int(frac.max() > 0.5)
    assert tested >= 3, tested


def read_tool(path, i, flip=False):
    out = os.path.join(T.TMP, "dump.bin")
    r = subprocess.run([TOOL, path, str(i), out] + (["flip"] if flip else []), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    raw = np.fromfile(out, np.uint8)
    fl = raw[:-56].view(np.float32)
    meta = raw[-56:].view(np.float64)
    sizes = [S * S * 3, G * G, 19 * G * G, 38 * G * G, 36 * G * G, 19 * G * G]
    parts, at = [], 0
    for n in sizes:
        parts.append(fl[at:at + n])
        at += n
    parts.append(fl[at:])
    rgb = parts[0].reshape(S, S, 3)
    return [rgb, parts[1].reshape(G, G)] + [p.reshape(-1, G, G) for p in parts[2:6]] + [parts[6].reshape(-1, 18, 3), meta]


def h5_sample(f, i):
    rgb = np.array(Image.open(io.BytesIO(f["jpeg"][i].tobytes())).convert("RGB"), np.float32)
    deq = [f[n][i].astype(np.float32) * f[n].attrs["scale"] for n in ("mask", "heatmap", "paf", "offset", "attention")]
    return [rgb] + deq + [f["keypoints"][i]]


def test_our_reader_equals_h5py():
    for path in SHARDS[::2]:
        with h5py.File(path, "r") as f:
            for i in (0, f["meta"].shape[0] - 1):
                ours, ref = read_tool(path, i), h5_sample(f, i)
                assert np.abs(ours[0] - ref[0]).max() <= 1, "JPEG decode differs"
                for k in range(1, 7):
                    assert np.array_equal(ours[k], ref[k]), k
                m = f["meta"][i]
                assert list(ours[7]) == [m["image_id"], m["person"], np.float32(m["scale"]), np.float32(m["center_x"]),
                                         np.float32(m["center_y"]), np.float32(m["rotation"]), m["flipped"]]


def test_flip_equals_numpy_mirror():
    path = SHARDS[0]
    with h5py.File(path, "r") as f:
        ref = h5_sample(f, 3)
    got = read_tool(path, 3, flip=True)
    heat_m = KP_MIRROR + [18]
    paf_m = [2 * LIMB_MIRROR[c // 2] + c % 2 for c in range(38)]
    off_m = [2 * KP_MIRROR[c // 2] + c % 2 for c in range(36)]
    xsign = np.array([-1 if c % 2 == 0 else 1 for c in range(38)], np.float32)[:, None, None]
    osign = np.array([-1 if c % 2 == 0 else 1 for c in range(36)], np.float32)[:, None, None]
    assert np.array_equal(got[0], ref[0][:, ::-1])
    assert np.array_equal(got[1], ref[1][:, ::-1])
    assert np.array_equal(got[2], ref[2][heat_m][:, :, ::-1])
    assert np.array_equal(got[3], (ref[3][paf_m] * xsign)[:, :, ::-1])
    assert np.array_equal(got[4], (ref[4][off_m] * osign)[:, :, ::-1])
    assert np.array_equal(got[5], ref[5][LIMB_MIRROR][:, :, ::-1])
    k = ref[6][:, KP_MIRROR].copy()
    k[..., 0] = np.where(k[..., 2] > 0, S - 1 - k[..., 0], k[..., 0])
    assert np.array_equal(got[6], k)


def test_same_bytes_for_any_thread_count():
    convert(os.path.join(OUT, "b"), 1)
    other = sorted(glob.glob(os.path.join(OUT, "b-*.h5")))
    assert len(other) == len(SHARDS)
    for x, y in zip(SHARDS, other):
        assert filecmp.cmp(x, y, shallow=False), f"{x} and {y} differ"


def bad_shard(name, edit):
    path = os.path.join(T.TMP, name + ".h5")
    with h5py.File(SHARDS[-1], "r") as src, h5py.File(path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for k in src:
            src.copy(k, dst)
        edit(dst)
    r = subprocess.run([TOOL, path], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode not in (0,) and r.returncode < 124, r.returncode
    assert len(lines) == 1 and "sspose: error: shard" in lines[0], r.stderr
    return lines[0]


def test_reader_refuses_bad_shards():
    assert "format" in bad_shard("fmt", lambda f: f.attrs.__setitem__("format", "other"))
    assert "version 2" in bad_shard("ver", lambda f: f.attrs.__setitem__("version", 2))
    assert "heatmap" in bad_shard("nohm", lambda f: f.__delitem__("heatmap"))
    assert "sigma" in bad_shard("nosigma", lambda f: f.attrs.__delitem__("sigma"))

    def wrong_paf(f):
        del f["paf"]
        f.create_dataset("paf", data=np.zeros((4, 38, G, G), np.uint8))
        f["paf"].attrs["scale"] = np.float32(1 / 127)
    assert "signedness" in bad_shard("pafsign", wrong_paf)

    def short_mask(f):
        del f["mask"]
        f.create_dataset("mask", data=np.zeros((3, G, G), np.uint8))
        f["mask"].attrs["scale"] = np.float32(1 / 255)
    assert "samples" in bad_shard("short", short_mask)
    assert "bad scale" in bad_shard("scale0", lambda f: f["heatmap"].attrs.__setitem__("scale", np.float32(0)))
    r = subprocess.run([TOOL, os.path.join(T.SHARED, "000000000785.jpg")], capture_output=True, text=True)
    assert r.returncode == 1 and "not an HDF5 file" in r.stderr


def test_file_scale_is_used():
    path = os.path.join(T.TMP, "scale.h5")
    with h5py.File(SHARDS[-1], "r") as src, h5py.File(path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for k in src:
            src.copy(k, dst)
        dst["attention"].attrs["scale"] = np.float32(0.5 / 255)
    a, b = read_tool(SHARDS[-1], 1), read_tool(path, 1)
    assert np.array_equal(b[5], (a[5] / np.float32(1 / 255)).round().astype(np.float32) * np.float32(0.5 / 255))


def test_plain_chunks_read_too():
    """A shard rewritten by h5py with other chunking (no raw-chunk path) reads the same."""
    path = os.path.join(T.TMP, "rechunk.h5")
    with h5py.File(SHARDS[-1], "r") as src, h5py.File(path, "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for k in src:
            if k in ("mask", "heatmap", "paf", "offset", "attention"):
                dst.create_dataset(k, data=src[k][:], chunks=(2,) + src[k].shape[1:], compression="gzip", shuffle=True)
                dst[k].attrs["scale"] = src[k].attrs["scale"]
            else:
                src.copy(k, dst)
    a, b = read_tool(SHARDS[-1], 2), read_tool(path, 2)
    for k, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), k


def test_png_source_images():
    """PNG input (libpng) gives the same samples as the JPEG it was made from."""
    d = os.path.join(T.TMP, "png")
    os.makedirs(d, exist_ok=True)
    one = dict(coco, images=[images[785]], annotations=[a for a in coco["annotations"] if a["image_id"] == 785])
    Image.open(os.path.join(T.SHARED, "000000000785.jpg")).convert("RGB").save(os.path.join(d, "x.png"))
    os.symlink(os.path.abspath(os.path.join(T.SHARED, "000000000785.jpg")), os.path.join(d, "x.jpg"))
    outs = []
    for ext in ("png", "jpg"):
        one["images"] = [dict(images[785], file_name="x." + ext)]
        json.dump(one, open(os.path.join(d, ext + ".json"), "w"))
        r = subprocess.run([T.SSPOSE, "data", "--ann", os.path.join(d, ext + ".json"), "--images", d, "--out",
                            os.path.join(d, ext), "--threads", "1"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "wrote 1 samples" in r.stdout, r.stdout + r.stderr
        outs.append(h5py.File(os.path.join(d, ext + "-00000.h5"), "r"))
    a, b = outs
    for name in ("heatmap", "paf", "offset", "attention", "mask", "keypoints"):
        assert np.array_equal(a[name][:], b[name][:]), name
    ia = np.array(Image.open(io.BytesIO(a["jpeg"][0].tobytes())), np.float32)
    ib = np.array(Image.open(io.BytesIO(b["jpeg"][0].tobytes())), np.float32)
    assert np.abs(ia - ib).mean() < 1.0


for fn in [test_png_source_images, test_layout_per_spec, test_keypoints_follow_meta, test_heatmap_peaks_and_offsets_at_keypoints,
           test_paf_along_limbs, test_mask_zero_over_persons_without_keypoints, test_our_reader_equals_h5py,
           test_flip_equals_numpy_mirror, test_same_bytes_for_any_thread_count, test_reader_refuses_bad_shards,
           test_file_scale_is_used, test_plain_chunks_read_too]:
    T.run(fn)
T.end()
