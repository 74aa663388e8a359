"""The dashboard on the real local stack, in headless Chromium: what a user watches while runs come and go.

The tests share one stack, but each makes the runs and jobs it looks at (its own job names) and waits for
what the page promises (a state shown, a row present), never for intermediate states that timing may
skip, so each passes alone and in any order. The `dashboard` fixture fails a test whose page logged a
JavaScript error or sent a request off the machine or without the key.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from aztrain.cli.client import ApiError
from tests.browser.conftest import Dashboard
from tests.e2e import test_local_loop
from tests.e2e.conftest import Stack, wait_for
from tests.e2e.test_local_loop import TRAINING_TIMEOUT, manifest, upload_data, wait_terminal

TRAINING_MS = TRAINING_TIMEOUT * 1000
#: web-drop's versions are promoted only when they beat the current one.
GATED = 'registry: {promote_if: "accuracy > best"}\n'
EVENT_MS = 90_000  # a blob's BlobCreated event reaching the app: seconds, unless the machine is very busy
digits_blob = test_local_loop.digits_blob  # the digits data set as a blob


def run_row(page: Page, job: str) -> Any:
    return page.locator("tbody tr[data-run]").filter(has_text=job)


def test_runs_page_follows_a_dropped_manifest_through_its_states(
    stack: Stack, dashboard: Dashboard, digits_blob: bytes
) -> None:
    upload_data(stack, "web-drop", digits_blob)
    page = dashboard.open("runs?job=web-drop")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    # Every state the row shows, as it shows it.
    page.evaluate(
        """() => {
            window.seen = [];
            new MutationObserver(() => {
                const state = document.querySelector("tbody tr[data-run] .state")?.textContent;
                if (state && state !== window.seen.at(-1)) window.seen.push(state);
            }).observe(document.querySelector("tbody"), {childList: true, subtree: true});
        }"""
    )

    stack.data.write("jobs", "manifests/web-drop.yaml", manifest("web-drop", extra=GATED))

    # The row appears and changes without a reload; which states a 2 s poll catches on the way is timing.
    row = run_row(page, "web-drop")
    expect(row.locator(".state")).to_have_text("COMPLETED", timeout=TRAINING_MS)
    seen = page.evaluate("window.seen")
    assert seen[-1] == "COMPLETED", seen
    cells = row.locator("td")
    expect(cells.nth(3)).to_have_text("manifest")
    assert float(cells.nth(6).inner_text()) > 0.8  # accuracy
    expect(cells.nth(5)).to_have_text(re.compile(r"\d s$"))  # duration
    dashboard.at_widths("runs")
    page.emulate_media(color_scheme="dark")
    dashboard.screenshot("runs-dark")
    page.emulate_media(color_scheme="light")

    states = page.get_by_label("State")
    states.select_option("RUNNING")
    expect(page.get_by_text("No runs match.")).to_be_visible()
    assert page.url.endswith("#/runs?job=web-drop&state=RUNNING")  # the filtered view can be shared
    states.select_option("COMPLETED")
    expect(row).to_have_count(1)

    # The finished run: every state it went through with the time spent there, and all its epochs.
    row.get_by_role("link").click()
    stays = page.locator(".timeline li")
    expect(stays.first).to_contain_text("ACCEPTED")
    expect(stays.last).to_contain_text("COMPLETED")
    # Every state the row showed is in the history, in the order it showed them.
    shown = stays.evaluate_all("stays => stays.map((stay) => stay.dataset.state)")
    remaining = iter(shown)
    assert all(state in remaining for state in seen), (seen, shown)
    expect(page.locator(".timeline .spent").first).to_have_text(re.compile(r"\d s$"))
    expect(page.locator("figure.chart").filter(has_text="Loss").locator(".point")).to_have_count(3)
    expect(page.locator(".log")).to_contain_text("epoch 3/3")
    expect(page.get_by_role("link", name="web-drop v1")).to_be_visible()


def test_run_page_plots_epochs_while_training_and_cancels_after_confirmation(
    stack: Stack, dashboard: Dashboard, digits_blob: bytes
) -> None:
    upload_data(stack, "web-live", digits_blob)
    run = stack.client.submit(manifest("web-live", epochs=400)).run
    page = dashboard.open(f"runs/{run.id}")

    loss = page.locator("figure.chart").filter(has_text="Loss").locator(".point")
    expect(loss.first).to_be_attached(timeout=TRAINING_MS)
    expect(loss).not_to_have_count(loss.count(), timeout=60_000)  # points are only ever added
    expect(page.locator(".log")).to_contain_text("epoch")
    dashboard.at_widths("run")

    dashboard.open("clusters")
    busy = page.locator(f"tr[data-cluster={stack.client.run(run.id).cluster}]")
    expect(busy).to_contain_text("1 observed / 1 desired")
    expect(busy).to_contain_text("in use")
    dashboard.at_widths("clusters")
    dashboard.open(f"runs/{run.id}")

    # Escape keeps the run; only the dialog's own button cancels it.
    page.get_by_role("button", name="Cancel run…").press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Cancel run {run.id}?")
    expect(dialog.get_by_role("button", name="Keep running")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    assert not stack.client.run(run.id).terminal

    page.get_by_role("button", name="Cancel run…").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel run").click()
    expect(page.get_by_role("status")).to_contain_text("Cancel requested")
    expect(page.locator(".run-head .badge")).to_have_text("CANCELED", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel run…")).to_have_count(0)
    expect(page.locator(".timeline")).to_contain_text("CANCEL_REQUESTED")
    assert stack.client.run(run.id).state == "CANCELED"


def test_jobs_page_shows_arrivals_in_the_pending_window(stack: Stack, dashboard: Dashboard) -> None:
    # No data yet, so no first run: the job only watches, and the window collects what arrives.
    watched = manifest("web-watch").decode() + "retrain: {on_data_arrival: true, debounce: 1h, cooldown: 0s}\n"
    stack.client.submit(watched.encode())
    page = dashboard.open("jobs")
    card = page.locator("article[data-job=web-watch]")
    expect(card.locator(".arrivals")).to_have_text("0")
    expect(card).to_contain_text("web-watch")
    # A blob's event time is its Last-Modified, in whole seconds: one written in the very second the
    # watch began reads as older than the watch and is not an arrival. Upload from the next second on.
    began = next(j for j in stack.client.jobs() if j.name == "web-watch").updated_at
    wait_for(lambda: datetime.now(UTC) >= began.replace(microsecond=0) + timedelta(seconds=1), timeout=5, what="1 s")

    for name in ("a.npz", "b.npz"):
        stack.data.write("datasets", f"web-watch/{name}", b"new data")

    expect(card.locator(".arrivals")).to_have_text("2", timeout=EVENT_MS)
    expect(card.locator(".reason")).to_contain_text("debouncing")
    expect(card).to_contain_text("in ")  # when the window fires
    expect(card.locator("code").first).to_have_text("datasets/web-watch/")
    dashboard.at_widths("jobs")


def test_clusters_page_shows_a_cluster_back_at_zero_after_its_run(
    stack: Stack, dashboard: Dashboard, digits_blob: bytes
) -> None:
    upload_data(stack, "web-zero", digits_blob)
    run = stack.client.submit(manifest("web-zero", epochs=1)).run
    assert run is not None
    cluster = wait_terminal(stack, run.id).cluster
    page = dashboard.open("clusters")
    row = page.locator(f"tr[data-cluster={cluster}]")
    expect(row).to_contain_text("0 observed / 0 desired", timeout=60_000)
    expect(row).to_contain_text("after the last run")


def test_cost_page_shows_this_months_spend_and_where_the_prices_come_from(stack: Stack, dashboard: Dashboard) -> None:
    page = dashboard.open("cost")
    expect(page.get_by_role("heading", level=1)).to_have_text("Cost")
    expect(page.get_by_text(re.compile(r"^\d{4}-\d{2}, in USD; prices: eastus, \d{4}-\d{2}-\d{2}$"))).to_be_visible()
    teams = page.get_by_role("table", name="Spend per team this month")
    expect(teams.locator("tbody tr").first).to_be_visible()  # a team's row, or that nothing was spent yet


def test_dead_letters_page_shows_an_event_given_up_on_with_its_reason(stack: Stack, dashboard: Dashboard) -> None:
    wrong = {
        **test_local_loop.blob_created("datasets", "x.csv", "web-dead-1"),
        "eventType": "Microsoft.Storage.BlobDeleted",
    }
    test_local_loop.enqueue(stack, wrong)  # through the blob-events queue, as Event Grid writes it
    page = dashboard.open("deadletters")
    expect(page.get_by_role("heading", level=1)).to_have_text("Dead letters")
    row = page.locator("tr[data-event='web-dead-1']")
    expect(row).to_contain_text("not a Microsoft.Storage.BlobCreated event", timeout=EVENT_MS)
    expect(row).to_contain_text("on_blob_event")


def test_models_page_compares_versions_and_shows_lineage_down_to_the_blobs(
    stack: Stack, dashboard: Dashboard, digits_blob: bytes
) -> None:
    upload_data(stack, "web-models", digits_blob)
    versions = []
    for epochs in (3, 1):  # v2 trains fewer epochs, so it is less accurate and does not beat v1
        run = stack.client.submit(manifest("web-models", epochs=epochs, extra=GATED)).run
        assert run is not None and wait_terminal(stack, run.id).state == "COMPLETED"
        versions.append(run.id)
    page = dashboard.open("models/web-models")
    card = page.locator("article[data-model=web-models]")
    expect(card.locator("tr[data-version]")).to_have_count(2)
    expect(card.locator("tr[data-version='1']")).to_contain_text("★ current")
    expect(card.locator("tr[data-version='2']")).to_contain_text("not promoted")
    expect(card.locator("figure.chart").filter(has_text="Accuracy by version").locator(".point")).to_have_count(2)

    card.get_by_role("link", name="v1", exact=True).click()
    lineage = page.get_by_role("region", name="Lineage of web-models v1")
    expect(lineage).to_contain_text("datasets/web-models/digits.npz")
    expect(lineage.get_by_role("link")).to_have_text(versions[0].rsplit("-", 1)[1])  # its short id
    dashboard.at_widths("models")


def test_data_from_users_is_shown_as_text_never_run_as_markup(stack: Stack, dashboard: Dashboard) -> None:
    hostile = '<img src=x onerror="window.injected=1">'
    rejected = manifest("web-hostile").decode().replace("{epochs: 3}", f"{{'{hostile}': 1}}")
    with pytest.raises(ApiError) as refused:
        stack.client.submit(rejected.encode())
    page = dashboard.open(f"runs/{refused.value.body['run']['id']}")
    expect(page.locator(".error")).to_contain_text(hostile)
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.injected") is None


def test_every_view_is_reachable_from_the_keyboard(dashboard: Dashboard) -> None:
    page = dashboard.open("runs")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    views = (("Jobs", "Jobs and retraining windows"), ("Clusters", "Clusters"), ("Models", "Models"), ("Cost", "Cost"))
    for link, heading in views:
        page.get_by_role("navigation").get_by_role("link", name=link).focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", level=1)).to_have_text(heading)
        expect(page.locator("main")).to_be_focused()  # the next Tab goes into the view, not back to the top
