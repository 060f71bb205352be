"""The static site of `make site` (docs/site/).

The link rewriting of the staging step is tested everywhere. The build and browser check run in
`make test-site` (PAPER_UTILS_SITE_TEST=1), which installs requirements-site.txt and Debian's chromium:
they build the site from scratch into build/site/, check every link and reference of the built HTML
statically, then load every page in headless Chromium (DevTools protocol over a pipe, pages served
from 127.0.0.1, every other host unresolvable), and keep screenshots of the home page and notebook 01
in build/site/screenshots/.
"""

from __future__ import annotations

import base64
import functools
import glob
import http.server
import importlib.util
import json
import os
import posixpath
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "build" / "site"
SHOTS = SITE / "screenshots"
SITE_TEST = os.environ.get("PAPER_UTILS_SITE_TEST") == "1"
needs_site = pytest.mark.skipif(
    not SITE_TEST,
    reason="site build and headless-Chromium check run in `make test-site` (about 25 s, after "
    "installing requirements-site.txt and Debian's chromium, which `make test` does not do)",
)


def _load_build():
    spec = importlib.util.spec_from_file_location("site_build", REPO / "docs" / "site" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- staging (no Sphinx needed) ------------------------------------------------------------------


def test_stage_rewrites_repository_links(tmp_path):
    build = _load_build()
    stager = build.Stager(tmp_path, {"home": "README.md", "parts": []})
    text = (
        "See [`docs/findings.md`](docs/findings.md#paper-scale), [nb](notebooks/01_mnist_duality_gap.ipynb),\n"
        "[fig](figures/fig02_mnist_duality_gap.png), [dir](figures/) and "
        '<img src="figures/fig03_mnist_examples.png" width="10">.\n'
        "`[code](README.md)` stays; so does [out](https://example.org/x.md).\n"
        "```\n[fenced](LICENSE)\n```\n"
    )
    out = stager.rewrite_markdown(text, "README.md")
    assert "](docs/findings.md#paper-scale)" in out
    assert "](notebooks/01_mnist_duality_gap.ipynb)" in out
    assert "](site:figures/fig02_mnist_duality_gap.png)" in out
    assert "](figures/index.md)" in out
    assert 'src="figures/fig03_mnist_examples.png"' in out
    assert "`[code](README.md)`" in out and "[fenced](LICENSE)" in out
    assert "](https://example.org/x.md)" in out
    assert not stager.errors
    assert "_extra/figures/fig02_mnist_duality_gap.png" in stager.outputs
    assert "_extra/figures/fig03_mnist_examples.png" in stager.outputs
    assert {"docs/findings.md", "notebooks/01_mnist_duality_gap.ipynb"} <= set(stager.pages)
    # From a page one folder down, the README is the home page index.md.
    assert stager.rewrite_markdown("[home](../README.md)", "docs/findings.md") == "[home](../index.md)"
    # A markdown image keeps its path and is staged beside the sources (Sphinx copies it).
    img = stager.rewrite_markdown("![f](../figures/fig04_dual_filter_spectra.png)", "notebooks/x.ipynb")
    assert img == "![f](../figures/fig04_dual_filter_spectra.png)"
    assert "figures/fig04_dual_filter_spectra.png" in stager.outputs
    stager.rewrite_markdown("[gone](figures/no_such.png) [up](../../x.md)", "docs/findings.md")
    assert len(stager.errors) == 2


# -- the built site ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site():
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(REPO / "docs" / "site" / "build.py"), "--fresh"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 0, f"make site failed:\n{proc.stdout}\n{proc.stderr}"
    return {"out": SITE, "build_s": time.perf_counter() - t0}


def _pages(out: Path) -> list[str]:
    """Every built HTML page, relative to the site root (the theme's _static templates aside)."""
    return sorted(
        p.relative_to(out).as_posix()
        for p in out.rglob("*.html")
        if not p.relative_to(out).parts[0].startswith(("_static", "screenshots"))
    )


class _Refs(HTMLParser):
    RESOURCE = {"img": "src", "script": "src", "source": "src", "iframe": "src", "link": "href"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []  # a[href]: followed by the reader
        self.resources: list[tuple[str, str]] = []  # loaded with the page
        self.nav: list[str] = []
        self._nav_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "nav" and "bd-docs-nav" in (a.get("class") or ""):
            self._nav_depth = 1
        elif tag == "nav" and self._nav_depth:
            self._nav_depth += 1
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
            if self._nav_depth:
                self.nav.append(a["href"])
        attr = self.RESOURCE.get(tag)
        if attr and a.get(attr):
            self.resources.append((tag, a[attr]))

    def handle_endtag(self, tag):
        if tag == "nav" and self._nav_depth:
            self._nav_depth -= 1


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> _Refs:
    parser = _Refs()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def _is_external(url: str) -> bool:
    return bool(urlsplit(url).scheme) or url.startswith("//")


@needs_site
def test_pages_and_navigation(site):
    out = site["out"]
    pages = _pages(out)
    notebooks = sorted(Path(p).stem for p in glob.glob(str(REPO / "notebooks" / "[0-9][0-9]_*.ipynb")))
    assert len(notebooks) >= 12
    expected = ["index.html", "figures/CLAIMS.html", "docs/findings.html", "benchmarks/README.html"]
    expected += [f"notebooks/{nb}.html" for nb in notebooks]
    missing = [p for p in expected if p not in pages]
    assert not missing, f"pages not built: {missing}"
    nav = [h.split("#")[0] for h in _parse(out / "index.html").nav]
    order = [f"notebooks/{nb}.html" for nb in notebooks] + expected[1:4]
    positions = [nav.index(p) for p in order if p in nav]
    assert len(positions) == len(order), f"sidebar of the home page lacks pages: {nav}"
    assert positions == sorted(positions), "sidebar order differs from toc.yml"
    # The committed outputs are rendered: notebook 01 shows its stored figures.
    assert any(tag == "img" for tag, _ in _parse(out / f"notebooks/{notebooks[0]}.html").resources)


@needs_site
def test_static_links_and_no_external_resources(site):
    out = site["out"]
    broken, external = [], []
    for page in _pages(out):
        refs = _parse(out / page)
        here = posixpath.dirname(page)
        for kind, url in [("a", u) for u in refs.links] + refs.resources:
            if _is_external(url):
                if kind != "a":
                    external.append(f"{page}: <{kind}> {url}")
                continue
            path, _, fragment = url.partition("#")
            path = unquote(path.split("?")[0])
            target = posixpath.normpath(posixpath.join(here, path)) if path else page
            full = out / target
            if full.is_dir():
                full, target = full / "index.html", posixpath.join(target, "index.html")
            if not full.is_file():
                broken.append(f"{page}: {url} (no {target})")
            elif fragment and full.suffix == ".html" and unquote(fragment) not in _parse(full).ids:
                broken.append(f"{page}: {url} (no id {fragment!r} in {target})")
    assert not broken, "broken internal links:\n  " + "\n  ".join(broken)
    assert not external, "resources fetched from other hosts:\n  " + "\n  ".join(external)


# -- headless Chromium over the DevTools protocol (pipe transport: no websocket library) ----------


class Chromium:
    def __init__(self, profile: str):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        to_child_r, self._w = os.pipe()
        self._r, from_child_w = os.pipe()
        cmd = [
            exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-default-apps", "--mute-audio", "--hide-scrollbars",
            # Offline: every host but the loopback site server is unresolvable.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--window-size=1280,900", "about:blank",
        ]
        # The protocol pipe is fds 3 (commands in) and 4 (replies out) in the browser (bash: dash
        # refuses fd numbers over 9 in a redirection).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{to_child_r} 4>&{from_child_w}', "bash", *cmd],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.session = None

    def _recv(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._r], [], [], left)
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buf += chunk
        msg, _, self._buf = self._buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, timeout: float = 60, browser=False):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session and not browser:
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._recv(deadline - time.monotonic())
            if reply is None:
                raise TimeoutError(method)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == event:
                    return self.events.pop(i)
            reply = self._recv(deadline - time.monotonic())
            if reply is None:
                raise TimeoutError(event)
            if "method" in reply:
                self.events.append(reply)

    def open_tab(self):
        target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
        self.session = self.send(
            "Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True
        )["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})

    def close(self):
        try:
            self.send("Browser.close", browser=True, timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._w)
        os.close(self._r)


# Run in each page after its load event: load every image now (lazy ones too) and report what the
# reader's browser has: images with their decoded width, links as the browser resolves them, ids.
_INSPECT = """(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { img.loading = 'eager'; });
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done); setTimeout(done, 15000);
  })));
  const article = document.querySelector('article') || document.body;
  return {
    title: document.title,
    text: article.innerText.length,
    images: imgs.map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    ids: Array.from(document.querySelectorAll('[id], a[name]')).map(e => e.id || e.name),
  };
})()"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def chromium():
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        pytest.fail("Debian's chromium is not installed: `make test-site` installs it as root, "
                    "otherwise `sudo apt-get install chromium`")
    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(profile)
        try:
            browser.open_tab()
            yield browser
        finally:
            browser.close()


@needs_site
def test_every_page_in_chromium(site, chromium):
    out = site["out"]
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    t0 = time.perf_counter()
    problems, seen, status = [], {}, {}
    shots = {"index.html": "home.png"}
    first_nb = sorted(p for p in _pages(out) if p.startswith("notebooks/"))[0]
    shots[first_nb] = "notebook01.png"
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        for page in _pages(out):
            chromium.events.clear()
            nav = chromium.send("Page.navigate", {"url": base + page})
            if nav.get("errorText"):
                problems.append(f"{page}: navigation failed: {nav['errorText']}")
                continue
            chromium.wait_for("Page.loadEventFired")
            info = chromium.send("Runtime.evaluate", {
                "expression": _INSPECT, "awaitPromise": True, "returnByValue": True,
            })["result"]["value"]
            seen[page] = info
            if not info["title"] or info["text"] < 20:
                problems.append(f"{page}: empty page (title {info['title']!r})")
            for img in info["images"]:
                if img["width"] <= 0:
                    problems.append(f"{page}: image does not load: {img['src']}")
            requests = {}
            for ev in chromium.events:
                m, p = ev["method"], ev.get("params", {})
                if m == "Network.requestWillBeSent":
                    url = p["request"]["url"]
                    requests[p["requestId"]] = url
                    if not url.startswith((base, "data:", "blob:", "about:")):
                        problems.append(f"{page}: request to another host: {url}")
                elif m == "Network.responseReceived" and p["response"]["status"] >= 400:
                    if not p["response"]["url"].endswith("/favicon.ico"):
                        problems.append(f"{page}: HTTP {p['response']['status']} {p['response']['url']}")
                elif m == "Network.loadingFailed" and not p.get("canceled"):
                    url = requests.get(p["requestId"], "?")
                    if not url.endswith("/favicon.ico"):
                        problems.append(f"{page}: failed to load {url}: {p.get('errorText')}")
                elif m == "Runtime.exceptionThrown":
                    problems.append(f"{page}: script error: {p['exceptionDetails'].get('text')} "
                                    f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
            if page in shots:
                data = chromium.send("Page.captureScreenshot", {"format": "png"})["data"]
                (SHOTS / shots[page]).write_bytes(base64.b64decode(data))
        # Links as the browser resolved them: same-site targets must be served, and anchors present.
        for page, info in seen.items():
            for href in info["links"]:
                if not href.startswith(base):
                    continue
                url, _, fragment = href.partition("#")
                path = unquote(url[len(base):].split("?")[0]) or "index.html"
                if path.endswith("/"):
                    path += "index.html"
                if url not in status:
                    try:
                        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as r:
                            status[url] = r.status
                    except urllib.error.HTTPError as e:
                        status[url] = e.code
                if status[url] != 200:
                    problems.append(f"{page}: link {href} -> HTTP {status[url]}")
                elif fragment and path in seen and unquote(fragment) not in seen[path]["ids"]:
                    problems.append(f"{page}: link {href}: no element with id {fragment!r}")
    finally:
        server.shutdown()
        server.server_close()
    problems = list(dict.fromkeys(problems))
    report = {
        "build_s": round(site["build_s"], 1),
        "browser_s": round(time.perf_counter() - t0, 1),
        "pages": len(seen),
        "images": sum(len(i["images"]) for i in seen.values()),
        "links_checked": sum(len(i["links"]) for i in seen.values()),
        "same_site_urls": len(status),
        "screenshots": sorted(shots.values()),
        "problems": problems,
    }
    (SHOTS / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    assert not problems, "\n".join(problems)
    for name in shots.values():
        png = (SHOTS / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
