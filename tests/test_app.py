"""The studio's pages through Streamlit's AppTest, on the digits dataset with tiny configs."""

import json
import os
import pickle
import time
from concurrent.futures import Future
import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from wsscl_core.studio import embed
from wsscl_core.studio.jobs import SessionJobs
from wsscl_core.methods import make_config

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(autouse=True)
def no_umap_worker(monkeypatch):
    """No UMAP worker process in these tests: UMAP requests stay pending (PCA is shown meanwhile), unless a
    test resolves them (``umap_requests``)."""
    monkeypatch.setattr(embed, "start_warm_up", lambda: None)
    requests = []

    def pending(features, reference="before"):
        future = Future()
        requests.append((future, features))
        return future

    monkeypatch.setattr(embed, "submit_umap", pending)
    yield requests
    for future, _ in requests:
        future.cancel()


def make_app(ws, page: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.session_state["workspace"] = ws
    at.session_state["workspace_key"] = f"digits-{id(ws)}"
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture()
def app(digits_workspace):
    return make_app(digits_workspace)


def jobs_of(at: AppTest) -> SessionJobs:
    return at.session_state["jobs"]


def start_ft(at: AppTest, epochs: int) -> None:
    at.switch_page("pages/unlearn.py")
    at.run()
    at.selectbox(key="method").set_value("ft").run()
    at.number_input(key="hp.ft.class.epochs").set_value(epochs)
    at.button(key="run").click().run()
    assert not at.exception, at.exception


def poll_until_finished(at: AppTest, limit_s: float = 120) -> None:
    """AppTest does not fire run_every itself: rerun as the browser's polling would."""
    deadline = time.monotonic() + limit_s
    while jobs_of(at).current.running and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    at.run()
    assert not jobs_of(at).current.running


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def chart_titles(at: AppTest) -> list[str]:
    return [(spec.get("layout", {}).get("title") or {}).get("text", "") for spec in chart_specs(at)]


def test_home_explains_and_offers_the_demo(app):
    assert app.title[0].value == "WSS-CL unlearning studio"
    assert any("Computing on" in info.value for info in app.info)
    assert app.button[0].label == "Run the default demo"


def test_idle_training_threads_sleep_unless_the_user_chose_otherwise(monkeypatch, digits_workspace):
    """Spinning OpenMP threads took the browser's and the server's core (docs/BENCHMARKS.md, Studio timings)."""
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    make_app(digits_workspace)
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    make_app(digits_workspace)
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("page", ["pages/model.py", "pages/unlearn.py", "pages/compare.py", "pages/methods.py",
                                  "pages/saliency.py"])
def test_every_page_renders_its_defaults(digits_workspace, page):
    at = make_app(digits_workspace, page)
    assert not at.error, [e.value for e in at.error]


def test_unlearn_defaults_come_from_the_method_config(app):
    app.switch_page("pages/unlearn.py").run()
    assert app.selectbox(key="method").value == "wsscl"
    class_config = make_config("wsscl", scenario="class")
    assert app.number_input(key="hp.wsscl.class.tau").value == class_config.tau
    assert app.number_input(key="hp.wsscl.class.stage1_epochs").value == class_config.stage1_epochs
    class_lr, random_lr = make_config("wsscl", scenario="class").stage1_lr, make_config("wsscl").stage1_lr
    assert class_lr != random_lr
    assert app.number_input(key="hp.wsscl.class.stage1_lr").value == class_lr
    app.radio(key="forget_kind").set_value("A random subset").run()
    assert app.number_input(key="hp.wsscl.random.stage1_lr").value == random_lr
    slider = app.slider(key="forget_percent")
    assert (slider.min, slider.max) == (1, 99)  # 0 % and 100 % cannot be chosen
    assert any("Forget set:" in md.value for md in app.markdown)


def test_saliency_page_starts_with_the_soft_mask_wsscl_uses_for_the_forget_set(app):
    app.switch_page("pages/saliency.py").run()
    assert not app.exception, app.exception
    class_default = make_config("wsscl", scenario="class").mask_normalisation
    assert class_default != make_config("wsscl").mask_normalisation
    assert app.selectbox(key="saliency_norm").value == class_default  # the studio's default forget set is a class


def test_choices_survive_a_visit_to_another_page(app):
    app.switch_page("pages/unlearn.py").run()
    app.radio(key="forget_kind").set_value("A random subset").run()
    app.slider(key="forget_percent").set_value(30).run()
    app.selectbox(key="method").set_value("ft").run()
    app.number_input(key="hp.ft.random.epochs").set_value(2).run()
    app.switch_page("pages/saliency.py").run()
    app.switch_page("pages/unlearn.py").run()
    assert not app.exception, app.exception
    assert app.radio(key="forget_kind").value == "A random subset"
    assert app.slider(key="forget_percent").value == 30
    assert app.selectbox(key="method").value == "ft"
    assert app.number_input(key="hp.ft.random.epochs").value == 2


def test_short_run_completes_and_shows_on_compare(app):
    start_ft(app, epochs=1)
    poll_until_finished(app)
    assert jobs_of(app).current.status == "done"
    assert any("finished" in s.value for s in app.success)
    assert "Losses per phase" in chart_titles(app)
    app.switch_page("pages/compare.py").run()
    assert not app.exception and not app.error
    table = app.dataframe[0].value
    assert {"UA", "RA", "TA", "MIA", "Avg.Gap", "RTE (s)"} <= set(table.columns)
    assert list(table.index)[:2] == ["Original", f"#{jobs_of(app).current.number} FT"]
    titles = " | ".join(chart_titles(app))
    assert "Penultimate features (PCA" in titles and "confusion" in titles and "MIA" in titles


def test_a_run_ended_by_its_stop_rule_says_so(app):
    """The forget_stop option is an input like any hyperparameter; when it ends GA early, the run panel says
    at which step and on which accuracies."""
    app.switch_page("pages/unlearn.py").run()
    app.radio(key="forget_kind").set_value("A random subset").run()
    app.slider(key="forget_percent").set_value(20).run()
    app.selectbox(key="method").set_value("ga").run()
    for key, value in (("epochs", 20), ("lr", 0.005), ("batch_size", 32)):
        app.number_input(key=f"hp.ga.random.{key}").set_value(value)
    app.selectbox(key="hp.ga.random.forget_stop").set_value("holdout")
    app.button(key="run").click().run()
    assert not app.exception, app.exception
    poll_until_finished(app)
    assert jobs_of(app).current.status == "done"
    notes = [info.value for info in app.info if "ended at step" in info.value]
    assert len(notes) == 1 and "held-out images" in notes[0]
    app.switch_page("pages/compare.py").run()  # the run's views, computed in the background, are drawn
    assert not app.exception and not app.error


def test_stop_ends_the_run_within_a_second(app):
    original = {k: v.clone() for k, v in app.session_state["workspace"].original.state_dict().items()}
    start_ft(app, epochs=500)
    job = jobs_of(app).current
    while not job.events:
        time.sleep(0.05)
    app.run()
    stop = app.button(key=f"stop-{job.number}")
    assert stop.label == "Stop training"
    clicked = time.monotonic()
    stop.click().run()
    assert job.wait(1.0) and time.monotonic() - clicked < 1.0 + 0.5  # the worker ends within a second
    app.run()
    assert job.status == "cancelled"
    assert any("Stopped" in w.value for w in app.warning)
    current = app.session_state["workspace"].original.state_dict()
    assert all((current[k] == v).all() for k, v in original.items())


def loss_points(at: AppTest) -> int:
    spec = next(spec for spec, title in zip(chart_specs(at), chart_titles(at)) if title == "Losses per phase")
    return sum(len(trace.get("x", [])) for trace in spec["data"])


def test_live_charts_wait_for_their_refresh_and_show_every_step_once_the_run_ends(app, monkeypatch):
    """While a run goes on, the live view's charts are rebuilt only every ``CHART_REFRESH_S`` once they have a
    point (the polls in between send the same figures); once it has ended they hold every step."""
    from pages import widgets

    monkeypatch.setattr(widgets, "CHART_REFRESH_S", 3600.0)
    start_ft(app, epochs=500)
    job = jobs_of(app).current
    deadline = time.monotonic() + TIMEOUT
    while loss_points(app) == 0 and time.monotonic() < deadline:  # an empty chart is rebuilt at every poll
        time.sleep(0.05)
        app.run()
    drawn = loss_points(app)
    seen = len(job.events)
    while len(job.events) < seen + 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    app.run()
    assert job.running and loss_points(app) == drawn  # new steps, the same figure until the refresh
    app.button(key=f"stop-{job.number}").click().run()
    assert job.wait(5.0)
    app.run()
    steps = [e for e in job.events if e.event.kind in ("step", "phase_end")]
    assert loss_points(app) == len(steps) > drawn


def test_second_run_is_refused_with_a_message(app):
    start_ft(app, epochs=500)
    app.button(key="run").click().run()
    assert any("still running" in e.value for e in app.error)
    jobs_of(app).current.stop()


@pytest.mark.parametrize("field, value, message", [("epochs", 0, "epochs must be at least 1"),
                                                   ("lr", 0.0, "Learning rate"), ("lr", 1e9, "Learning rate")])
def test_bad_hyperparameters_show_the_library_message(app, field, value, message):
    app.switch_page("pages/unlearn.py").run()
    app.selectbox(key="method").set_value("ft").run()
    app.number_input(key=f"hp.ft.class.{field}").set_value(value)
    app.button(key="run").click().run()
    assert any(message in e.value for e in app.error), [e.value for e in app.error]
    assert "jobs" not in app.session_state or app.session_state["jobs"].current is None


def test_batch_larger_than_the_forget_set_is_shown(app):
    app.switch_page("pages/unlearn.py").run()
    app.selectbox(key="method").set_value("ft").run()
    app.number_input(key="hp.ft.class.epochs").set_value(1)
    app.number_input(key="hp.ft.class.batch_size").set_value(100_000)
    app.button(key="run").click().run()
    assert any("batch_size = 100000" in w.value for w in app.warning)
    poll_until_finished(app)


def test_two_sessions_keep_their_own_runs(digits_workspace, digits, digits_checkpoint):
    from wsscl_core.workspace import open_workspace

    alice = make_app(digits_workspace)
    bob = make_app(open_workspace(digits_checkpoint, digits, device="cpu"))
    start_ft(alice, epochs=1)
    start_ft(bob, epochs=2)
    poll_until_finished(alice)
    poll_until_finished(bob)
    assert jobs_of(alice) is not jobs_of(bob)
    (alice_run,), (bob_run,) = jobs_of(alice).results("unlearn"), jobs_of(bob).results("unlearn")
    assert alice_run.unlearned.config["epochs"] == 1 and bob_run.unlearned.config["epochs"] == 2
    alice.switch_page("pages/compare.py").run()
    assert [i for i in alice.dataframe[0].value.index if i.startswith("#")] == [f"#{alice_run.number} FT"]


# --------------------------------------------------------------------------- uploads

def upload_app(payload: bytes, model_name: str | None = None) -> AppTest:
    """AppTest cannot drive a file uploader; run the page's upload handler on the bytes instead."""

    def script(payload: bytes, model_name: str | None) -> None:
        import streamlit as st

        from pages import session

        if session.adopt_upload(payload, "digits", model_name):
            st.success("loaded")

    at = AppTest.from_function(script, args=(payload, model_name), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


class _RunsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("payload, message", [
    (b"", "empty"),
    (b"not a checkpoint at all", "the uploaded file"),
    (pickle.dumps(_RunsCode()), "refused"),
], ids=["empty", "not-a-checkpoint", "code-carrying"])
def test_bad_uploads_show_the_library_error(payload, message):
    at = upload_app(payload)
    assert any(message in e.value for e in at.error), [e.value for e in at.error]
    assert not at.success


def test_truncated_upload_shows_an_error(digits_checkpoint):
    at = upload_app(digits_checkpoint[: len(digits_checkpoint) // 2])
    assert at.error and not at.success


def test_architecture_mismatch_shows_an_error(digits_checkpoint):
    at = upload_app(digits_checkpoint, "resnet18")
    assert any("does not fit" in e.value for e in at.error)


def test_good_upload_is_adopted(digits_checkpoint):
    assert upload_app(digits_checkpoint).success


def test_upload_size_limit_is_configured_and_stated(app):
    limit = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    assert 50 <= limit < 200  # a ResNet-18 checkpoint (~45 MB) fits; Streamlit's default 200 MB is lowered
    app.switch_page("pages/model.py").run()
    uploader = app.get("file_uploader")[0]
    assert f"at most {limit} MB" in uploader.proto.label


def test_missing_dataset_shows_the_message_and_the_app_keeps_working(app):
    app.switch_page("pages/model.py").run()
    app.selectbox(key="train_dataset").set_value("cifar10")
    app.button(key="train_button").click().run()
    assert any("cifar10 is not in" in e.value for e in app.error)
    app.switch_page("pages/unlearn.py").run()
    assert not app.exception and not app.error

