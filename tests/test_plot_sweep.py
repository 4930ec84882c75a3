"""`sspose plot` on a sweep (docs/plot.md, docs/sweeps.md): an 18-run grid
(alpha x beta x gamma) planned with `sspose sweep plan`, metrics written here.
Checked through --dump-layout and the PNG's pixels: runs in numeric order,
a legend of the swept values only (9 colour groups + 2 line styles, not 18
entries), colour by one key and line style by another, the note on totals
across different loss weights, runs without metrics left out."""
import json
import os
import random
import shutil
import subprocess

import numpy as np

from pyharness import SSPOSE, TMP, end, run

D = os.path.join(TMP, "plot_sweep")


def sh(*args, check=True):
    p = subprocess.run([SSPOSE, *args], capture_output=True, text=True)
    if check:
        assert p.returncode == 0, (args, p.stderr[-400:])
    return p


def write_metrics(path, alpha, gamma, seed):
    rng = random.Random(seed)
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
        for step in range(10, 110, 10):
            heat, paf = 100 / step + rng.random(), 50 / step + rng.random()
            f.write(json.dumps({"step": step, "loss": gamma * heat + alpha * paf, "lr": 1e-5, "grad_norm": 3.0,
                                "terms": {"stage1": {"heat": heat, "paf": paf}},
                                "weights": {"heat": gamma, "paf": alpha}}) + "\n")


def setup():
    shutil.rmtree(D, ignore_errors=True)
    sh("sweep", "plan", "--config", "configs/tiny.ini", "--out", D, "--grid", "loss.alpha=10,0,5",
       "--grid", "loss.beta=uniform,[0,.05,.15,.31,.65,1]", "--grid", "loss.gamma=9,1,5")
    man = json.load(open(os.path.join(D, "manifest.json")))
    for i, r in enumerate(man["runs"]):
        write_metrics(os.path.join(D, r["name"]), float(r["overrides"]["loss.alpha"]),
                      float(r["overrides"]["loss.gamma"]), i)
    return man


MAN = setup()


def layout(*args):
    out = os.path.join(TMP, "ps.png")
    p = sh("plot", *args, "--out", out, "--dump-layout", "-")
    return json.loads(p.stdout), out


def test_plot_sweep_runs_in_numeric_order():
    lay, _ = layout(D)
    names = [r["name"] for r in lay["runs"]]
    assert names == [r["name"] for r in MAN["runs"]] and len(names) == 18, names
    alphas = [n.split("-")[1] for n in names]
    assert alphas == ["alpha0"] * 6 + ["alpha5"] * 6 + ["alpha10"] * 6, alphas


def test_plot_sweep_counts_runs():
    p = sh("plot", D, "--out", os.path.join(TMP, "count.png"), "--metric", "loss")
    assert "1 panel, 18 runs" in p.stdout, p.stdout


def test_plot_sweep_legend_swept_keys_only():
    lay, _ = layout(D)
    items = lay["legend_items"]
    colours = [i["text"] for i in items if i["colour"]]
    styles = [i["text"] for i in items if i["colour"] is None]
    # colour: alpha x gamma in numeric order; line style: beta, the second swept key
    want = [f"alpha={a}, gamma={g}" for a in (0, 5, 10) for g in (1, 5, 9)]
    assert colours == want, colours
    assert styles == ["beta = uniform", "beta = [0,.05,.15,.31,.65,1]"], styles
    assert len(set(i["colour"] for i in items if i["colour"])) == 9
    # readable with 18 runs: the legend is a few rows, not one per run
    lg = lay["legend"]
    assert lg[3] - lg[1] <= 4 * 18 + 1, lg
    assert (lg[3] - lg[1]) / lay["height"] < 0.1, (lg, lay["height"])
    assert "title" in lay and "alpha" in lay["title"] and "18 runs" in lay["title"], lay["title"]


def test_plot_sweep_colour_and_style_by_key():
    lay, _ = layout(D)
    by_text = {i["text"]: i for i in lay["legend_items"]}
    for k, r in enumerate(MAN["runs"]):
        o = r["overrides"]
        want = by_text[f"alpha={o['loss.alpha']}, gamma={o['loss.gamma']}"]["colour"]
        assert lay["runs"][k]["colour"] == want, (r["name"], lay["runs"][k]["colour"], want)
    loss = next(p for p in lay["panels"] if p["metric"] == "loss")
    for s in loss["series"]:
        beta = MAN["runs"][s["run"]]["overrides"]["loss.beta"]
        assert s["dash"] == (0 if beta == "uniform" else 1), (s, beta)
        assert s["colour"] == lay["runs"][s["run"]]["colour"]
    metrics = [p["metric"] for p in lay["panels"]]
    assert metrics == ["loss", "heat", "paf", "grad_norm"], metrics


def read_png_rows(path, nrows):
    """The first nrows rows of an 8-bit RGBA/RGB PNG as an (nrows, w, 3) array (all five row filters)."""
    import struct
    import zlib
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    img = np.zeros((nrows, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(min(nrows, h)):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif f == 2:
            cur = (line + prev) & 255
        else:
            cur = np.zeros(stride, np.int32)
            a = np.zeros(bpp, np.int32)
            for x in range(w):
                sl = slice(x * bpp, x * bpp + bpp)
                b = prev[sl]
                if f == 3:
                    v = (line[sl] + ((a + b) >> 1)) & 255
                else:
                    c = prev[x * bpp - bpp:x * bpp] if x else np.zeros(bpp, np.int32)
                    q = a + b - c
                    pa, pb, pc = abs(q - a), abs(q - b), abs(q - c)
                    v = (line[sl] + np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))) & 255
                cur[sl] = v
                a = v
        img[y] = cur
        prev = cur
    return img.reshape(nrows, w, bpp)[:, :, :3]


def test_plot_sweep_swatches_drawn():
    lay, png = layout(D)
    img = read_png_rows(png, int(lay["legend"][3]) + 2)
    for it in lay["legend_items"]:
        if not it["colour"]:
            continue
        x0, y0, x1, y1 = it["box"]
        want = np.array([int(it["colour"][i:i + 2], 16) for i in (1, 3, 5)])
        patch = img[int(y0):int(y1) + 1, int(x0):int(x0) + 24].reshape(-1, 3)
        assert np.abs(patch - want).sum(1).min() <= 30, (it["text"], it["colour"])


def test_plot_sweep_weights_note():
    lay, _ = layout(D)
    assert "total losses do not compare" in lay["note"] and "heat" in lay["note"], lay["note"]
    lay, _ = layout(D, "--metric", "heat,paf")
    assert lay["note"] == "", lay["note"]


def test_plot_sweep_runs_given_one_by_one():
    names = [r["name"] for r in MAN["runs"]][:6]
    shuffled = names[::-1]
    lay, _ = layout(*[os.path.join(D, n) for n in shuffled])
    assert [r["name"] for r in lay["runs"]] == names, [r["name"] for r in lay["runs"]]
    assert lay["legend_items"], "runs of one sweep given one by one get the sweep legend"


def test_plot_sweep_not_started_left_out():
    os.remove(os.path.join(D, MAN["runs"][0]["name"], "metrics.jsonl"))
    try:
        p = subprocess.run([SSPOSE, "plot", D, "--out", os.path.join(TMP, "ns.png"), "--dump-layout", "-"],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert "1 of 18 runs of the sweep have no metrics yet" in p.stderr, p.stderr
        assert len(json.loads(p.stdout)["runs"]) == 17
    finally:
        write_metrics(os.path.join(D, MAN["runs"][0]["name"]), 0, 1, 0)


def test_plot_sweep_none_started():
    e = os.path.join(TMP, "plot_sweep_empty")
    shutil.rmtree(e, ignore_errors=True)
    sh("sweep", "plan", "--config", "configs/tiny.ini", "--out", e, "--grid", "loss.alpha=1,2")
    p = subprocess.run([SSPOSE, "plot", e, "--out", os.path.join(TMP, "e.png")], capture_output=True, text=True)
    lines = [l for l in p.stderr.splitlines() if l]
    assert p.returncode != 0 and len(lines) == 1 and "no run of the sweep" in lines[0], p.stderr


def test_plot_lenient_config():
    """config.ini of another version: unknown keys and sections are read, not fatal (core_config_kv)."""
    base = os.path.join(TMP, "lenient")
    shutil.rmtree(base, ignore_errors=True)
    for name, v in (("a", 1), ("b", 2)):
        d = os.path.join(base, name)
        os.makedirs(d)
        write_metrics(d, 1, 1, v)
        with open(os.path.join(d, "config.ini"), "w") as f:
            f.write(f"train.steps = 200\nloss.future_weight = {v}  # a key this build lacks\n"
                    f"[future]\nknob = {v * 10}\nnot a key line\n")
    lay, _ = layout(os.path.join(base, "a"), os.path.join(base, "b"))
    assert [r["config_steps"] for r in lay["runs"]] == [200, 200], lay["runs"]
    assert lay["runs"][1]["config_diff"] == ["future_weight=2", "knob=20"], lay["runs"][1]["config_diff"]


for t in (test_plot_lenient_config, test_plot_sweep_runs_in_numeric_order, test_plot_sweep_counts_runs, test_plot_sweep_legend_swept_keys_only,
          test_plot_sweep_colour_and_style_by_key, test_plot_sweep_swatches_drawn, test_plot_sweep_weights_note,
          test_plot_sweep_runs_given_one_by_one, test_plot_sweep_not_started_left_out, test_plot_sweep_none_started):
    run(t)
end()
