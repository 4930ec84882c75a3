"""sspose plot, checked on its pictures: synthetic metrics.jsonl files with known
curves (and one from a real short `sspose train`), drawn, the PNG decoded here
(zlib/struct/numpy, no imaging library), and the pixels of each curve looked
for where --dump-layout's panel boxes and axis ranges put its values."""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import pyharness as H

T = os.path.join(H.TMP, "plot")
os.makedirs(T, exist_ok=True)
TERMS = ["heat", "paf", "offset", "ps", "kl"]
WEIGHTS = {"heat": 9, "paf": 10, "offset": 1, "ps": 1, "kl": 1}


# ---------------------------------------------------------------- helpers

def sspose(*args):
    p = subprocess.run([H.SSPOSE, *map(str, args)], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def plot(*args):
    rc, out, err = sspose("plot", *args)
    assert rc == 0, f"sspose plot {' '.join(map(str, args))}: exit {rc}: {err.strip()[:400]}"
    return out, err


def row(step, loss, lr=1e-5, stages=2, **extra):
    """A metrics line shaped like trainer/metrics.c's; the terms share `loss` by weight."""
    share = loss / (stages * sum(WEIGHTS.values())) if loss is not None else None
    r = {"step": step, "epoch": step // 100, "lr": lr, "loss": loss,
         "terms": {f"stage{s}": {t: share for t in TERMS} for s in range(1, stages + 1)},
         "weights": WEIGHTS, "grad_norm": 100.0 + step, "samples_per_s": 17.0, "skipped": 0,
         "time": {"data": 0.01, "compute": 0.4, "comm": 0.05, "step": 0.46}}
    r.update(extra)
    return r


def write_run(d, rows, config=None, tail=""):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "metrics.jsonl"), "w") as f:
        for r in rows:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
        f.write(tail)
    if config is not None:
        with open(os.path.join(d, "config.ini"), "w") as f:
            f.writelines(f"{k} = {v}\n" for k, v in config.items())
    return d


def png_chunks(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xffffffff == crc, f"bad CRC in {kind}"
        chunks.append((kind, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", "chunk order"
    return chunks


def read_png(path, pixels=True):
    """(width, height, RGB array or None): a complete decode (all five row filters)."""
    chunks = png_chunks(open(path, "rb").read())
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = w * bpp
    assert len(raw) == h * (stride + 1), "pixel data size"
    if not pixels:
        return w, h, None
    img = np.zeros((h, stride), np.int32)
    prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if f == 0:
            cur = line
        elif f == 1:  # Sub: a running sum per channel
            cur = np.cumsum(line.reshape(w, bpp), axis=0).reshape(-1) & 255
        elif f == 2:
            cur = (line + prev) & 255
        elif f in (3, 4):
            cur = np.zeros(stride, np.int32)
            a = np.zeros(bpp, np.int32)
            for x in range(w):
                s = slice(x * bpp, x * bpp + bpp)
                b = prev[s]
                if f == 3:
                    v = (line[s] + ((a + b) >> 1)) & 255
                else:
                    c = prev[x * bpp - bpp:x * bpp] if x else np.zeros(bpp, np.int32)
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
                    v = (line[s] + pred) & 255
                cur[s] = v
                a = v
        else:
            raise AssertionError(f"bad filter {f} in row {y}")
        img[y] = cur
        prev = cur
    return w, h, img.reshape(h, w, bpp)[:, :, :3]


def rgb(hexcolour):
    return np.array([int(hexcolour[i:i + 2], 16) for i in (1, 3, 5)], float)


def colour_mask(img, colour, min_alpha=0.55, tol=32.0):
    """Pixels that are `colour` drawn over white with at least min_alpha coverage (anti-aliased edges count)."""
    white = np.array([255.0, 255, 255])
    d = colour - white
    px = img.astype(float) - white
    a = (px @ d) / (d @ d)
    resid = np.linalg.norm(px - a[..., None] * d, axis=-1)
    return (a >= min_alpha) & (resid <= tol)


def to_px(panel, x, y):
    """Where the figure puts the value (x, y): pixel column and row (from --dump-layout)."""
    x0, y0, x1, y1 = panel["box"]
    ax, ay = panel["x"], panel["y"]

    def frac(a, v):
        if a["log"]:
            return (math.log10(v) - math.log10(a["lo"])) / (math.log10(a["hi"]) - math.log10(a["lo"]))
        return (v - a["lo"]) / (a["hi"] - a["lo"])
    return x0 + frac(ax, x) * (x1 - x0), y1 - frac(ay, y) * (y1 - y0)


def near(mask, px, py, r=2):
    c, rr = int(math.floor(px)), int(math.floor(py))
    return mask[max(rr - r, 0):rr + r + 1, max(c - r, 0):c + r + 1].any()


def panel_of(layout, metric):
    ps = [p for p in layout["panels"] if p["metric"] == metric]
    assert ps, f"no panel '{metric}' in {[p['metric'] for p in layout['panels']]}"
    return ps[0]


def series_of(panel, run=0, quantity=None):
    ss = [s for s in panel["series"] if s["run"] == run and (quantity is None or s["quantity"] == quantity)]
    assert len(ss) == 1, f"series run {run} {quantity}: {len(ss)} found"
    return ss[0]


def check_curve(img, panel, colour, xs, ys, where):
    """Each point's pixel region holds the colour, and along the curve, between the
    points, the colour lies only close to the straight segment joining them."""
    mask = colour_mask(img, rgb(colour))
    pts = [to_px(panel, x, y) for x, y in zip(xs, ys)]
    missing = [(x, y) for (x, y), (px, py) in zip(zip(xs, ys), pts) if not near(mask, px, py)]
    assert not missing, f"{where}: no {colour} pixels at {len(missing)} of {len(pts)} points, e.g. {missing[:3]}"
    x0, y0, x1, y1 = [int(round(v)) for v in panel["box"]]
    checked = 0
    for (ax, ay), (bx, by) in zip(pts, pts[1:]):
        for c in range(int(math.ceil(ax)) + 1, int(math.floor(bx)) - 1):
            col = mask[y0 + 2:y1 - 2, c]
            if not col.any():
                continue
            t = (c + 0.5 - ax) / (bx - ax)
            lo, hi = sorted((ay + (by - ay) * max(t - 1.5 / max(bx - ax, 1), 0), ay + (by - ay) * min(t + 1.5 / max(bx - ax, 1), 1)))
            rows = np.nonzero(col)[0] + y0 + 2 + 0.5
            bad = rows[(rows < lo - 3) | (rows > hi + 3)]
            assert bad.size == 0, f"{where}: {colour} pixels off the curve in column {c}: rows {bad[:5]} not in [{lo:.1f}, {hi:.1f}]"
            checked += 1
    assert checked > 10, f"{where}: only {checked} columns between points checked"


# ---------------------------------------------------------------- tests

STEPS = list(range(10, 510, 10))
LOSS = [1000 * 0.98 ** s for s in STEPS]


def known_run():
    return write_run(os.path.join(T, "known"), [row(s, v, lr=1e-5 * (s / 500)) for s, v in zip(STEPS, LOSS)],
                     {"train.steps": 500, "loss.alpha": 10})


def test_known_curve_pixels():
    d = known_run()
    out, lay = os.path.join(T, "known.png"), os.path.join(T, "known.json")
    plot(d, "--out", out, "--metric", "loss,lr", "--size", "1000x360", "--dump-layout", lay)
    L = json.load(open(lay))
    w, h, img = read_png(out)
    assert (w, h) == (1000, 360) == (L["width"], L["height"]), (w, h, L["width"], L["height"])
    loss, lr = panel_of(L, "loss"), panel_of(L, "lr")
    assert loss["y"]["log"] and not lr["y"]["log"], "loss is log by default, lr linear"
    assert loss["y"]["lo"] <= min(LOSS) and loss["y"]["hi"] >= max(LOSS), loss["y"]
    assert loss["x"]["lo"] <= 10 and loss["x"]["hi"] >= 500, loss["x"]
    # round ticks: decades on the log axis, multiples of a round step on x
    for t in loss["y"]["ticks"]:
        assert abs(math.log10(t) - round(math.log10(t))) < 1e-9 or len(loss["y"]["ticks"]) >= 3, t
    xt = loss["x"]["ticks"]
    assert all(abs(t - round(t)) < 1e-9 for t in xt) and len(set(np.diff(xt))) == 1, xt
    s = series_of(loss)
    assert s["points"] == len(STEPS) and s["nonfinite"] == 0, s
    check_curve(img, loss, s["colour"], STEPS, LOSS, "loss")
    check_curve(img, lr, series_of(lr)["colour"], STEPS, [1e-5 * st / 500 for st in STEPS], "lr")
    # nothing drawn in the curve's colour outside the plot boxes (apart from no legend: one run)
    mask = colour_mask(img, rgb(s["colour"]))
    for p in (loss, lr):
        x0, y0, x1, y1 = [int(round(v)) for v in p["box"]]
        mask[y0 - 1:y1 + 2, x0 - 1:x1 + 2] = False
    assert not mask.any(), f"{mask.sum()} curve-coloured pixels outside the plot boxes"


def test_two_runs_legend_and_colours():
    a = write_run(os.path.join(T, "sweep", "alpha5"), [row(s, 500 * 0.99 ** s) for s in STEPS],
                  {"data.train": "/a/*.h5", "train.steps": 500, "loss.alpha": 5, "train.lr": "1.0000000000000001e-05",
                   "train.seed": 1})
    b = write_run(os.path.join(T, "sweep", "alpha10"), [row(s, 2000 * 0.97 ** s) for s in STEPS[:30]],
                  {"data.train": "/b/*.h5", "train.steps": 500, "loss.alpha": 10, "train.lr": "1e-5", "train.seed": 1})
    out, lay = os.path.join(T, "two.png"), os.path.join(T, "two.json")
    plot(a, b, "--out", out, "--metric", "loss,terms", "--size", "1100x420", "--dump-layout", lay)
    L = json.load(open(lay))
    _, _, img = read_png(out)
    runs = L["runs"]
    assert [r["name"] for r in runs] == ["alpha5", "alpha10"], runs
    # the legend names the values that differ, not the ones that agree (lr written two ways is one
    # value), loss keys before data paths
    assert runs[0]["config_diff"] == ["alpha=5", "train=/a/*.h5"], runs[0]
    assert runs[1]["config_diff"] == ["alpha=10", "train=/b/*.h5"], runs[1]
    assert "alpha=5" in runs[0]["label"] and "lr" not in runs[0]["label"], runs[0]["label"]
    c0, c1 = runs[0]["colour"], runs[1]["colour"]
    assert c0 != c1 and np.abs(rgb(c0) - rgb(c1)).sum() > 150, (c0, c1)
    loss = panel_of(L, "loss")
    assert series_of(loss, 0)["colour"] == c0 and series_of(loss, 1)["colour"] == c1
    check_curve(img, loss, c0, STEPS, [500 * 0.99 ** s for s in STEPS], "run 0")
    check_curve(img, loss, c1, STEPS[:30], [2000 * 0.97 ** s for s in STEPS[:30]], "run 1")
    # each legend entry shows its run's colour, and the legend sits above the panels
    for r in runs:
        x0, y0, x1, y1 = [int(round(v)) for v in r["legend_box"]]
        assert colour_mask(img, rgb(r["colour"]))[y0:y1, x0:x1].sum() >= 20, f"legend entry of {r['name']}"
        assert y1 <= min(p["cell"][1] for p in L["panels"]) + 1
    # terms: one panel, colour by run, dash by term, with a legend of the dashes
    terms = panel_of(L, "terms")
    assert len(terms["series"]) == 10 and terms["legend"] is not None, terms["series"]
    assert {s["dash"] for s in terms["series"] if s["run"] == 0} == set(range(5))
    # runs ended before train.steps (run 1 logged 300 of 500) are flagged
    assert not runs[0]["ended_early"] and runs[1]["ended_early"], runs


def test_nan_gap_and_marker():
    ys = [100.0 - s / 10 for s in STEPS]
    rows = [row(s, v) for s, v in zip(STEPS, ys)]
    bad = {200, 210, 220}
    lines = []
    for r in rows:
        if r["step"] in bad:
            # what metrics.c writes for an all-skipped window (cJSON: NaN -> null), and Python's NaN token
            r["loss"] = None if r["step"] != 210 else float("nan")
        lines.append(json.dumps(r))
    d = write_run(os.path.join(T, "nan"), lines)
    out, lay = os.path.join(T, "nan.png"), os.path.join(T, "nan.json")
    plot(d, "--out", out, "--metric", "loss", "--linear", "--size", "700x380", "--dump-layout", lay)
    L = json.load(open(lay))
    _, _, img = read_png(out)
    p = panel_of(L, "loss")
    s = series_of(p)
    assert s["points"] == len(STEPS) and s["nonfinite"] == 3, s
    mask = colour_mask(img, rgb(s["colour"]))
    x0, y0, x1, y1 = p["box"]
    # no line across the gap: columns strictly between steps 190 and 230 are empty below the marker strip
    ca, cb = to_px(p, 190, 1)[0], to_px(p, 230, 1)[0]
    gap = mask[int(y0) + 14:int(y1) - 1, int(ca) + 3:int(cb) - 2]
    assert not gap.any(), f"{gap.sum()} line pixels inside the NaN gap"
    # a cross on the top edge at each non-finite step
    for st in sorted(bad):
        px = to_px(p, st, 1)[0]
        assert near(mask[:int(y0) + 14], px, y0 + 6, 3), f"no NaN marker at step {st}"
    good = [(x, y) for x, y in zip(STEPS, ys) if x not in bad]
    check_curve(img, p, s["colour"], [x for x, _ in good if x < 200], [y for x, y in good if x < 200], "before the gap")


def test_log_scale_zero_and_negative():
    vals = [10.0 ** (1 - i / 10) if i % 7 else (0.0 if i % 2 else -3.0) for i in range(len(STEPS))]
    d = write_run(os.path.join(T, "nonpos"), [{"step": s, "loss": v} for s, v in zip(STEPS, vals)])
    out, lay = os.path.join(T, "nonpos.png"), os.path.join(T, "nonpos.json")
    _, err = plot(d, "--out", out, "--dump-layout", lay, "--size", "700x380")
    hidden = sum(v <= 0 for v in vals)
    assert f"{hidden} values <= 0 left out of the log scale" in err, err
    L = json.load(open(lay))
    assert [p["metric"] for p in L["panels"]] == ["loss"], "panels without data are left out"
    p = panel_of(L, "loss")
    assert p["y"]["log"] and p["y"]["lo"] > 0, p["y"]
    pos = [(x, v) for x, v in zip(STEPS, vals) if v > 0]
    _, _, img = read_png(out)
    mask = colour_mask(img, rgb(series_of(p)["colour"]))
    for x, v in pos:
        assert near(mask, *to_px(p, x, v)), f"positive value at step {x} not drawn"
    # all values <= 0 on a log axis: drawn linear, with a warning
    d2 = write_run(os.path.join(T, "allneg"), [{"step": s, "loss": -1.0 * s} for s in STEPS])
    _, err = plot(d2, "--out", os.path.join(T, "allneg.png"), "--dump-layout", lay)
    assert "no positive values for a log scale; drawn linear" in err, err
    assert not json.load(open(lay))["panels"][0]["y"]["log"]


def test_partial_and_malformed_lines():
    rows = [json.dumps(row(s, 50.0)) for s in STEPS[:20]]
    rows.insert(3, '{"step": 35, "loss": 1')          # damaged mid-file
    rows.insert(8, "not json at all \x01\x02")
    rows.insert(9, '{"loss": 3}')                     # JSON, but no step
    d = write_run(os.path.join(T, "partial"), rows, tail='{"step": 210, "epoch": 2, "lr": 1e-05, "lo')
    out, lay = os.path.join(T, "partial.png"), os.path.join(T, "partial.json")
    _, err = plot(d, "--out", out, "--dump-layout", lay)
    lines = [l for l in err.splitlines() if l.strip()]
    assert any("ignored a partly written last line" in l for l in lines), err
    assert any("skipped 3 malformed lines (the first at line 4)" in l for l in lines), err
    assert all(l.startswith("sspose: warning: ") for l in lines), err
    r = json.load(open(lay))["runs"][0]
    assert r["rows"] == 20 and r["malformed"] == 3 and r["partial_last"] and r["last_step"] == 200, r
    read_png(out, pixels=False)


def test_default_panels_real_layout():
    d = known_run()
    out, lay = os.path.join(T, "all.png"), os.path.join(T, "all.json")
    plot(d, "--out", out, "--dump-layout", lay)
    L = json.load(open(lay))
    assert [p["metric"] for p in L["panels"]] == ["loss", "weighted", "terms", "last-stage", "lr", "grad_norm",
                                                    "samples_per_s", "time"], [p["metric"] for p in L["panels"]]
    w, h, _ = read_png(out, pixels=False)
    assert (w, h) == (L["width"], L["height"]) and w > 1000 and h > 1000, (w, h)
    # panels tile the figure without overlapping
    boxes = [p["cell"] for p in L["panels"]]
    for i, a in enumerate(boxes):
        assert 0 <= a[0] < a[2] <= w and 0 <= a[1] < a[3] <= h, a
        for b in boxes[:i]:
            assert a[2] <= b[0] + 1e-6 or b[2] <= a[0] + 1e-6 or a[3] <= b[1] + 1e-6 or b[3] <= a[1] + 1e-6, (a, b)
    terms = panel_of(L, "terms")
    assert [s["quantity"] for s in terms["series"]] == TERMS, terms["series"]
    assert len({s["colour"] for s in terms["series"]}) == 5, "one run: a colour per term"
    assert [s["quantity"] for s in panel_of(L, "time")["series"]] == ["data", "compute", "comm"]


def test_svg_and_pdf():
    d = known_run()
    svg, pdf = os.path.join(T, "fig.svg"), os.path.join(T, "fig.pdf")
    plot(d, "--out", svg, "--metric", "loss,terms", "--size", "900x400")
    root = ET.parse(svg).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
    assert root.get("width", "").startswith("900") and root.get("height", "").startswith("400"), root.attrib
    assert len(root.findall(".//{http://www.w3.org/2000/svg}path")) > 10, "no paths in the SVG"
    plot(d, "--out", pdf, "--metric", "loss")
    data = open(pdf, "rb").read()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF") and b"/Page" in data, data[:20]
    # upper-case extension, scale 2: twice the pixels, boxes scaled alike
    big, lay = os.path.join(T, "BIG.PNG"), os.path.join(T, "big.json")
    plot(d, "--out", big, "--metric", "loss", "--size", "400x300", "--scale", "2", "--dump-layout", lay)
    w, h, _ = read_png(big, pixels=False)
    L = json.load(open(lay))
    assert (w, h) == (800, 600) and L["panels"][0]["box"][2] > 400, (w, h, L["panels"][0]["box"])
    left = [f for f in os.listdir(T) if ".tmp" in f]
    assert not left, f"temporary files left: {left}"


def test_smooth_and_time_axis():
    ys = [100 + (30 if i % 2 else -30) for i in range(len(STEPS))]
    rows = [row(s, y) for s, y in zip(STEPS, ys)]
    for r in rows:
        r["time"]["step"] = 0.5
    d = write_run(os.path.join(T, "noisy"), rows)
    out, lay = os.path.join(T, "smooth.png"), os.path.join(T, "smooth.json")
    _, _ = plot(d, "--out", out, "--metric", "loss", "--linear", "--smooth", "9", "--size", "700x380",
                "--dump-layout", lay, "--x", "time")
    L = json.load(open(lay))
    p = panel_of(L, "loss")
    assert L["smooth"] == 9 and L["x"]["unit"] == "min" and L["x"]["seconds_per_unit"] == 60, L["x"]
    # x = logged steps x step time: 500 steps of 0.5 s = 250 s = 4.17 min
    assert abs(p["x"]["lo"] - 5 / 60) < 0.2 and abs(p["x"]["hi"] - 250 / 60) < 0.2, p["x"]
    _, _, img = read_png(out)
    colour = rgb(series_of(p)["colour"])
    strong = colour_mask(img, colour, min_alpha=0.8)
    faint = colour_mask(img, colour, min_alpha=0.1) & ~colour_mask(img, colour, min_alpha=0.5)
    # the averaged curve runs along 100 (+-30/9 at most); the raw zig-zag stays, faint
    for i in range(10, 40, 5):
        t = STEPS[i] * 0.5 / 60
        px, py = to_px(p, t, 100)
        tol = abs(to_px(p, t, 100 + 30 / 9)[1] - py) + 3
        col = np.nonzero(strong[:, int(px)])[0]
        assert col.size and abs(np.median(col) - py) <= tol, f"smoothed curve at t={t:.2f}: rows {col[:8]}, want {py:.0f}"
    assert faint.sum() > 200, "the raw curve is not drawn faintly"


def test_steps_range_and_names():
    d1 = write_run(os.path.join(T, "nest", "a", "run"), [row(s, 10.0) for s in STEPS], {"train.seed": 1})
    d2 = write_run(os.path.join(T, "nest", "b", "run"), [row(s, 20.0) for s in STEPS], {"train.seed": 2})
    lay = os.path.join(T, "nest.json")
    plot(d1, d2 + "/", "--out", os.path.join(T, "nest.png"), "--metric", "loss", "--steps", "100:200",
         "--dump-layout", lay)
    L = json.load(open(lay))
    assert [r["name"] for r in L["runs"]] == [d1, d2], "same folder names: the paths tell them apart"
    assert L["runs"][0]["config_diff"] == ["seed=1"], L["runs"][0]
    p = panel_of(L, "loss")
    assert 95 <= p["x"]["lo"] <= 100 and 200 <= p["x"]["hi"] <= 205, p["x"]
    assert all(s["points"] == 11 for s in p["series"]), p["series"]
    # a metrics file named directly, and a metrics key as the metric
    plot(os.path.join(d1, "metrics.jsonl"), "--out", os.path.join(T, "direct.svg"), "--metric", "time.step,stage2,paf")


def test_long_run_decimated():
    """A long run: 20000 points; what falls in one pixel column is thinned, extremes kept."""
    steps = list(range(1, 20001))
    ys = [100.0 + (i % 7) for i in range(len(steps))]
    spike = 12345
    ys[spike - 1] = 1000.0
    d = write_run(os.path.join(T, "long"), [{"step": s, "loss": y} for s, y in zip(steps, ys)])
    svg, out, lay = os.path.join(T, "long.svg"), os.path.join(T, "long.png"), os.path.join(T, "long.json")
    plot(d, "--out", svg, "--metric", "loss", "--linear", "--size", "600x360")
    assert os.path.getsize(svg) < 400_000, f"SVG of {os.path.getsize(svg)} bytes for 20000 points"
    plot(d, "--out", out, "--metric", "loss", "--linear", "--size", "600x360", "--dump-layout", lay)
    p = panel_of(json.load(open(lay)), "loss")
    _, _, img = read_png(out)
    mask = colour_mask(img, rgb(series_of(p)["colour"]))
    assert near(mask, *to_px(p, spike, 1000.0)), "the one-step spike was lost"
    assert near(mask, *to_px(p, 5000, 106.0)) and near(mask, *to_px(p, 5000, 100.0)), "the band's edges were lost"


def test_real_training_run():
    """A metrics.jsonl from a real (tiny, 10-step) `sspose train`, plotted whole and mid-line."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    coco, shards, run = os.path.join(T, "coco"), os.path.join(T, "shards"), os.path.join(T, "trained")
    os.makedirs(shards, exist_ok=True)
    steps = [
        [H.SSPOSE, "synth", "--out", coco, "--images", "8", "--seed", "3"],
        [H.SSPOSE, "data", "--config", "configs/tiny.ini", "--set", "model.input=64", "--ann",
         os.path.join(coco, "annotations.json"), "--images", os.path.join(coco, "images"), "--out",
         os.path.join(shards, "train"), "--threads", "1", "--samples-per-shard", "16"],
        [H.SSPOSE, "train", "--config", "configs/tiny.ini", "--set", f"data.train={shards}/train-*.h5",
         "--set", "model.input=64", "--set", "model.stages=2", "--set", "train.lr=1e-5", "--set", "train.warmup=0",
         "--set", "train.batch=2", "--set", "data.threads=1", "--set", "train.log_every=2", "--set",
         "train.steps=10", "--set", "train.checkpoint_every=0", "--set", "comm.device=cpu", "--out", run],
    ]
    for cmd in steps:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert p.returncode == 0, f"{cmd[1]} failed: {p.stderr.strip()[-300:]}"
    out, lay = os.path.join(T, "trained.png"), os.path.join(T, "trained.json")
    plot(run, "--out", out, "--dump-layout", lay)
    L = json.load(open(lay))
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    assert L["runs"][0]["rows"] == len(rows) == 5 and not L["runs"][0]["ended_early"], L["runs"][0]
    metrics = [p["metric"] for p in L["panels"]]
    assert metrics == ["loss", "weighted", "terms", "last-stage", "lr", "grad_norm", "samples_per_s", "time"], metrics
    terms = panel_of(L, "terms")
    assert {s["quantity"] for s in terms["series"]} == set(rows[0]["terms"]["stage1"]), terms["series"]
    assert panel_of(L, "last-stage")["title"].endswith("(stage2)")
    _, _, img = read_png(out)
    loss = panel_of(L, "loss")
    check_curve(img, loss, series_of(loss)["colour"], [r["step"] for r in rows], [r["loss"] for r in rows], "trained loss")
    # the same run caught mid-write: the torn last line is skipped with a warning
    live = os.path.join(T, "live")
    os.makedirs(live, exist_ok=True)
    text = open(os.path.join(run, "metrics.jsonl")).read()
    open(os.path.join(live, "metrics.jsonl"), "w").write(text[:len(text) - len(text.splitlines()[-1]) // 2 - 1])
    shutil.copy(os.path.join(run, "config.ini"), live)
    _, err = plot(live, "--out", os.path.join(T, "live.png"), "--dump-layout", lay)
    assert "partly written last line" in err, err
    r = json.load(open(lay))["runs"][0]
    assert r["rows"] == 4 and r["ended_early"], r


for t in [test_known_curve_pixels, test_two_runs_legend_and_colours, test_nan_gap_and_marker,
          test_log_scale_zero_and_negative, test_partial_and_malformed_lines, test_default_panels_real_layout,
          test_svg_and_pdf, test_smooth_and_time_axis, test_steps_range_and_names, test_long_run_decimated,
          test_real_training_run]:
    H.run(t)
H.end()
