"""The dashboard's views on answers of the API's own shapes, in headless Chromium, with no stack behind them.

Each answer is built through its `aztrain.api` model, so the page is tested against the contract; the
page is served from `functions/static` as the function app serves it. These checks catch what a
newcomer found: a constant loss drawn on an axis from -0.49 to 0.51, a jobs page whose "Last runs"
table scrolls sideways at 1280 px, a runs list that hides why a run was rejected, a loss chart that
is flat after epoch 2, long run ids, and no way to download the model.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from aztrain.api import models as api
from aztrain.domain.manifest import parse_manifest
from aztrain.service.settings import PROJECT_ROOT
from functions import dashboard
from tests.browser.conftest import WAIT_MS

ORIGIN = "http://dashboard.test"
KEY = "views-test-key"
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
JOB = "digits-classifier"


def run(n: int, state: str = "COMPLETED", **fields: Any) -> dict[str, Any]:
    """A run as `GET /api/runs` answers it, made through its model."""
    run_id = f"{8204142846000 - n:013d}-{n:06x}"
    view = {
        "id": run_id,
        "short_id": run_id[-6:],
        "job": JOB,
        "state": state,
        "terminal": state in ("COMPLETED", "FAILED", "CANCELED", "REJECTED"),
        "trigger": "manifest",
        "source": f"jobs/manifests/{JOB}.yaml",
        "cause": f"event-{n}",
        "correlation_id": f"corr-{n}",
        "created_at": T0 + timedelta(minutes=n),
        "updated_at": T0 + timedelta(minutes=n, seconds=42),
        "cluster": "local-gpu-small",
        "backend_job_id": f"aztrain-{run_id}",
        "snapshot_id": "snap-1",
        "attempt": 1,
        "manifest_hash": "ab" * 32,
        "error": "",
        "metrics": {"accuracy": 0.9611, "loss": 0.1234} if state == "COMPLETED" else {},
        "outputs": {
            "container": "runs",
            "prefix": f"{JOB}/{run_id}/",
            "logs": f"runs/{JOB}/{run_id}/logs/driver.log",
            "model": f"runs/{JOB}/{run_id}/outputs/model.pt",
            "metrics": f"runs/{JOB}/{run_id}/outputs/metrics.json",
            "epochs": f"runs/{JOB}/{run_id}/outputs/metrics.jsonl",
        },
        "team": "default",
        "submitted_by": "",
        "priority": 0,
        "cost": None,
        "problems": [],
        **fields,
    }
    return api.RunView.model_validate(view).model_dump(mode="json", by_alias=True)


def rejected(n: int) -> dict[str, Any]:
    problems = [
        {"field": "trainer.args.epochs", "message": "expected int, got str 'five'"},
        {"field": "compute.nodes", "message": "4 is more than the 2 node(s) local-gpu-small allows"},
    ]
    error = "invalid manifest: " + "; ".join(f"{p['field']}: {p['message']}" for p in problems)
    return run(n, "REJECTED", outputs=None, problems=problems, error=error, metrics={})


def model(version: int, run_id: str, loss: float) -> dict[str, Any]:
    view = {
        "name": JOB,
        "version": version,
        "run_id": run_id,
        "snapshot_id": "snap-1",
        "manifest_hash": "ab" * 32,
        "artifact": f"runs/{JOB}/{run_id}/outputs/model.pt",
        "metrics": {"accuracy": 0.96, "loss": loss},
        "registered_at": T0,
        "promoted": version == 1,
        "gate": "",
    }
    return api.ModelView.model_validate(view).model_dump(mode="json", by_alias=True)


class FakeApi:
    """The function app's routes for the page: the page and its assets as served, JSON answers by path."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.texts: dict[str, tuple[str, dict[str, str]]] = {}

    def handle(self, route: Route) -> None:
        url = urlsplit(route.request.url)
        assert parse_qs(url.query).get("code") == [KEY], f"{url.path} went without the page's key"
        path = url.path.removeprefix("/api/")
        if path == "dashboard":
            page = dashboard._page().substitute(base="/api/dashboard/", query=f"?code={KEY}")
            route.fulfill(status=200, body=page, content_type="text/html", headers=dashboard.SECURITY_HEADERS)
        elif path.startswith("dashboard/"):
            name = path.removeprefix("dashboard/")
            kind = dashboard.MEDIA_TYPES[name.rsplit(".", 1)[1]]
            route.fulfill(status=200, body=dashboard._assets()[name], content_type=kind)
        elif path in self.texts:
            text, headers = self.texts[path]
            route.fulfill(status=200, body=text, content_type="text/plain", headers=headers)
        elif path in self.answers:
            route.fulfill(status=200, body=json.dumps(self.answers[path]), content_type="application/json")
        else:
            problem = {"type": "about:blank", "title": "Not Found", "status": 404, "detail": f"no {path}"}
            route.fulfill(status=404, body=json.dumps(problem), content_type="application/problem+json")


@pytest.fixture
def fake() -> FakeApi:
    return FakeApi()


@pytest.fixture
def page(browser: Browser, fake: FakeApi) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.route(f"{ORIGIN}/**", fake.handle)
    yield page
    context.close()
    assert not errors, errors


def open_view(page: Page, view: str) -> None:
    page.goto(f"{ORIGIN}/api/dashboard?code={KEY}#/{view}")


def test_the_runs_list_shows_short_ids_and_why_a_run_was_rejected(page: Page, fake: FakeApi) -> None:
    done, refused = run(1), rejected(2)
    fake.answers["runs"] = {"runs": [refused, done], "next": None}
    fake.answers["jobs"] = {"jobs": [], "next": None}
    open_view(page, "runs")
    row = page.locator(f"tr[data-run='{refused['id']}']")
    expect(row.get_by_role("link")).to_have_text(refused["short_id"])  # what `aztrain runs` shows, and takes
    expect(row.locator("td.why")).to_have_text("trainer.args.epochs: expected int, got str 'five' (and 1 more)")
    expect(page.locator(f"tr[data-run='{done['id']}'] td").nth(6)).to_have_text("0.961")


def test_the_jobs_last_runs_table_fits_a_1280_px_screen(page: Page, fake: FakeApi) -> None:
    manifest = parse_manifest((PROJECT_ROOT / "examples" / "digits.yaml").read_bytes()).normalised()
    job = {
        "name": JOB,
        "manifest_hash": "ab" * 32,
        "updated_at": T0.isoformat(),
        "watch": f"datasets/{manifest['data']['prefix']}",
        "last_run_id": run(1)["id"],
        "manifest": manifest,
    }
    fake.answers["jobs"] = api.JobList.model_validate({"jobs": [job] * 2, "next": None}).model_dump(mode="json")
    window = {"job": JOB, "action": "idle", "reason": "no new data", "arrivals": 0, "fires_at": None, "blockers": []}
    fake.answers[f"jobs/{JOB}/window"] = {**window, "next": "nothing until new data arrives"}
    fake.answers["runs"] = {"runs": [run(n) for n in range(1, 6)], "next": None}
    open_view(page, "jobs")
    tables = page.locator("article.card .table-wrap")
    expect(tables.first.locator("tbody tr")).to_have_count(5)
    overflowing = tables.evaluate_all("els => els.filter(e => e.scrollWidth > e.clientWidth).length")
    assert overflowing == 0, "a Last runs table scrolls sideways at 1280 px, hiding its right-hand columns"


def test_a_constant_loss_gets_an_axis_around_its_value(page: Page, fake: FakeApi) -> None:
    fake.answers["models"] = {"models": [model(1, run(1)["id"], 0.0123), model(2, run(2)["id"], 0.0123)], "next": None}
    open_view(page, "models")
    chart = page.locator("figure.chart").filter(has_text="Loss by version")
    expect(chart.locator(".point")).to_have_count(2)
    texts = chart.locator("text.tick").evaluate_all("ts => ts.map(t => t.textContent)")
    ticks = [float(t) for t in texts[:2]]  # the y axis's extremes come first, then the x axis's
    low, high = min(ticks), max(ticks)
    assert 0 < low < 0.0123 < high < 0.1, ticks  # not -0.49 .. 0.51


def test_a_run_plots_loss_on_a_log_scale_and_links_its_model_for_download(page: Page, fake: FakeApi) -> None:
    done = run(3)
    detail = {**done, "history": []}
    fake.answers[f"runs/{done['id']}"] = api.RunDetail.model_validate(detail).model_dump(mode="json", by_alias=True)
    epochs = [{"epoch": e, "loss": 2.0 / 10 ** (e - 1), "accuracy": 0.5 + e / 10} for e in range(1, 5)]
    fake.answers[f"runs/{done['id']}/metrics"] = {"run_id": done["id"], "state": "COMPLETED", "epochs": epochs}
    fake.answers[f"runs/{done['id']}/metrics"]["final"] = None
    fake.texts[f"runs/{done['id']}/logs"] = ("epoch 4/4 loss=0.0020\n", {"X-Log-Next-Offset": "22"})
    fake.answers["models"] = {"models": [], "next": None}
    open_view(page, f"runs/{done['id']}")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Run {done['short_id']}")
    loss = page.locator("figure.chart").filter(has_text="Loss per epoch")
    expect(loss).to_have_attribute("data-scale", "log")
    heights = [float(y) for y in loss.locator(".point").evaluate_all("ps => ps.map(p => p.getAttribute('cy'))")]
    steps = [b - a for a, b in itertools.pairwise(heights)]
    assert min(steps) > 0.9 * max(steps), heights  # each tenfold fall as visible as the first
    download = page.get_by_role("link", name="download model.pt")
    href = urlsplit(download.get_attribute("href") or "")
    assert href.path == f"/api/runs/{done['id']}/outputs/model.pt" and parse_qs(href.query)["code"] == [KEY]
