"""The report and the explorer in a real browser: Debian's Chromium, driven by Playwright.

Playwright never downloads a browser here: it starts /usr/bin/chromium (installed by .ci/run)
with the flags this sandbox needs, in a fresh profile. In CI (CI=true) a missing Chromium or
Playwright is a failure; on a workstation without them these tests skip and say why.
"""

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from vaelab import api
from vaelab.viz import PICTURES
from vaelab.viz.explore import make_server

CHROMIUM = os.environ.get("VAELAB_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


def _missing(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must run the browser tests; .ci/run installs Chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a fresh --user-data-dir (Playwright's persistent context)."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        _missing(f"Chromium not found at {CHROMIUM}; apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing; pip install -e '.[dev]'")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
            timeout=60_000,
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    yield page
    page.close()
    assert not errors, errors


def test_report_in_chromium(tiny_run, page, tmp_path):
    report = api.report(tiny_run, device="cpu")
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(report.resolve().as_uri(), wait_until="load")

    images = page.eval_on_selector_all(
        "img",
        "imgs => imgs.map(i => ({file: i.dataset.file, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight}))",
    )
    assert [i["file"] for i in images] == [f"{p}.png" for p in PICTURES if p != "prior"]
    for img in images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0, img

    last = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()][-1]
    shown = f"{last['valid_neg_elbo']:.2f}"
    assert page.inner_text("#last-valid-neg_elbo .value") == shown
    assert page.inner_text("#metrics tbody tr:last-child td[data-key=valid_neg_elbo]") == shown
    assert shown in page.inner_text("body")
    assert page.is_visible("#metrics") and page.is_visible("img[data-file='manifold.png']")

    # nothing but the file itself and its embedded pictures
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def _serve(run):
    server = make_server(api.explorer(run, device="cpu"), port=0, title=Path(run).name)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


def _decoded(page) -> tuple[str, bytes]:
    """The current src of the decoded image and its bytes, read back in the page. A drag's later
    answer may replace the src (and revoke the old blob) between reading it and fetching it; then
    the newer one is read."""
    for _ in range(20):
        src = page.get_attribute("#decoded", "src")
        try:
            data = page.evaluate("async s => Array.from(new Uint8Array(await (await fetch(s)).arrayBuffer()))", src)
        except Exception:
            if page.get_attribute("#decoded", "src") == src:
                raise  # the same image could not be read: a real failure
            continue
        return src, bytes(data)
    raise AssertionError("the decoded image kept changing")


def _changed(page, before: str) -> None:
    page.wait_for_function(
        "b => { const i = document.getElementById('decoded'); "
        "return i.src !== b && i.complete && i.naturalWidth > 0; }",
        arg=before,
        timeout=TIMEOUT_MS,
    )


def test_explore_plane_in_chromium(tiny_run, page, tmp_path):
    server, thread = _serve(tiny_run)
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        assert page.eval_on_selector("#decoded", "i => i.complete && i.naturalWidth") == 28
        src0, bytes0 = _decoded(page)
        assert bytes0[:4] == b"\x89PNG"

        box = page.locator("#plane").bounding_box()  # drag the point to the upper right
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.85, box["y"] + box["height"] * 0.2, steps=5)
        page.mouse.up()
        _changed(page, src0)
        src1, bytes1 = _decoded(page)
        assert src1 != src0 and bytes1 != bytes0
        z1, z2 = map(float, page.get_attribute("#decoded", "data-query").removeprefix("z=").split(","))
        assert z1 > 1.5 and z2 > 1.0  # right is +z1, up is +z2

        page.focus("#plane")  # the keyboard moves it too
        page.keyboard.press("ArrowLeft")
        _changed(page, src1)
        page.screenshot(path=str(tmp_path / "explore-plane.png"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_explore_sliders_in_chromium(tiny_frey_run, page, tmp_path):
    server, thread = _serve(tiny_frey_run)
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        sliders = page.locator("#sliders input[type=range]")
        assert sliders.count() == 5
        src0, bytes0 = _decoded(page)
        sliders.first.focus()
        page.keyboard.press("End")  # the most active dimension to +3
        _changed(page, src0)
        src1, bytes1 = _decoded(page)
        assert bytes1 != bytes0
        assert page.get_attribute("#decoded", "data-query").startswith("z=")
        page.screenshot(path=str(tmp_path / "explore-sliders.png"))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_explore_class_selectors_in_chromium(page):
    import vaelab
    from vaelab.config import ModelConfig
    from vaelab.viz.explore import Explorer

    model = vaelab.VAE(ModelConfig(latent="categorical", categorical_dims=[4, 5], hidden=[16])).eval()
    server = make_server(Explorer(model), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        selects = page.locator("#selectors select")
        assert selects.count() == 4 and selects.first.locator("option").count() == 5
        src0, bytes0 = _decoded(page)
        selects.nth(2).select_option("4")
        _changed(page, src0)
        assert page.get_attribute("#decoded", "data-query") == "c=0,0,4,0"
        assert _decoded(page)[1] != bytes0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
