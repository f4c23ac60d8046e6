"""The services list (/services/): search, filters, sort, pages, the heartbeat squares, constant queries."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard.services_list import BEATS
from health.models import ProbeResult, Service
from tests.dashboard.dashboard_fixtures import make_results, make_service, make_world, staff_client, user_client

__all__ = ["staff_client", "user_client"]

pytestmark = pytest.mark.django_db

URL = "/services/"


def names(response) -> list[str]:
    """The service names of the page's rows, in order."""
    return re.findall(r'<tr id="row-([a-z0-9_-]+)"', response.content.decode())


def test_it_sends_anonymous_users_to_the_login_page():
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_forbids_non_staff(user_client):
    assert user_client.get(URL).status_code == 403


def test_it_renders_empty(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert "No services match." in response.content.decode()


def test_it_shows_a_row_per_service_with_state_tags_latency_and_uptime(staff_client):
    web = make_service("web", status="down", tags=["edge", "eu-west"], last_latency_ms=1523.0)
    make_results(web, ["up", "up", "down", "up"])
    response = staff_client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    row = html[html.index('<tr id="row-web"') : html.index("</tr>", html.index('<tr id="row-web"'))]
    assert '<span class="badge st-down">down' in row  # colour and icon from the class, and the word
    assert '<a href="/services/web/">web</a>' in row
    assert '<a class="tag" href="?tag=edge">edge</a>' in row and ">eu-west</a>" in row
    assert "1.5 s" in row
    assert "75.00 %" in row  # 3 of 4 answered in 24 h
    assert "<caption>" in html and 'href="/services/" aria-current="page"' in html  # the nav marks the page


def test_it_draws_the_last_50_results_as_squares_newest_right_with_tooltips(staff_client):
    svc = make_service("api")
    end = timezone.now().replace(microsecond=0)
    make_results(svc, ["up"] * 59 + ["down"], end=end)  # 60 results: only the newest 50 are drawn
    html = staff_client.get(URL).content.decode()
    rects = re.findall(r'<rect class="seg seg-([a-z]+)"[^>]*><title>([^<]*)</title></rect>', html)
    assert len(rects) == BEATS == 50
    assert [state for state, _ in rects] == ["up"] * 49 + ["down"]
    newest = end.astimezone(dt.UTC)
    assert rects[-1][1] == f"{newest:%Y-%m-%d %H:%M:%S}+00:00 · down · 600 ms"
    oldest = end - dt.timedelta(seconds=60 * 49)
    assert rects[0][1].startswith(f"{oldest.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}+00:00 · up")
    assert 'aria-label="api: last 50 results: 49 up, 1 down"' in html


def test_it_pads_a_service_with_few_results_on_the_left(staff_client):
    make_results(make_service("new"), ["up", "degraded"])
    html = staff_client.get(URL).content.decode()
    states = re.findall(r'<rect class="seg seg-([a-z]+)"', html)
    assert states == ["none"] * 48 + ["up", "degraded"]
    assert html.count("<title>no result</title>") == 48


def test_it_looks_back_as_far_as_the_services_interval_needs(staff_client):
    hourly = make_service("hourly", interval=3600)
    make_results(hourly, ["up"] * 55 + ["down"], step_s=3600)  # 56 hours: the newest 50 are drawn
    minutely = make_service("minutely", interval=60)
    make_results(minutely, ["down"] * 5, end=timezone.now() - dt.timedelta(hours=10))  # 200 intervals ago
    make_results(minutely, ["up"] * 3)
    html = staff_client.get(URL, {"sort": "name"}).content.decode()
    bars = re.findall(r'<svg class="beats".*?</svg>', html)
    assert re.findall(r"seg-([a-z]+)", bars[0]) == ["up"] * 49 + ["down"]
    assert re.findall(r"seg-([a-z]+)", bars[1]) == ["none"] * 47 + ["up"] * 3  # the old results are not ranked


def test_it_searches_name_and_description(staff_client):
    make_service("db-main", description="the primary database")
    make_service("cache", description="redis for sessions")
    make_service("web")
    assert names(staff_client.get(URL, {"q": "db-"})) == ["db-main"]
    assert names(staff_client.get(URL, {"q": "REDIS"})) == ["cache"]
    assert names(staff_client.get(URL, {"q": "nothing-like-it"})) == []


def test_it_filters_by_state_and_counts_paused_as_the_dashboard_does(staff_client):
    make_service("a-up")
    make_service("b-down", status="down")
    make_service("c-paused-but-down", status="down", paused=True)
    make_service("d-disabled", enabled=False)
    make_service("e-never", status="unknown")
    make_service("f-misconf", status="misconfigured")
    assert names(staff_client.get(URL, {"state": "down"})) == ["b-down"]
    assert names(staff_client.get(URL, {"state": "paused", "sort": "name"})) == ["c-paused-but-down", "d-disabled"]
    assert names(staff_client.get(URL, {"state": "unknown"})) == ["e-never"]
    assert names(staff_client.get(URL, {"state": "misconfigured"})) == ["f-misconf"]
    assert names(staff_client.get(URL, {"state": "up"})) == ["a-up"]


def test_it_filters_by_tag_exactly(staff_client):
    make_service("a", tags=["db", "eu"])
    make_service("b", tags=["db-replica"])  # contains "db" as text, but is another tag
    make_service("c", tags=[])
    make_service("d", tags=["x_b"])  # `_` is a LIKE wildcard: it must not match "xab"
    make_service("e", tags=["xab"])
    assert names(staff_client.get(URL, {"tag": "db"})) == ["a"]
    assert names(staff_client.get(URL, {"tag": "db-replica"})) == ["b"]
    assert names(staff_client.get(URL, {"tag": "x_b"})) == ["d"]
    assert names(staff_client.get(URL, {"tag": "eu", "q": "a"})) == ["a"]


def test_it_sorts_by_each_key(staff_client):
    a = make_service("alpha", status="up", last_latency_ms=50.0)
    b = make_service("bravo", status="down", last_latency_ms=None)
    c = make_service("charlie", status="degraded", last_latency_ms=900.0)
    make_service("delta", status="up", paused=True, last_latency_ms=10.0)
    make_results(a, ["up", "down"])  # 50 %
    make_results(b, ["down", "down", "down", "up"])  # 25 %
    make_results(c, ["up"])  # 100 %; delta never probed: last
    assert names(staff_client.get(URL)) == ["bravo", "charlie", "delta", "alpha"]  # default: problems first
    assert names(staff_client.get(URL, {"sort": "state"})) == ["bravo", "charlie", "delta", "alpha"]
    assert names(staff_client.get(URL, {"sort": "name"})) == ["alpha", "bravo", "charlie", "delta"]
    assert names(staff_client.get(URL, {"sort": "-name"})) == ["delta", "charlie", "bravo", "alpha"]
    assert names(staff_client.get(URL, {"sort": "latency"})) == ["charlie", "alpha", "delta", "bravo"]
    assert names(staff_client.get(URL, {"sort": "uptime"})) == ["bravo", "alpha", "charlie", "delta"]


def test_it_pages_by_50_keeping_the_filters(staff_client):
    make_world(60, prefix="p")
    first = staff_client.get(URL, {"sort": "name", "q": "p-"})
    assert names(first) == [f"p-{i:03d}" for i in range(50)]
    html = first.content.decode()
    assert 'href="?sort=name&amp;q=p-&amp;page=2"' in html
    assert "Page 1 of 2" in html
    second = staff_client.get(URL, {"sort": "name", "q": "p-", "page": 2})
    assert names(second) == [f"p-{i:03d}" for i in range(50, 60)]
    by_uptime = staff_client.get(URL, {"sort": "uptime", "page": 2})  # the Python-sorted path pages too
    assert len(names(by_uptime)) == 10


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"sort": "fastest"}, "sort:"),
        ({"state": "sleepy"}, "state:"),
        ({"tag": "Not A Tag"}, "tag:"),
        ({"tag": "x" * 51}, "tag:"),
        ({"q": "x" * 101}, "q:"),
    ],
)
def test_it_answers_a_bad_parameter_with_a_400_naming_it(staff_client, params, named):
    make_service("web")
    response = staff_client.get(URL, params)
    assert response.status_code == 400
    html = response.content.decode()
    assert "Bad filter: " + named in html
    assert 'id="row-web"' not in html


def count_queries(client, n: int, prefix: str, sort: str, django_assert_max_num_queries) -> int:
    make_world(n, prefix=prefix, results_per_service=60)
    with django_assert_max_num_queries(12), CaptureQueriesContext(connection) as queries:
        response = client.get(URL, {"sort": sort})
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("sort", ["state", "uptime"])
def test_it_reads_a_constant_number_of_queries_for_5_and_60_services(staff_client, sort, django_assert_max_num_queries):
    with_5 = count_queries(staff_client, 5, "a", sort, django_assert_max_num_queries)
    with_65 = count_queries(staff_client, 60, "b", sort, django_assert_max_num_queries)
    assert with_5 == with_65
    assert ProbeResult.objects.count() == 65 * 60


def test_it_escapes_names_descriptions_and_search(staff_client):
    make_service("esc", description='<script>alert("d")</script>')
    response = staff_client.get(URL, {"q": '<script>"q'})
    html = response.content.decode()
    assert "<script>alert" not in html and '<script>"q' not in html
    assert 'value="&lt;script&gt;&quot;q"' in html
    html = staff_client.get(URL).content.decode()
    assert "&lt;script&gt;alert(&quot;d&quot;)&lt;/script&gt;" in html
    assert "<script>alert" not in html


def test_it_sends_no_inline_style(staff_client):
    make_results(make_service("web", tags=["a"]), ["up", "down"])
    html = staff_client.get(URL).content.decode()
    assert "style=" not in html


def test_it_shows_the_tags_on_the_service_page(staff_client):
    make_service("web", tags=["edge", "eu-west"])
    html = staff_client.get("/services/web/").content.decode()
    assert '<a class="tag" href="/services/?tag=edge">edge</a>' in html
    assert Service.objects.get(name="web").tags == ["edge", "eu-west"]
