"""``pixeldrl view``: one self-contained HTML file to scrub through a result, slice by slice and step by step.

    pixeldrl predict --checkpoint C slices/ --out pred/ --save-steps --save-prob
    pixeldrl view pred/ --images slices/ --gt masks/ --out view.html

The page needs no server and no network: every slice is embedded as small PNG data URIs (the
image, the step-of-removal map, the keep-probability, the ground truth) and a few lines of
JavaScript draw them on a canvas. Controls: a slice slider, a step slider (the mask after step t is
every pixel whose removal step is 0 or later than t), the overlay (mask or keep-probability),
ground truth on/off, opacity; with ground truth, the slice's DICE after the shown step. The
arrow keys move the step (left/right) and the slice (up/down).

Size: slices larger than :data:`MAX_SIDE` pixels are shown downsampled and at most
:data:`MAX_SLICES` slices are embedded (evenly spaced); the page says so when it happens.
Written by hand because no well-kept library renders this (napari, ITK-SNAP and 3D Slicer are
desktop programs; a static page opens anywhere, including on a cluster's login node via a browser).
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pixeldrl.data.images import is_image_file, read_image, read_mask
from pixeldrl.data.volumes import is_nifti, nifti_stem, read_label_nifti, read_nifti
from pixeldrl.errors import InputError
from pixeldrl.fileio import atomic_write, printable
from pixeldrl.metrics import dice

MAX_SIDE = 384
MAX_SLICES = 200

__all__ = ["ViewSlice", "write_view", "view_folder", "MAX_SIDE", "MAX_SLICES"]


@dataclass
class ViewSlice:
    """One 2-D slice of a result, all arrays (H, W)."""

    name: str
    image: np.ndarray | None
    """Intensities (any range; shown between the 0.5 and 99.5 percentiles), or None."""
    removal: np.ndarray
    """uint8: the step each pixel was set to zero, 0 = kept to the end (``predict.removal_steps``)."""
    keep_prob: np.ndarray | None = None
    """float32 π(keep) at the deciding step, or None."""
    gt: np.ndarray | None = None
    """bool ground truth, or None."""


def _png(a: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _shrink(a: np.ndarray, factor: int) -> np.ndarray:
    """Every ``factor``-th pixel (nearest neighbour: maps keep their values, all planes their shape)."""
    return np.asarray(a)[::factor, ::factor]


def _encode(s: ViewSlice, t_max: int) -> dict:
    factor = max(1, int(np.ceil(max(s.removal.shape) / MAX_SIDE)))
    removal = _shrink(s.removal, factor).astype(np.uint8)
    out = {"name": printable(s.name), "w": int(removal.shape[1]), "h": int(removal.shape[0]), "factor": factor,
           "removal": _png(removal)}
    if s.image is not None:
        im = _shrink(np.asarray(s.image, dtype=np.float32), factor)
        lo, hi = np.percentile(im, (0.5, 99.5))
        out["image"] = _png((np.clip((im - lo) / (hi - lo + 1e-8), 0, 1) * 255).astype(np.uint8))
    if s.keep_prob is not None:
        out["prob"] = _png((np.clip(_shrink(s.keep_prob, factor), 0, 1) * 255).round().astype(np.uint8))
    if s.gt is not None:
        out["gt"] = _png(_shrink(s.gt.astype(np.uint8) * 255, factor))
        r = s.removal
        # DICE of the mask after each step t = 0 … t_max, at full resolution
        out["dice"] = [round(float(dice((r == 0) | (r > t), s.gt)), 4) for t in range(t_max + 1)]
    return out


def write_view(path: str | Path, slices: list[ViewSlice], t_max: int, title: str = "pixeldrl view") -> Path:
    """Write the viewer page for ``slices`` (see the module docstring); returns ``path``."""
    if not slices:
        raise InputError(f"{path}: nothing to show (no slices)")
    notes = []
    if len(slices) > MAX_SLICES:
        keep = np.unique(np.linspace(0, len(slices) - 1, MAX_SLICES).round().astype(int))
        notes.append(f"{len(keep)} of {len(slices)} slices shown (evenly spaced)")
        slices = [slices[i] for i in keep]
    data = {"t_max": int(t_max), "slices": [_encode(s, t_max) for s in slices]}
    shrunk = sum(d["factor"] > 1 for d in data["slices"])
    if shrunk:
        notes.append(f"{shrunk} slice(s) larger than {MAX_SIDE} px shown downsampled")
    page = (_PAGE.replace("__TITLE__", html.escape(title))
            .replace("__NOTE__", html.escape("; ".join(notes)))
            .replace("__DATA__", json.dumps(data).replace("</", "<\\/")))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- reading a prediction folder


def _files(folder: Path) -> dict[str, Path]:
    """Stem -> file for the images and NIfTI volumes directly in ``folder``."""
    out = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file():
            continue
        if is_nifti(p):
            out[nifti_stem(p)] = p
        elif is_image_file(p):
            out[p.stem] = p
    return out


def view_folder(pred: str | Path, out: str | Path, images: str | Path | None = None, gt: str | Path | None = None,
                title: str | None = None) -> Path:
    """``pixeldrl view``: the page for a ``predict --save-steps`` folder (2-D masks or NIfTI volumes),
    with the inputs (``images``) and ground truth (``gt``) matched by file name when given."""
    pred = Path(pred)
    if not pred.is_dir():
        raise InputError(f"{pred}: no such prediction folder")
    masks = _files(pred)
    if not masks:
        raise InputError(f"{pred}: no masks (PNG, TIFF or NIfTI files) in it")
    if not (pred / "removal").is_dir():
        raise InputError(f"{pred}: no removal/ maps for the step slider; run pixeldrl predict with --save-steps")
    others = {}
    for name, folder in (("images", images), ("gt", gt)):
        if folder is not None:
            if not Path(folder).is_dir():
                raise InputError(f"--{name} {folder}: no such folder")
            others[name] = _files(Path(folder))
    removal, prob = _files(pred / "removal"), _files(pred / "prob") if (pred / "prob").is_dir() else {}
    slices, t_max = [], 1
    for stem, mask_path in masks.items():
        if stem not in removal:
            raise InputError(f"{pred / 'removal'}: no removal map for {mask_path.name}; run predict with --save-steps")
        for name, found in others.items():
            if stem not in found:
                raise InputError(f"--{name}: no file for {mask_path.name} (matched by name)")
        volume = is_nifti(mask_path)
        read = (lambda f: read_nifti(f).data) if volume else read_image
        r = read(removal[stem]).astype(np.uint8)
        p = read(prob[stem]) if stem in prob else None
        im = read(others["images"][stem]) if "images" in others else None
        g = None
        if "gt" in others:
            g = (read_label_nifti(others["gt"][stem]).data > 0) if volume else read_mask(others["gt"][stem])
        final = read(mask_path) > 0
        if not np.array_equal(final, r == 0):
            raise InputError(f"{removal[stem]}: does not belong to {mask_path} (its kept pixels differ from the mask)")
        t_max = max(t_max, int(r.max()))
        if not volume:
            slices.append(ViewSlice(mask_path.name, im, r, p, g))
            continue
        for z in range(r.shape[2]):
            image = None if im is None else (im[:, :, z] if im.ndim == 3 else im[:, :, z, 0])
            slices.append(ViewSlice(f"{mask_path.name} z={z}", image, r[:, :, z],
                                    None if p is None else p[:, :, z], None if g is None else g[:, :, z]))
    for s in slices:
        for what, a in (("--images", s.image), ("--gt", s.gt)):
            if a is not None and a.shape != s.removal.shape:
                raise InputError(f"{what}: {s.name} has shape {a.shape}, its mask {s.removal.shape}")
    return write_view(out, slices, t_max, title or f"pixeldrl view: {pred}")


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 16px; background: #111; color: #ddd; }
 h1 { font-size: 16px; margin: 0 0 4px; } #note { color: #e9b96e; margin: 0 0 8px; min-height: 1em; }
 .controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; margin-bottom: 10px; }
 canvas { image-rendering: pixelated; background: #000; width: 512px; max-width: 95vw; border: 1px solid #444; }
 #info { margin-top: 6px; font-variant-numeric: tabular-nums; }
 .legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
</style></head>
<body>
<h1>__TITLE__</h1><p id="note">__NOTE__</p>
<div class="controls">
 <label>slice <input type="range" id="slice" min="0" value="0"> <span id="sliceLabel"></span></label>
 <label>step <input type="range" id="step" min="0" value="0"> <span id="stepLabel"></span></label>
 <label>overlay <select id="layer"><option value="mask">mask after the step</option>
   <option value="prob">keep-probability</option><option value="none">none</option></select></label>
 <label><input type="checkbox" id="showGt" checked> ground truth</label>
 <label>opacity <input type="range" id="opacity" min="0" max="100" value="45"></label>
</div>
<canvas id="view" width="1" height="1"></canvas>
<div id="info"></div>
<div class="legend"><span style="background:#f33"></span>mask<span style="background:#3f3"></span>ground truth
 <span style="background:linear-gradient(90deg,#00f,#f00)"></span>π(keep) 0 → 1</div>
<script>
"use strict";
const DATA = __DATA__;
const $ = (id) => document.getElementById(id);
const cache = new Map();
function decode(uri) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = img.width; c.height = img.height;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const px = g.getImageData(0, 0, img.width, img.height).data;
      const out = new Uint8Array(img.width * img.height);
      for (let i = 0; i < out.length; i++) out[i] = px[4 * i];
      resolve(out);
    };
    img.onerror = () => reject(new Error("cannot decode an embedded image"));
    img.src = uri;
  });
}
async function planes(i) {
  if (!cache.has(i)) {
    const s = DATA.slices[i];
    const keys = ["image", "removal", "prob", "gt"].filter((k) => s[k]);
    const arrays = await Promise.all(keys.map((k) => decode(s[k])));
    cache.set(i, Object.fromEntries(keys.map((k, j) => [k, arrays[j]])));
  }
  return cache.get(i);
}
let drawing = 0;
async function draw() {
  const ticket = ++drawing;
  const i = +$("slice").value, t = +$("step").value, s = DATA.slices[i];
  const p = await planes(i);
  if (ticket !== drawing) return;  // a newer request is on its way
  const cv = $("view");
  cv.width = s.w; cv.height = s.h;
  const g = cv.getContext("2d");
  const im = g.createImageData(s.w, s.h), px = im.data;
  const a = +$("opacity").value / 100, layer = $("layer").value, gt = $("showGt").checked && p.gt;
  let kept = 0;
  for (let k = 0; k < s.w * s.h; k++) {
    const v = p.image ? p.image[k] : 0;
    let r = v, gr = v, b = v;
    const inMask = p.removal[k] === 0 || p.removal[k] > t;
    if (inMask) kept++;
    if (layer === "mask" && inMask) { r = (1 - a) * r + a * 255; gr = (1 - a) * gr + a * 40; b = (1 - a) * b + a * 40; }
    if (layer === "prob" && p.prob) { const q = p.prob[k]; r = (1 - a) * r + a * q; gr = (1 - a) * gr; b = (1 - a) * b + a * (255 - q); }
    if (gt && p.gt[k]) {
      const edge = (k % s.w > 0 && !p.gt[k - 1]) || (k % s.w < s.w - 1 && !p.gt[k + 1]) ||
                   (k >= s.w && !p.gt[k - s.w]) || (k < s.w * (s.h - 1) && !p.gt[k + s.w]);
      if (edge) { r = 40; gr = 255; b = 40; }
    }
    px[4 * k] = r; px[4 * k + 1] = gr; px[4 * k + 2] = b; px[4 * k + 3] = 255;
  }
  g.putImageData(im, 0, 0);
  $("sliceLabel").textContent = `${i + 1} / ${DATA.slices.length}: ${s.name}`;
  $("stepLabel").textContent = t === 0 ? "0 (start: every pixel kept)" : `${t} / ${DATA.t_max}`;
  const frac = (100 * kept / (s.w * s.h)).toFixed(1);
  $("info").textContent = `after step ${t}: ${frac} % of the pixels kept` +
    (s.dice ? ` · DICE ${s.dice[Math.min(t, s.dice.length - 1)].toFixed(3)}` : "") +
    (s.factor > 1 ? ` · shown at 1/${s.factor} size` : "");
  document.body.dataset.drawn = `${i}:${t}:${layer}`;
}
$("slice").max = DATA.slices.length - 1;
$("step").max = DATA.t_max;
$("step").value = DATA.t_max;
if (!DATA.slices.some((s) => s.prob)) $("layer").querySelector('[value="prob"]').disabled = true;
for (const id of ["slice", "step", "layer", "showGt", "opacity"]) $(id).addEventListener("input", draw);
document.addEventListener("keydown", (e) => {
  const move = { ArrowLeft: ["step", -1], ArrowRight: ["step", 1], ArrowUp: ["slice", 1], ArrowDown: ["slice", -1] }[e.key];
  if (!move) return;
  const el = $(move[0]);
  el.value = Math.max(+el.min, Math.min(+el.max, +el.value + move[1]));
  draw();
});
draw();
</script>
</body></html>
"""
