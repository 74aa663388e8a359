"""The dashboard's routes, without a browser: the page carries the key into its assets, and only assets are served."""

from __future__ import annotations

import azure.functions as func
import pytest

from functions import dashboard

ROUTES = (dashboard.dashboard_page, dashboard.dashboard_asset)


def get(url: str, params: dict[str, str] | None = None, **route_params: str) -> func.HttpResponse:
    """Call the page (or, given an `asset`, the asset route) as the Functions host would."""
    request = func.HttpRequest("GET", url, params=params or {}, route_params=route_params, body=b"")
    handler = dashboard.dashboard_asset if route_params else dashboard.dashboard_page
    response: func.HttpResponse = handler.build().get_user_function()(request)
    return response


def test_the_page_loads_its_assets_from_its_own_path_with_the_key_it_was_opened_with() -> None:
    response = get("https://app.example/api/dashboard/?code=k%2By", {"code": "k+y"})
    page = response.get_body().decode()
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'src="/api/dashboard/app.js?code=k%2By"' in page
    assert 'href="/api/dashboard/dashboard.css?code=k%2By"' in page
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the URL holds the key


def test_a_hostile_key_cannot_break_out_of_the_attribute() -> None:
    page = get("http://127.0.0.1/api/dashboard", {"code": '"><script>alert(1)</script>'}).get_body()
    assert b"<script>alert" not in page
    assert b'src="/api/dashboard/app.js?code=%22%3E%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in page


@pytest.mark.parametrize(("name", "mimetype"), [("app.js", "text/javascript"), ("dashboard.css", "text/css")])
def test_assets_are_served_with_their_type(name: str, mimetype: str) -> None:
    response = get(f"http://127.0.0.1/api/dashboard/{name}", asset=name)
    assert response.status_code == 200 and response.mimetype == mimetype and response.get_body()


@pytest.mark.parametrize("name", ["nothing.js", "index.html", "..%2Ffunction_app.py", "../dashboard.py", ".hidden.js"])
def test_anything_but_an_asset_is_404(name: str) -> None:
    assert get("http://127.0.0.1/api/dashboard/x", asset=name).status_code == 404


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.build().get_function_name())
def test_dashboard_routes_only_read_and_keep_the_apps_function_key_auth(route) -> None:
    trigger = route.build().get_trigger()
    # No auth level of its own: the FunctionApp's (a function key in Azure) applies.
    assert trigger.methods == [func.HttpMethod.GET] and getattr(trigger, "auth_level", None) in (
        None,
        func.AuthLevel.FUNCTION,
    )
