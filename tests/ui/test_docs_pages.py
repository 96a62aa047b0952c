"""The OpenAPI pages in a real browser: /docs (Swagger UI) and /redoc render from the lab alone, with
the lab's security headers and no Content-Security-Policy violation but the one ReDoc always causes
(see below). The page fixture fails a test on any request to another host, any uncaught error and
any CSP violation (tests/ui/conftest.py)."""

from __future__ import annotations

#: ReDoc's sidebar footer ("API docs by Redocly") shows Redocly's logo from their CDN, hard-coded in
#: redoc.standalone.js; the lab's policy stops that request in the browser, so it never leaves.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def assert_security_headers(response) -> None:
    headers = response.all_headers()
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"


def test_swagger_ui_renders_every_operation_and_calls_the_api_from_the_lab_alone(page, lab, recorder, screenshots):
    response = page.goto(f"{lab.url}/docs")
    assert response.status == 200
    assert_security_headers(response)
    operations = sum(len(item) for item in lab.get("/openapi.json")["paths"].values())
    page.wait_for_selector(".opblock")
    assert page.locator(".opblock").count() == operations
    assert page.locator(".opblock-summary-path", has_text="/api/runs/{run_id}/cancel").count() == 1

    # Try it out: GET /api/health through Swagger UI's own fetch, its icons (data: SVGs) drawn.
    health = page.locator(".opblock-get", has=page.locator(".opblock-summary-path", has_text="/api/health"))
    health.locator(".opblock-summary").click()
    health.locator(".try-out__btn").click()
    health.locator(".btn.execute").click()
    status = health.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    page.screenshot(path=screenshots / "docs-swagger-ui.png", full_page=False)

    asked = [url for url in recorder.requests if "/docs-assets/" in url]
    assert any(url.endswith("/docs-assets/swagger-ui-bundle.js") for url in asked)
    assert any(url.endswith("/docs-assets/swagger-ui.css") for url in asked)
    assert not recorder.foreign() and not recorder.blocked   # the fixture checks the violations


def test_redoc_renders_and_searches_from_the_lab_alone(page, lab, recorder, screenshots):
    response = page.goto(f"{lab.url}/redoc")
    assert response.status == 200
    assert_security_headers(response)
    page.get_by_role("heading", name="Queue a run").wait_for()

    # Its search runs in a worker started from a blob: URL (worker-src blob:).
    page.get_by_placeholder("Search...").click()
    page.keyboard.type("retry", delay=30)
    results = page.locator("[data-role='search:results'] [role=menuitem]")
    results.first.wait_for()
    assert "Retry a run" in [item.get_attribute("aria-label") for item in results.all()]
    page.screenshot(path=screenshots / "docs-redoc.png", full_page=False)

    assert any(url.endswith("/docs-assets/redoc.standalone.js") for url in recorder.requests)
    page.wait_for_timeout(500)
    assert recorder.blocked == [REDOCLY_LOGO], "the logo's request stopped by the policy, and nothing else"
    assert len(recorder.violations) == 1 and REDOCLY_LOGO in recorder.violations[0], recorder.violations
    recorder.violations.clear()   # expected: what the fixture still checks is that nothing else broke the policy
