"""The rendered book, opened in a real browser (headless Chromium through Playwright).

Run after `jupyter-book build .` (tools/test.sh does both). For every page in _toc.yml: the page
has its chapter's title, every figure loaded (no broken images), no stored output shows a
traceback or error, and a screenshot lands in _build/screenshots/.
"""
from pathlib import Path
import json
import shutil

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def toc_pages():
    files = [line.split("file:")[1].strip() for line in (ROOT / "_toc.yml").read_text().splitlines()
             if "file:" in line]
    root = [line.split("root:")[1].strip() for line in (ROOT / "_toc.yml").read_text().splitlines()
            if line.startswith("root:")]
    return root + files


def page_title(stem):
    """The first '# ' heading of the source page."""
    nb = ROOT / f"{stem}.ipynb"
    if nb.exists():
        lines = [l for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "markdown"
                 for l in "".join(c["source"]).splitlines()]
    else:
        lines = (ROOT / f"{stem}.md").read_text().splitlines()
    return next(l[2:].strip() for l in lines if l.startswith("# "))


@pytest.fixture(scope="module")
def browser():
    if not (HTML / "book" / "intro.html").exists():
        pytest.fail(f"{HTML} has no built book: run `jupyter-book build .` (tools/test.sh does) first")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine: apt-get install chromium (tools/test.sh does as root)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.mark.parametrize("stem", toc_pages())
def test_page_renders(browser, stem):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto((HTML / f"{stem}.html").as_uri(), wait_until="load")
    title = page_title(stem)
    heading = page.locator("h1").first.inner_text()
    assert title.split("`")[0].strip()[:20] in heading, f"{stem}: h1 is {heading!r}, expected {title!r}"
    broken = page.evaluate("""Array.from(document.images)
        .filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'))""")
    assert not broken, f"{stem}: broken images {broken}"
    # A raised exception is stored as an error output (myst-nb: .output.traceback) and shows a
    # traceback; a warning lands on stderr. Chapters that *print* an error message on purpose
    # (to show what bad input says) are fine.
    errors = page.evaluate("""Array.from(document.querySelectorAll(
            '.cell_output .traceback, .cell_output .stderr, .cell_output .output'))
        .filter(e => e.matches('.traceback') || /Traceback \\(most recent call last\\)/.test(e.innerText)
                     || (e.matches('.stderr') && /Error|Warning/.test(e.innerText)))
        .map(e => e.innerText)""")
    assert not errors, f"{stem}: an output shows an error: {errors[0][:300]}"
    n_imgs = page.evaluate("document.images.length")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / (stem.replace("/", "_") + ".png")), full_page=False)
    page.close()
    assert n_imgs >= 0
