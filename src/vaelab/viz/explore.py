"""`vaelab explore`: a local page that decodes the latent point you choose, as you move it.

Standard library only: `http.server` on 127.0.0.1 (never another interface), three routes:

    GET /                      the page (inline CSS and JS, nothing fetched from elsewhere)
    GET /info                  JSON: the latent family, its size, a start point, for a 2-D
                               latent a sample of test posterior means to draw under the point
    GET /decode?z=z1,...,zD    PNG of E[x|z] (Gaussian latents)
    GET /decode?c=k1,...,kN    PNG of E[x|z] for the one-hot code of these classes (categorical)
    ...&y=K                    for a conditional model: E[x|z,y] of class K (a class selector)

A 2-D Gaussian latent is a plane to drag a point over; more dimensions get one slider each
(most active first); a categorical latent gets one class selector per variable. Requests whose
Host header is not this server's own address are refused, so other web pages cannot reach the
model through the browser (DNS rebinding).
"""

from __future__ import annotations

import json
import math
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import torch

from .grids import png_bytes
from .latent import LatentView, class_probs, latent_view, most_active, one_hot_codes

Z_LIMIT = 10.0  # decoded |z| is clamped here: far outside the prior, still finite
PLANE = 3.0  # the 2-D plane shows z in [-PLANE, PLANE]^2
MAX_POINTS = 2000  # test posterior means sent to draw under the point


class Explorer:
    """The model side: what the page needs to know, and z -> PNG."""

    def __init__(self, model, params: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        self.model = model
        self.view: LatentView = latent_view(model)
        self.lock = threading.Lock()
        self.info = self._info(params, labels)

    def _info(self, params, labels) -> dict:
        v = self.view
        info = {"kind": v.kind, "dim": v.dim, "shape": list(self.model.input_shape), "plane": PLANE}
        if self.model.conditional:  # a class selector: the image is E[x|z,y]
            info["n_labels"] = self.model.n_classes
        if v.kind == "categorical":
            info.update(n_vars=v.n_vars, n_classes=v.n_classes, start=[0] * v.n_vars)
            if params is not None and params.shape[0]:
                info["start"] = class_probs(self.model, params[:1], v).argmax(-1)[0].tolist()
            return info
        latent = self.model.latent
        with torch.inference_mode():
            mu = latent.latent_to_view(latent.mean(params)).double() if params is not None and len(params) else None
        order = list(range(v.dim))
        var: list[float | None] = [None] * v.dim
        start: list[float] = [0.0] * v.dim
        if mu is not None:
            dims, variances = most_active(mu, v.dim)
            order, var = dims.tolist(), [round(float(x), 4) for x in variances]
            start = [round(float(x), 3) for x in mu.mean(0)] if v.dim != 2 else start
            if v.dim == 2:
                pick = torch.randperm(mu.shape[0], generator=torch.Generator().manual_seed(0))[:MAX_POINTS]
                pts = mu[pick].clamp(-PLANE, PLANE)
                info["points"] = [[round(float(a), 3), round(float(b), 3)] for a, b in pts.tolist()]
                if labels is not None:
                    info["labels"] = labels[pick].tolist()
        info.update(order=order, var=var, start=start)
        return info

    def parse_label(self, query: dict[str, list[str]]) -> torch.Tensor | None:
        """The class y of a conditional model's query (y=K, default 0); None for other models."""
        if not self.model.conditional:
            return None
        raw = query.get("y", ["0"])[0]
        if not raw.isdigit() or not int(raw) < self.model.n_classes:
            raise ValueError(f"y must be a class in 0..{self.model.n_classes - 1}")
        return torch.tensor([int(raw)])

    def parse(self, query: dict[str, list[str]]) -> torch.Tensor:
        """The decoder input (1, dim) from a query string; ValueError with a message if bad."""
        v = self.view
        key = "c" if v.kind == "categorical" else "z"
        raw = query.get(key, [""])[0]
        try:
            values = [float(t) for t in raw.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"{key} must be comma-separated numbers") from None
        if v.kind == "categorical":
            if len(values) != v.n_vars or any(not x.is_integer() or not 0 <= x < v.n_classes for x in values):
                raise ValueError(f"c needs {v.n_vars} class indices in 0..{v.n_classes - 1}")
            return one_hot_codes(torch.tensor(values, dtype=torch.long)[None], v.n_classes)
        if len(values) != v.dim or not all(math.isfinite(x) for x in values):
            raise ValueError(f"z needs {v.dim} finite numbers")
        return torch.tensor(values).clamp(-Z_LIMIT, Z_LIMIT)[None]

    @torch.inference_mode()
    def decode_png(self, z: torch.Tensor, y: torch.Tensor | None = None) -> bytes:
        if self.model.conditional and y is None:
            y = torch.zeros(1, dtype=torch.long)
        with self.lock:
            label = () if y is None else (y.to(self.model.device),)
            x = self.model.decode_view(z.to(self.model.device), *label)[0].float().cpu()
        arr = x[0].numpy() if x.shape[0] == 1 else x[:3].permute(1, 2, 0).numpy()
        return png_bytes(arr)


def make_handler(explorer: Explorer, title: str):
    page = PAGE.replace("__TITLE__", json.dumps(title)[1:-1].replace("<", "\\u003c"))

    class Handler(BaseHTTPRequestHandler):
        server_version = "vaelab-explore"

        def log_message(self, format, *args):  # quiet: the terminal shows the URL, not every request
            pass

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _host_ok(self) -> bool:
            port = self.server.server_address[1]  # type: ignore[index]
            return self.headers.get("Host", "") in (f"127.0.0.1:{port}", f"localhost:{port}")

        def do_GET(self):
            if not self._host_ok():
                return self._send(HTTPStatus.FORBIDDEN, b"forbidden host\n", "text/plain")
            url = urlsplit(self.path)
            if url.path in ("/", "/index.html"):
                return self._send(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")
            if url.path == "/info":
                return self._send(HTTPStatus.OK, json.dumps(explorer.info).encode(), "application/json")
            if url.path == "/decode":
                try:
                    query = parse_qs(url.query)
                    z, y = explorer.parse(query), explorer.parse_label(query)
                except ValueError as e:
                    return self._send(HTTPStatus.BAD_REQUEST, f"{e}\n".encode(), "text/plain")
                return self._send(HTTPStatus.OK, explorer.decode_png(z, y), "image/png")
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        do_HEAD = do_GET

    return Handler


class ExploreServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        """A browser that closes or resets its connection mid-reply is normal, not an error to
        print; anything else keeps the standard report (a traceback: a bug)."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


def make_server(explorer: Explorer, port: int = 0, title: str = "vaelab explore") -> ExploreServer:
    """An HTTP server on 127.0.0.1:port (0: a free port); call serve_forever() to run it."""
    return ExploreServer(("127.0.0.1", port), make_handler(explorer, title))


def explorer_for_run(run: str | Path, *, device: str = "auto", data_dir: str | None = None):
    """The model side of `vaelab explore` (vaelab.viz.explore.Explorer), with the test posterior
    means when the data is at hand (to start from and to draw), else without."""
    from ..dataprep import load_inputs
    from ..errors import VaelabError
    from ..evaluation import condition, encode_all
    from ..runs import load_run

    cfg, model = load_run(run, device, data_dir)
    params = labels = None
    try:
        inputs = load_inputs(cfg.data, "test", expect_shape=cfg.model.input_shape)
        labels = inputs.labels
        params = encode_all(model, inputs.images, cfg.train.eval_batch_size, condition(model, labels))
    except VaelabError:
        pass
    return Explorer(model, params, labels)


PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__ — vaelab explore</title>
<style>
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2330;
       margin: 0; background: #f6f7f9; }
main { max-width: 1100px; margin: 0 auto; padding: 20px 28px; background: #fff; min-height: 100vh;
       box-sizing: border-box; box-shadow: 0 0 0 1px #e3e6eb; }
h1 { font-size: 1.4em; margin: 0 0 4px; }
.sub { color: #5b6473; margin: 0 0 18px; }
.row { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
#left { max-width: 480px; }
#plane { border: 1px solid #cfd5dd; cursor: crosshair; touch-action: none; background: #fff; }
#decoded { image-rendering: pixelated; border: 1px solid #cfd5dd; background: #000; display: block; }
.controls { max-height: 560px; overflow-y: auto; padding-right: 8px; min-width: 300px; }
.ctl { display: grid; grid-template-columns: 120px 1fr 56px; gap: 8px; align-items: center; margin: 2px 0; }
.ctl label { font-size: 0.9em; white-space: nowrap; }
.ctl output { font-variant-numeric: tabular-nums; text-align: right; font-size: 0.9em; }
.muted { color: #5b6473; font-size: 0.9em; }
#z { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.85em; color: #3d4554;
     max-width: 420px; word-break: break-all; }
button { font: inherit; padding: 2px 10px; }
</style>
</head>
<body>
<main>
<h1>__TITLE__</h1>
<p class="sub" id="how">Loading…</p>
<div class="row">
  <div id="left"></div>
  <div><img id="decoded" alt="decoded image E[x|z]"><p id="z"></p></div>
</div>
</main>
<script>
"use strict";
const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf"];
let info = null, state = [], inflight = false, pending = false, url = null;
const img = document.getElementById("decoded");

let label = 0;
function query() {
  return (info.kind === "categorical" ? "c=" : "z=") + state.map(v => info.kind === "categorical" ? v : v.toFixed(3)).join(",") +
    (info.n_labels ? "&y=" + label : "");
}
function buildLabel(left) {
  const row = document.createElement("div"); row.className = "ctl"; row.id = "label";
  const l = document.createElement("label"); l.textContent = "class y";
  const s = document.createElement("select"); s.setAttribute("aria-label", "class y");
  for (let k = 0; k < info.n_labels; k++) {
    const o = document.createElement("option"); o.value = k; o.textContent = "class " + k; s.append(o);
  }
  s.addEventListener("input", () => { label = Number(s.value); update(); });
  row.append(l, s, document.createElement("span")); left.append(row);
}
async function update() {
  if (inflight) { pending = true; return; }
  inflight = true;
  const q = query();
  try {
    const r = await fetch("/decode?" + q, {cache: "no-store"});
    if (r.ok) {
      const next = URL.createObjectURL(await r.blob());
      img.onload = () => { if (url && url !== next) URL.revokeObjectURL(url); url = next; };
      img.src = next;
      img.dataset.query = q;
      document.getElementById("z").textContent = q.replace("=", " = ");
    }
  } finally {
    inflight = false;
    if (pending) { pending = false; update(); }
  }
}
function slider(label, title, value, min, max, step, onInput) {
  const row = document.createElement("div"); row.className = "ctl";
  const l = document.createElement("label"); l.textContent = label; l.title = title;
  const s = document.createElement("input"); s.type = "range"; s.min = min; s.max = max; s.step = step; s.value = value;
  s.setAttribute("aria-label", label);
  const o = document.createElement("output"); o.textContent = Number(value).toFixed(2);
  s.addEventListener("input", () => { o.textContent = Number(s.value).toFixed(2); onInput(Number(s.value)); });
  row.append(l, s, o); return row;
}
function buildPlane(left) {
  const size = 420, R = info.plane, c = document.createElement("canvas");
  c.id = "plane"; c.width = size; c.height = size; left.append(c);
  const note = document.createElement("p"); note.className = "muted";
  note.textContent = "z1 to the right, z2 upwards, from " + (-R) + " to " + R +
    (info.points ? "; dots: test posterior means" + (info.labels ? ", coloured by class" : "") : "") +
    ". Drag the point, or use the arrow keys.";
  left.append(note);
  const toPx = v => (v + R) / (2 * R) * size, toZ = p => p / size * 2 * R - R;
  function draw() {
    const g = c.getContext("2d"); g.clearRect(0, 0, size, size);
    g.strokeStyle = "#eef0f3"; g.lineWidth = 1;
    for (let v = -Math.floor(R); v <= R; v++) {
      g.beginPath(); g.moveTo(toPx(v), 0); g.lineTo(toPx(v), size); g.stroke();
      g.beginPath(); g.moveTo(0, size - toPx(v)); g.lineTo(size, size - toPx(v)); g.stroke();
    }
    g.strokeStyle = "#aab2bd"; g.beginPath(); g.moveTo(toPx(0), 0); g.lineTo(toPx(0), size);
    g.moveTo(0, toPx(0)); g.lineTo(size, toPx(0)); g.stroke();
    (info.points || []).forEach((p, i) => {
      g.fillStyle = info.labels ? COLOURS[info.labels[i] % 10] : "#1f77b4"; g.globalAlpha = 0.45;
      g.fillRect(toPx(p[0]) - 1.5, size - toPx(p[1]) - 1.5, 3, 3);
    });
    g.globalAlpha = 1; g.fillStyle = "#111"; g.strokeStyle = "#fff"; g.lineWidth = 2;
    g.beginPath(); g.arc(toPx(state[0]), size - toPx(state[1]), 7, 0, 2 * Math.PI); g.fill(); g.stroke();
  }
  function moveTo(ev) {
    const b = c.getBoundingClientRect();
    state = [toZ((ev.clientX - b.left) * size / b.width), -toZ((ev.clientY - b.top) * size / b.height)]
      .map(v => Math.max(-R, Math.min(R, v)));
    draw(); update();
  }
  let dragging = false;
  c.addEventListener("pointerdown", ev => { dragging = true; c.setPointerCapture(ev.pointerId); moveTo(ev); });
  c.addEventListener("pointermove", ev => { if (dragging) moveTo(ev); });
  c.addEventListener("pointerup", () => { dragging = false; });
  c.tabIndex = 0;
  c.addEventListener("keydown", ev => {
    const d = {ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, 0.1], ArrowDown: [0, -0.1]}[ev.key];
    if (!d) return; ev.preventDefault();
    state = state.map((v, i) => Math.max(-R, Math.min(R, v + d[i]))); draw(); update();
  });
  draw();
}
function buildSliders(left) {
  const box = document.createElement("div"); box.className = "controls"; box.id = "sliders";
  info.order.forEach(d => {
    const v = info.var[d];
    box.append(slider("z" + d + (v === null ? "" : "  (var " + v.toFixed(2) + ")"),
      "variance of the test posterior means of z" + d, state[d], -3, 3, 0.01, x => { state[d] = x; update(); }));
  });
  const reset = document.createElement("button"); reset.textContent = "reset";
  reset.addEventListener("click", () => { left.innerHTML = ""; state = info.start.slice(); buildSliders(left); update(); });
  left.append(box, reset);
}
function buildSelectors(left) {
  const box = document.createElement("div"); box.className = "controls"; box.id = "selectors";
  for (let n = 0; n < info.n_vars; n++) {
    const row = document.createElement("div"); row.className = "ctl";
    const l = document.createElement("label"); l.textContent = "variable " + n;
    const s = document.createElement("select"); s.setAttribute("aria-label", "variable " + n);
    for (let k = 0; k < info.n_classes; k++) {
      const o = document.createElement("option"); o.value = k; o.textContent = "class " + k; s.append(o);
    }
    s.value = state[n];
    s.addEventListener("input", () => { state[n] = Number(s.value); update(); });
    row.append(l, s, document.createElement("span")); box.append(row);
  }
  left.append(box);
}
(async () => {
  info = await (await fetch("/info")).json();
  state = info.start.slice();
  const [C, H, W] = info.shape, zoom = Math.max(2, Math.floor(320 / Math.max(H, W)));
  img.width = W * zoom; img.height = H * zoom;
  const left = document.getElementById("left"), how = document.getElementById("how");
  if (info.n_labels) buildLabel(left);
  if (info.kind === "categorical") {
    how.textContent = "Pick a class for each of the " + info.n_vars + " variables; the image is E[x|z] for that one-hot code.";
    buildSelectors(left);
  } else if (info.dim === 2) {
    how.textContent = "Move the point over the latent plane; the image is the decoder mean E[x|z] at that point.";
    buildPlane(left);
  } else {
    how.textContent = "One slider per latent dimension (most active first, starting at the mean test posterior mean); " +
      "the image is the decoder mean E[x|z].";
    buildSliders(left);
  }
  await update();
  document.body.dataset.ready = "1";
})();
</script>
</body>
</html>
"""
