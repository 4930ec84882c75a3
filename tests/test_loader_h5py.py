"""The loader on shards written by h5py from SPEC section 5 alone, checked against numpy:
dequantisation, the SPEC's left/right mirror tables, rank shares, and bad input."""
import io
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H

TOOL = os.path.join(os.environ.get("SSPOSE_BUILD", "build"), "tests", "tool_loader")
S, FD = 32, 8
G = S // FD
KP_MIRROR = [0, 1, 5, 6, 7, 2, 3, 4, 11, 12, 13, 8, 9, 10, 15, 14, 17, 16]          # SPEC 1
LIMB_MIRROR = [3, 4, 5, 0, 1, 2, 10, 11, 12, 13, 6, 7, 8, 9, 14, 16, 15, 18, 17]    # SPEC 1
LIMBS = [(1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 2), (2, 3), (3, 4), (2, 16),
         (1, 5), (5, 6), (6, 7), (5, 17), (1, 0), (0, 14), (0, 15), (14, 16), (15, 17)]
DS = [("heatmap", np.uint8, 19, 255.0), ("paf", np.int8, 38, 127.0), ("offset", np.int8, 36, 254.0),
      ("attention", np.uint8, 19, 255.0), ("mask", np.uint8, 1, 255.0)]


def write_shard(path, n, seed, corrupt=None, fmt="sspose-shard", userblock=0):
    # the `seed` attribute is the same for every shard of a glob (the loader refuses mixed recipes); `seed` varies content
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w", userblock_size=userblock) as f:
        for k, v in dict(format=fmt, version=1, input_size=S, stride=FD, sigma=7.0, paf_width=1.0,
                         num_keypoints=18, num_limbs=19, source="h5py", seed=1, augment="none").items():
            f.attrs[k] = v
        f.attrs["limbs"] = np.array(LIMBS, dtype=np.int32)
        jp = f.create_dataset("jpeg", (n,), dtype=h5py.vlen_dtype(np.uint8))
        arrays = {}
        for name, dt, ch, q in DS:
            shape = (n, G, G) if name == "mask" else (n, ch, G, G)
            lo, hi = (-127, 128) if dt == np.int8 else (0, 256)
            a = rng.integers(lo, hi, size=shape).astype(dt)
            a[rng.random(shape) < 0.3] = 0
            d = f.create_dataset(name, data=a, chunks=(1,) + shape[1:], compression="gzip", compression_opts=1)
            d.attrs["scale"] = np.float32(1.0 / q)
            arrays[name] = a
        imgs = []
        for i in range(n):
            yy, xx = np.mgrid[0:S, 0:S]
            img = np.stack([(xx * 7 + i * 20) % 256, (yy * 5 + seed * 30) % 256, ((xx + yy) * 3) % 256], -1)
            buf = io.BytesIO()
            Image.fromarray(img.astype(np.uint8)).save(buf, format="JPEG", quality=95)
            b = np.frombuffer(buf.getvalue(), np.uint8)
            if corrupt is not None and i in corrupt:
                b = b.copy()
                b[len(b) // 3:] = 0x55  # keep the header, garble the scan
            jp[i] = b
            imgs.append(None if corrupt is not None and i in corrupt else
                        np.asarray(Image.open(io.BytesIO(b.tobytes())).convert("RGB")))
        kp = np.zeros((n, 2, 18, 3), np.float32)
        kp[:, 0, :, :2] = rng.uniform(0, S - 1, (n, 18, 2))
        kp[:, 0, :, 2] = 1
        f.create_dataset("keypoints", data=kp, chunks=(1, 2, 18, 3))
        mt = np.dtype([("image_id", "<i8"), ("person", "<i4"), ("scale", "<f4"), ("center_x", "<f4"),
                       ("center_y", "<f4"), ("rotation", "<f4"), ("flipped", "u1")])
        meta = np.zeros(n, mt)
        meta["image_id"] = np.arange(n) + 1000 * seed
        f.create_dataset("meta", data=meta)
    return arrays, imgs


SHARDS = [write_shard(os.path.join(H.TMP, f"h5py-{k}.h5"), n, k + 1) for k, n in enumerate([5, 4])]
GLOB = os.path.join(H.TMP, "h5py-*.h5")
N = 9


def reference(g, flip):
    """Sample g (shards in name order) dequantised per SPEC 5, mirrored per SPEC 1 when flip."""
    arrays, imgs = SHARDS[0] if g < 5 else SHARDS[1]
    i = g if g < 5 else g - 5
    out = {}
    for name, dt, ch, q in DS:
        a = arrays[name][i].reshape(ch, G, G).astype(np.float32) * np.float32(1.0 / q)
        if flip:
            a = a[:, :, ::-1]
            if name == "heatmap":
                a = a[KP_MIRROR + [18]]
            elif name == "paf":
                a = a[[2 * LIMB_MIRROR[c // 2] + c % 2 for c in range(38)]]
                a[0::2] *= -1
            elif name == "offset":
                a = a[[2 * KP_MIRROR[c // 2] + c % 2 for c in range(36)]]
                a[0::2] *= -1
            elif name == "attention":
                a = a[LIMB_MIRROR]
        out[name] = a
    img = imgs[i].astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5
    out["image"] = img[:, :, ::-1] if flip else img
    return out


def run_tool(*args, check=True, glob=None):
    r = subprocess.run([TOOL, "--glob", glob or GLOB] + [str(a) for a in args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"tool_loader failed: {r.stderr.strip()}")
    return r


def read_dump(path, batch, steps):
    per = 3 * S * S + (19 + 38 + 36 + 19 + 1) * G * G
    rec = np.dtype([("index", "<i8"), ("flipped", "u1"), ("data", "<f4", (per,))])
    d = np.fromfile(path, dtype=rec)
    assert len(d) == batch * steps, (len(d), batch * steps)
    return d


def split(data):
    out, o = {}, 0
    for name, size in [("image", 3 * S * S), ("heatmap", 19 * G * G), ("paf", 38 * G * G), ("offset", 36 * G * G),
                       ("attention", 19 * G * G), ("mask", G * G)]:
        out[name] = data[o:o + size]
        o += size
    return out


def test_matches_numpy_reference():
    dump = os.path.join(H.TMP, "dump.bin")
    run_tool("--batch", 3, "--steps", 6, "--seed", 4, "--flip", 0.5, "--threads", 2, "--dump", dump)
    d = read_dump(dump, 3, 6)
    assert 2 <= d["flipped"].sum() <= 16, d["flipped"].sum()
    for rec in d:
        got, ref = split(rec["data"]), reference(int(rec["index"]), rec["flipped"])
        for name in ["heatmap", "paf", "offset", "attention", "mask"]:
            assert np.allclose(got[name], ref[name].ravel(), rtol=1e-6, atol=1e-7), (name, int(rec["index"]), rec["flipped"])
        # PIL and libjpeg may round the IDCT differently by a level
        assert np.abs(got["image"] - ref["image"].ravel()).max() <= 2.5 / 255, int(rec["index"])
    # 9 samples, global batch 3: each epoch of 3 steps visits every sample once
    for e in range(2):
        assert sorted(d["index"][9 * e:9 * e + 9]) == list(range(N))


def test_rank_shares_union():
    whole = run_tool("--batch", 3, "--steps", 6, "--seed", 8).stdout.splitlines()
    shares = [run_tool("--batch", 1, "--world", 3, "--rank", r, "--seed", 8, "--steps", 6).stdout.splitlines()
              for r in range(3)]
    for t in range(6):
        w = whole[t].split()[4:]
        parts = [shares[r][t].split()[4] for r in range(3)]
        assert parts == w, (t, parts, w)
        assert len(set(parts)) == 3
    # the final state lines agree too (same global position)
    assert whole[-1] == shares[0][-1] == shares[2][-1], (whole[-1], shares[0][-1])


def test_resume_from_printed_state():
    full = run_tool("--batch", 2, "--steps", 9, "--seed", 2).stdout.splitlines()
    first = run_tool("--batch", 2, "--steps", 5, "--seed", 2).stdout.splitlines()
    state = first[-1].split()[1]
    rest = run_tool("--batch", 2, "--steps", 4, "--seed", 2, "--state", state).stdout.splitlines()
    assert rest[:4] == full[5:9], (rest, full)
    assert rest[-1] == full[-1]


def bad_input(pattern, *args, glob=None):
    r = subprocess.run([TOOL, "--glob", glob or GLOB] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=60)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode not in (0,) and r.returncode < 124, f"rc={r.returncode}"
    assert len(lines) == 1, f"expected one error line, got {lines}"
    assert pattern in lines[0], f"'{lines[0]}' lacks '{pattern}'"


def test_bad_glob_no_match():
    bad_input("no shard file matches", "--batch", 1, glob=os.path.join(H.TMP, "nothing-*.h5"))


def test_glob_lists():
    a, b = os.path.join(H.TMP, "h5py-0.h5"), os.path.join(H.TMP, "h5py-1.h5")
    out = run_tool("--batch", 9, "--steps", 1, "--flip", 0, glob=f"{b},{a}").stdout.split()
    assert sorted(int(x) for x in out[4:13]) == list(range(9))
    bad_input("no shard file matches", "--batch", 1, glob=f"{a},{H.TMP}/typo-*.h5")
    bad_input("matched twice", "--batch", 1, glob=f"{a},{H.TMP}/h5py-*.h5")


def test_too_few_samples():
    bad_input("fewer than one global batch", "--batch", 5, "--world", 2)


def test_bad_resume_state():
    bad_input("not a loader state", "--batch", 1, "--state", "1,2,3,4,5,6")
    good = run_tool("--batch", 1, "--steps", 1).stdout.splitlines()[-1].split()[1].split(",")
    good[4] = "10"  # other shards
    bad_input("shards changed", "--batch", 1, "--state", ",".join(good))
    good[4] = "9"
    good[1] = "77"  # other seed
    bad_input("seed", "--batch", 1, "--state", ",".join(good))


def test_not_a_shard():
    d = os.path.join(H.TMP, "bad")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "x.h5"), "w").write("not hdf5")
    bad_input("not an HDF5 file", "--batch", 1, glob=os.path.join(d, "*.h5"))
    write_shard(os.path.join(d, "y.h5"), 3, 1, fmt="other")
    bad_input("format", "--batch", 1, glob=os.path.join(d, "y.h5"))


def test_corrupt_jpeg_in_worker():
    """A sample that fails to decode in a worker thread ends the run with one line naming it."""
    p = os.path.join(H.TMP, "corrupt.h5")
    write_shard(p, 4, 3, corrupt={2})
    for threads in (0, 3):
        bad_input("corrupt.h5 sample 2: corrupt JPEG", "--batch", 4, "--steps", 2, "--threads", threads, glob=p)
    # every sample bad: several workers fail at once, still one line
    p = os.path.join(H.TMP, "allbad.h5")
    write_shard(p, 12, 3, corrupt=set(range(12)))
    for rep in range(5):
        bad_input("corrupt JPEG", "--batch", 12, "--steps", 1, "--threads", 4, "--prefetch", 3, glob=p)


def test_file_scale_is_used():
    """Targets are dequantised with each file's own scale attribute, as the reader does."""
    p = os.path.join(H.TMP, "scaled.h5")
    shutil.copy(os.path.join(H.TMP, "h5py-0.h5"), p)
    with h5py.File(p, "r+") as f:
        f["heatmap"].attrs["scale"] = np.float32(0.5 / 255)
        f["paf"].attrs["scale"] = np.float32(2.0 / 127)
    dump = os.path.join(H.TMP, "scaled.bin")
    run_tool("--batch", 5, "--steps", 2, "--seed", 3, "--flip", 0.5, "--dump", dump, glob=p)
    d = read_dump(dump, 5, 2)
    assert 0 < d["flipped"].sum() < 10
    for rec in d:
        g, fl = int(rec["index"]), rec["flipped"]
        got, ref = split(rec["data"]), reference(g, fl)
        arrays = SHARDS[0][0]
        hm = arrays["heatmap"][g].astype(np.float32) * np.float32(0.5 / 255)
        pf = arrays["paf"][g].astype(np.float32) * np.float32(2.0 / 127)
        if fl:
            hm = hm[KP_MIRROR + [18], :, ::-1]
            pf = pf[[2 * LIMB_MIRROR[c // 2] + c % 2 for c in range(38)], :, ::-1]
            pf[0::2] *= -1
        assert np.array_equal(got["heatmap"], hm.ravel()), g
        assert np.array_equal(got["paf"], pf.ravel()), g
        assert np.allclose(got["offset"], ref["offset"].ravel(), rtol=1e-6, atol=1e-7)


def test_corrupt_chunk_in_worker():
    """A target chunk whose Adler-32 trailer or deflate data is damaged ends the run with one line."""
    for what in ("trailer", "data"):
        p = os.path.join(H.TMP, f"badz-{what}.h5")
        shutil.copy(os.path.join(H.TMP, "h5py-0.h5"), p)
        with h5py.File(p, "r+") as f:
            d = f["heatmap"]
            fm, raw = d.id.read_direct_chunk((3, 0, 0, 0))
            raw = bytearray(raw)
            if what == "trailer":
                raw[-1] ^= 0x01  # inflates fine, only the checksum tells
            else:
                raw[2:len(raw) - 4] = bytes(len(raw) - 6)
            d.id.write_direct_chunk((3, 0, 0, 0), bytes(raw), fm)
        for threads in (0, 3):
            bad_input(f"badz-{what}.h5 sample 3: corrupt heatmap chunk", "--batch", 5, "--steps", 2, "--threads", threads,
                      glob=p)


def test_userblock_file_reads_the_same():
    """With a userblock, chunk addresses are not file offsets: the loader reads through HDF5, same output."""
    d = os.path.join(H.TMP, "ub")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, "ub.h5")
    write_shard(p, 5, 1, userblock=512)
    with open(p, "rb") as f:
        assert f.read(512) == bytes(512) and f.read(8) == b"\x89HDF\r\n\x1a\n"
    a, b = os.path.join(H.TMP, "plain.bin"), os.path.join(H.TMP, "ub.bin")
    for glob, dump in ((os.path.join(H.TMP, "h5py-0.h5"), a), (p, b)):
        run_tool("--batch", 5, "--steps", 3, "--seed", 6, "--flip", 0.5, "--threads", 2, "--dump", dump, glob=glob)
    x, y = read_dump(a, 5, 3), read_dump(b, 5, 3)
    assert 0 < x["flipped"].sum() < 15
    assert np.array_equal(x["index"], y["index"]) and np.array_equal(x["flipped"], y["flipped"])
    assert np.array_equal(x["data"], y["data"])


for t in [test_matches_numpy_reference, test_rank_shares_union, test_resume_from_printed_state,
          test_bad_glob_no_match, test_glob_lists, test_too_few_samples, test_bad_resume_state, test_not_a_shard,
          test_corrupt_jpeg_in_worker, test_file_scale_is_used, test_corrupt_chunk_in_worker,
          test_userblock_file_reads_the_same]:
    H.run(t)
H.end()
