"""Open every page of the built book in headless Chromium and check it as a reader would.

A page fails on: a request that did not load (for example a CDN script, offline), a JavaScript
error, math left unrendered or a MathJax error, an image that does not load, a page whose code draws
with matplotlib but shows no figure, an internal link (or #anchor) that points nowhere, equation
numbers that do not run (1), (2), ... within the page, or a navigation entry that repeats a caption.
One full-page screenshot per page is written for a person to look at.

Uses Debian's /usr/bin/chromium through Playwright's library (no downloaded browser).
Usage: python tools/check_site.py _build/html [screenshot_dir]
"""
from __future__ import annotations

import functools
import http.server
import pathlib
import re
import sys
import threading
import urllib.parse

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-quic"]
# Known-benign console noise of the Jupyter Book 1 stack: sphinx-thebe 0.3.1 emits its inline config
# twice; pydata-sphinx-theme 0.17 logs an empty theme mode in a fresh profile; browsers ask for /favicon.ico.
# The console echo of a 404 is dropped because the response handler reports every 404 with its URL.
BENIGN = re.compile(r"THEBE_JS_URL' has already been declared|invalid theme mode|favicon\.ico|status of 404 \(File not found\)$")
SKIP = {"genindex.html", "search.html", "index.html", "py-modindex.html"}  # index.html only redirects


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(root: pathlib.Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_port}/"


@functools.lru_cache(maxsize=None)
def _ids(path: pathlib.Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(encoding="utf-8", errors="replace")))


def broken_links(root: pathlib.Path, base: str, hrefs: list[str]) -> list[str]:
    """Internal links whose target file, or #anchor in it, does not exist."""
    bad = []
    for href in sorted(set(hrefs)):
        if not href.startswith(base):
            continue  # external links are not followed offline
        url = urllib.parse.urlsplit(href)
        target = root / urllib.parse.unquote(url.path.lstrip("/"))
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"broken link: {href}")
        elif url.fragment and target.suffix == ".html" and urllib.parse.unquote(url.fragment) not in _ids(target):
            bad.append(f"broken anchor: {href}")
    return bad


def check_page(browser, root: pathlib.Path, base: str, rel: str, shots: pathlib.Path) -> list[str]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"js error: {e}"))
    page.goto(base + rel, wait_until="networkidle")
    n_math = page.locator("div.math, span.math, .output_latex, .math.notranslate").count()
    if n_math:
        try:  # MathJax 3: wait until typesetting has finished
            page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20000)
            page.evaluate("MathJax.startup.promise")
        except Exception as e:  # noqa: BLE001 - any failure here means math did not render
            problems.append(f"MathJax never started ({n_math} math nodes): {type(e).__name__}")
        n_mjx, n_err = page.locator("mjx-container").count(), page.locator("mjx-merror").count()
        if n_mjx == 0 or n_err:
            problems.append(f"math: {n_mjx} rendered, {n_err} errors, {n_math} math nodes")
    eqnos = page.evaluate("[...document.querySelectorAll('span.eqno')].map(e => e.textContent.replace(/[^0-9.]/g, ''))")
    if eqnos != [str(i) for i in range(1, len(eqnos) + 1)]:
        problems.append(f"equations numbered {eqnos[:6]}: expected (1), (2), ... within each chapter")
    captions = set(page.locator("nav.bd-docs-nav p.caption").all_inner_texts())
    entries = page.locator("nav.bd-docs-nav a").all_inner_texts()
    problems += [f"navigation repeats the caption {e!r} as a page" for e in entries if e.strip() in captions]
    broken = page.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    problems += [f"broken image: {s}" for s in broken]
    code = " ".join(page.locator("div.cell_input").all_inner_texts())
    if re.search(r"\bplt\.show\(\)", code) and page.locator(".cell_output img").count() == 0:
        problems.append("matplotlib code but no figure in any cell output")
    problems += broken_links(root, base, page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.href)"))
    page.screenshot(path=str(shots / (rel.replace("/", "__") + ".png")), full_page=True)
    page.close()
    return [p for p in problems if not BENIGN.search(p)]


def main(argv: list[str]) -> int:
    root = pathlib.Path(argv[1]).resolve()
    shots = pathlib.Path(argv[2] if len(argv) > 2 else root.parent / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.html")
                   if not {"_static", "_sources", "_modules"} & set(p.parts) and p.name not in SKIP)
    srv, base = serve(root)
    passed = failed = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for rel in pages:
            problems = check_page(browser, root, base, rel, shots)
            print(f"{'FAILED' if problems else 'PASSED'} {rel}")
            for p in problems:
                print("    " + p)
            failed += bool(problems)
            passed += not problems
        browser.close()
    srv.shutdown()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
