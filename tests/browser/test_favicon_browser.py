"""The favicon in a real headless Chromium: the login page loads with no console error at all (its 404 for
/favicon.ico was the only one), and the browser really fetched the icon the page links."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_it_loads_the_login_page_with_no_console_error_and_the_icon(page, transactional_db):
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    icons: list[tuple[str, int]] = []
    page.on("response", lambda r: icons.append((r.url, r.status)) if "favicon" in r.url else None)
    page.goto(page.base + "/accounts/login/")
    page.wait_for_load_state("networkidle")  # the icon is fetched after the load event
    assert errors == [], errors
    assert page.locator('link[rel="icon"]').get_attribute("href") == "/static/favicon.svg"
    # Fetched as the browser does, with its own request: the icon answers 200 as an SVG.
    icon = page.request.get(page.base + "/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert all(status < 400 for _, status in icons), icons
