"""The browser fixture itself: Chromium starts and renders a page with an image."""

import base64

import pytest

pytestmark = pytest.mark.browser

PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def test_chromium_renders_an_inline_image(chromium, tmp_path):
    page = chromium.new_page()
    html = tmp_path / "p.html"
    src = "data:image/png;base64," + base64.b64encode(PNG_1PX).decode()
    html.write_text(f'<h1>ok</h1><img id="i" src="{src}">')
    page.goto(html.as_uri())
    assert page.inner_text("h1") == "ok"
    assert page.evaluate("document.getElementById('i').naturalWidth") == 1
    page.close()
