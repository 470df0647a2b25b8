"""The dashboard and /docs under the server's Content-Security-Policy, in Debian's chromium: every
page renders with no CSP violation (Dash's inline start-up script is allowed by its hash, plotly
needs no eval), and a variant name holding plotly markup (`<a href=...>`, as an imported CSV can
name it) is drawn as text, never as a link."""

from __future__ import annotations

import csv
import io

import httpx
import pytest

from tests.frontend.live import REPO, live_server
from tests.frontend.synthetic import rows

SCREENSHOTS = REPO / "docs" / "screenshots"

MARKUP = '<a href="https://evil.example/">x</a>'
CSP_WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def _csv_with_markup_variant() -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["variant", "lr", "wd", "seed", "top1", "top5", "status"])
    writer.writeheader()
    for row in rows(seeds=1):
        writer.writerow({**row, "variant": MARKUP if row["variant"] == "u50" else row["variant"]})
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("prunescape-csp")
    with live_server(data_dir) as base:
        answer = httpx.post(
            base + "/api/v1/studies/import",
            files={"file": ("markup.csv", _csv_with_markup_variant(), "text/csv")},
            data={"name": "markup in a variant name"},
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
        study = answer.json()
        assert MARKUP in study["variants"]
        runs = httpx.get(f"{base}/api/v1/studies/{study['id']}/runs", timeout=30).json()["items"]
        yield {"url": base, "study_id": study["id"], "run_id": runs[0]["id"]}


@pytest.fixture
def watched(page):
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(CSP_WATCH)
    page.console = console
    return page


def _violations(page) -> list[str]:
    refused = [text for text in page.console if "Content Security Policy" in text]
    return page.evaluate("window.__csp") + refused


@pytest.mark.slow
@pytest.mark.browser
def test_study_page_renders_under_the_csp_and_markup_in_names_stays_text(server, watched):
    page = watched
    page.goto(f"{server['url']}/studies/{server['study_id']}")
    page.wait_for_function(
        "() => document.querySelectorAll('#study-landscapes .js-plotly-plot').length === 2"
    )
    page.locator("[id*='risk-absolute'] .js-plotly-plot .boxlayer .trace").first.wait_for()
    page.wait_for_timeout(500)
    links = page.evaluate(
        """[...document.querySelectorAll('.js-plotly-plot a')].map(a => a.getAttribute('href')
               || a.getAttributeNS('http://www.w3.org/1999/xlink', 'href'))"""
    )
    assert not [href for href in links if href and "evil" in href], links
    # the name is shown, as the characters it is made of: the risk chart's category tick
    ticks = page.evaluate(
        "[...document.querySelectorAll(\"[id*='risk-absolute'] .xtick text\")].map(t => t.textContent)"
    )
    assert MARKUP in ticks, ticks
    assert page.locator("#study-landscapes").inner_text().count(MARKUP) >= 1  # the card's title
    assert _violations(page) == []
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("path", ["/", "/new", "/runs/{run_id}"])
def test_other_pages_render_under_the_csp(server, watched, path):
    page = watched
    page.goto(server["url"] + path.format(run_id=server["run_id"]))
    page.locator("#page h1").first.wait_for()
    page.wait_for_timeout(1_000)
    assert _violations(page) == []
    assert not page.errors


@pytest.mark.slow
@pytest.mark.browser
def test_docs_are_served_whole_by_this_server_under_the_csp(server, watched):
    """Issue 19: /docs was a blank page offline (Swagger UI from a CDN, a favicon from FastAPI's
    site). Every request the docs page makes, scripts, styles, favicon and the schema, goes to this
    server; none is blocked by its policy; and the page draws the API's operations."""
    page = watched
    base = server["url"]
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    # anything that still tried to leave would fail here rather than reach the internet
    page.route(lambda url: not url.startswith(base), lambda route: route.abort())
    page.goto(base + "/docs")
    page.locator(".opblock-summary-path").first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    outside = [
        url for url in requested if not url.startswith(base + "/") and not url.startswith(("data:", "blob:"))
    ]
    assert outside == [], outside
    assert any(url.startswith(base + "/docs/assets/") for url in requested), requested
    assert base + "/openapi.json" in requested
    text = page.locator("body").inner_text()
    assert "/api/v1/studies" in text and "prunescape" in text
    assert _violations(page) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "docs-offline.png"))
    # no second docs page that would load from a CDN (ReDoc's bundle fetches its logo from one)
    assert httpx.get(base + "/redoc", timeout=30).status_code == 404
