"""``gridctl ui`` over HTTP: the real command serving a real local sweep (SPEC section 12)."""

from __future__ import annotations

import json

import pytest
from conftest import Gridctl
from scripts import METRICS_STEPS, METRICS_SWEEP, WEIGHTS
from webview import WebView

RATES = (0.5, 1.0, 2.0)


def loss(step: int, lr: float) -> float:
    return 1 / (1 + step * lr)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Gridctl:
    """One finished 3-experiment sweep, shared: the tests only read it."""
    root = tmp_path_factory.mktemp("ui")
    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text(METRICS_SWEEP)
    gridctl = Gridctl(root / "home", project)
    rates = json.dumps(list(RATES))
    result = gridctl("run", "--name", "webview", "--wait", "train.py", "--lr", rates)
    assert result.returncode == 0, result.stderr
    return gridctl


@pytest.fixture(scope="module")
def view(sweep: Gridctl):
    served = WebView(sweep)
    yield served
    served.stop()


def test_runs_api_is_what_status_prints(view: WebView, sweep: Gridctl):
    assert view.api("/api/runs") == sweep.json("status")


def test_a_runs_api_gives_its_experiments_with_their_last_metrics(view: WebView, sweep: Gridctl):
    found = view.api("/api/runs/webview")
    status = sweep.status("webview")
    assert {k: v for k, v in found.items() if k != "experiments"} == {
        k: v for k, v in status.items() if k != "experiments"
    }
    for shown, expected, lr in zip(found["experiments"], status["experiments"], RATES, strict=True):
        last = METRICS_STEPS - 1
        assert shown.pop("last_metrics") == {"loss": loss(last, lr), "acc": 1 - loss(last, lr)}
        assert shown == expected


def test_an_experiments_api_lists_params_attempts_and_artifacts(view: WebView):
    found = view.api("/api/experiments/webview-exp1")
    assert found["run"] == "webview"
    assert found["name"] == "webview-exp1"
    assert found["status"] == "succeeded"
    assert found["params"] == {"lr": 1.0}
    assert found["argv"] == ["python", "train.py", "--lr", "1.0"]
    assert [a["status"] for a in found["attempts"]] == ["succeeded"]
    assert found["artifacts"] == [
        {"path": "metrics.jsonl", "size": found["artifacts"][0]["size"]},
        {"path": "out/weights.bin", "size": len(WEIGHTS)},
    ]


def test_the_metrics_api_gives_every_step(view: WebView):
    assert view.api("/api/experiments/webview-exp2/metrics") == {
        "loss": [[step, loss(step, 2.0)] for step in range(METRICS_STEPS)],
        "acc": [[step, 1 - loss(step, 2.0)] for step in range(METRICS_STEPS)],
    }


def test_the_log_api_gives_the_tail(view: WebView):
    reply = view.get("/api/experiments/webview-exp0/log?tail=1")
    assert reply.status == 200
    assert reply.text.endswith(" trained 0.5\n")
    assert reply.text.count("\n") == 1


def test_an_artifact_downloads_byte_for_byte(view: WebView):
    reply = view.get("/files/webview-exp0/out/weights.bin")
    assert reply.status == 200
    assert reply.body == WEIGHTS
    assert reply.headers["content-disposition"] == "attachment; filename*=UTF-8''weights.bin"


def test_the_pages_show_the_sweep(view: WebView):
    runs = view.get("/")
    assert runs.status == 200
    assert 'href="/runs/webview"' in runs.text
    page = view.get("/runs/webview").text
    for index in range(len(RATES)):
        assert f'href="/experiments/webview-exp{index}"' in page
    assert page.count('<figure class="chart" data-metric="loss">') == 1
    assert page.count('<figure class="chart" data-metric="acc">') == 1
    experiment = view.get("/experiments/webview-exp2").text
    assert 'href="/files/webview-exp2/out/weights.bin"' in experiment
    assert "trained 2.0" in experiment


PAGES = (
    "/",
    "/runs/webview",
    "/experiments/webview-exp0",
    "/files/webview-exp0/out/weights.bin",
    "/static/ui.js",
    "/api/runs",
    "/api/runs/webview",
    "/api/experiments/webview-exp0",
    "/api/experiments/webview-exp0/metrics",
    "/api/experiments/webview-exp0/log",
)


@pytest.mark.parametrize("path", PAGES)
def test_nothing_is_served_without_the_token(view: WebView, path: str):
    assert view.get(path, token=False).status == 401
    wrong = view.get(path, token=False, headers={"Authorization": "token not-it"})
    assert wrong.status == 401
    assert b"weights" not in wrong.body and b"webview-exp" not in wrong.body


def test_the_token_in_the_address_becomes_a_cookie_and_leaves_the_address(view: WebView):
    welcome = view.get(f"/runs/webview?token={view.token}", token=False)
    assert welcome.status == 303
    assert welcome.headers["location"] == "/runs/webview"
    cookie = welcome.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    again = view.get("/runs/webview", token=False, headers={"Cookie": cookie.split(";")[0]})
    assert again.status == 200
    assert "webview-exp2" in again.text
    api = view.get(f"/api/runs?token={view.token}", token=False)
    assert api.status == 200  # programs keep the token in the address


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/nope",
        "/api/experiments/nope-exp0",
        "/api/experiments/webview-exp9",
        "/api/experiments/webview",  # a run is not an experiment
        "/api/experiments/webview-exp0/nope",
        "/runs/Not_A_Name",
        "/experiments/webview-exp9",
        "/nope",
        "/static/nope.js",
    ],
)
def test_unknown_names_are_404(view: WebView, path: str):
    reply = view.get(path)
    assert reply.status == 404
    if path.startswith("/api/"):
        assert "error" in reply.json()


@pytest.mark.parametrize(
    "path",
    [
        "/files/webview-exp0/../../spec.json",
        "/files/webview-exp0/%2e%2e/status.json",
        "/files/webview-exp0/out/%2e%2e/%2e%2e/log",
        "/files/webview-exp0/..%2fstatus.json",
        "/files/webview-exp0//etc/passwd",
        "/files/webview-exp0/%2fetc%2fpasswd",
        "/files/..%2fwebview-exp0/metrics.jsonl",
        "/files/webview-exp0/out",
        "/static/..%2fserver.py",
        "/static/../server.py",
    ],
)
def test_no_path_escapes_the_listed_artifacts(view: WebView, path: str):
    reply = view.get(path)
    assert reply.status == 404, (path, reply.body[:200])


def test_it_is_read_only(view: WebView, sweep: Gridctl):
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = view.get("/api/runs/webview", method=method)
        assert reply.status == 405, method
        assert reply.headers["allow"] == "GET, HEAD"
    assert sweep.status("webview")["status"] == "succeeded"
    assert view.get("/files/webview-exp0/out/weights.bin").body == WEIGHTS


def test_head_answers_without_a_body(view: WebView):
    reply = view.get("/files/webview-exp0/out/weights.bin", method="HEAD")
    assert reply.status == 200
    assert reply.headers["content-length"] == str(len(WEIGHTS))
    assert reply.body == b""


def test_a_bad_tail_is_a_bad_request(view: WebView):
    reply = view.get("/api/experiments/webview-exp0/log?tail=-3")
    assert reply.status == 400
    assert "tail" in reply.json()["error"]


def test_a_port_in_use_or_out_of_range_is_one_line_and_exit_2(view: WebView, sweep: Gridctl):
    taken = sweep("ui", "--port", str(view.port), timeout=60)
    assert taken.returncode == 2
    assert taken.stderr.startswith(f"gridctl: error: cannot listen on 127.0.0.1:{view.port}")
    assert taken.stderr.count("\n") == 1
    bad = sweep("ui", "--port", "70000", timeout=60)
    assert bad.returncode == 2
    assert bad.stderr == "gridctl: error: --port 70000: use 0 to 65535\n"
