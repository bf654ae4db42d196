"""The teaching features through AppTest on digits: Retrain references used automatically, links that restore
choices, the methods view with its one-click queue, the stoppable saliency job, and the point detail on Compare."""

import collections
import json
import time

import numpy as np
import pytest
from test_app import chart_titles, jobs_of, make_app, poll_until_finished
from test_app import no_umap_worker  # noqa: F401  (autouse fixture: no UMAP worker process)

from pages import cache, session
from wsscl_core.data import ForgetSpec
from wsscl_core.engine import TrainRecipe
from wsscl_core.studio import compare, embed, references
from wsscl_core.workspace import open_workspace, train_original

CLASS_3 = ForgetSpec("class", (3,))


@pytest.fixture(scope="module")
def digits_references(tmp_path_factory, digits, digits_checkpoint):
    """Retrain for class 3 at seed 0, and the original's scores, built for the digits original the same way
    the shipped ones are."""
    folder = tmp_path_factory.mktemp("references")
    ws = open_workspace(digits_checkpoint, digits, device="cpu")
    entry = references.build_reference(ws, CLASS_3, 0, folder)
    references.write_manifest(ws, [entry], folder)
    references.build_original_scores(ws, folder)
    return folder


@pytest.fixture()
def with_references(monkeypatch, digits_references):
    monkeypatch.setattr(references, "REFERENCE_DIR", digits_references)
    cache.shipped_references.clear()
    yield digits_references
    cache.shipped_references.clear()


def choose_class(at, index: int) -> None:
    at.radio(key="forget_class").set_value(index).run()


def start(at, method: str = "ft", epochs: int = 1, scenario: str = "class") -> None:
    at.selectbox(key="method").set_value(method).run()
    at.number_input(key=f"hp.{method}.{scenario}.epochs").set_value(epochs)
    at.button(key="run").click().run()
    assert not at.exception, at.exception


def compare_table(at):
    return at.dataframe[0].value


def shown_cells(at, index: int = 0) -> set[str]:
    """The texts the table shows in its cells."""
    return {str(v) for v in at.dataframe[index].value.to_numpy().ravel()}


# --------------------------------------------------------------------------- Retrain references

def test_a_shipped_reference_gives_avg_gap_with_the_first_result(digits_workspace, with_references):
    at = make_app(digits_workspace, "pages/unlearn.py")
    choose_class(at, 3)
    assert any("ships with the studio" in i.value for i in at.info)
    assert not any(c.key == "with_retrain" for c in at.checkbox)
    start(at)
    poll_until_finished(at)
    record = jobs_of(at).current.result
    assert record.retrain is not None and record.retrain.label == references.SHIPPED_LABEL
    gap = [m for m in at.metric if m.label == "Avg.Gap to Retrain"]
    assert gap and gap[0].value == f"{record.gap():.2f}"

    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error
    table = compare_table(at)
    assert "Retrain (shipped)" in table.index
    row = table.loc[f"#{record.number} FT"]
    assert np.isfinite(float(row["Avg.Gap"])) and np.isfinite(float(row["RTE / Retrain"]))
    assert float(row["Avg.Gap"]) == pytest.approx(record.gap(), abs=0.006)
    assert "None" not in shown_cells(at) and "—" in shown_cells(at)  # the Original's RTE
    embedding = json.loads(at.get("plotly_chart")[0].proto.spec)
    titles = [a["text"] for a in embedding["layout"]["annotations"]]
    assert titles == ["Original", "FT", "Retrain (shipped)"]


def test_other_splits_offer_retrain_and_show_dashes_for_missing_cells(digits_workspace, with_references):
    at = make_app(digits_workspace, "pages/unlearn.py")
    choose_class(at, 4)  # no reference for class 4
    assert any(c.key == "with_retrain" for c in at.checkbox)
    start(at)
    poll_until_finished(at)
    assert jobs_of(at).current.result.retrain is None
    at.switch_page("pages/compare.py").run()
    table = compare_table(at)
    assert (table["Avg.Gap"] == "—").all() and "Retrain (shipped)" not in table.index
    cells = shown_cells(at)
    assert "—" in cells and not cells & {"None", "nan", "NaN", "<NA>"}
    assert any("No Retrain for this forget set yet" in i.value for i in at.info)


def test_the_original_row_comes_from_the_shipped_scores_without_scoring_again(digits_workspace, with_references,
                                                                            monkeypatch):
    """Where the original's scores were shipped for a split, no run scores it again (the work would compete
    with the run's training); elsewhere it is scored, once."""
    ws = digits_workspace
    split = references.split_for(ws, CLASS_3)
    expected = compare.score(ws, ws.original, split, 0)
    scored = []
    monkeypatch.setattr(compare, "score", lambda *args: scored.append(args[3]) or expected)
    monkeypatch.setattr(compare, "_original_scores", collections.OrderedDict())
    shipped = compare.original_scores(ws, split, 0)
    assert shipped.done() and not scored
    for key, value in expected.scores().items():
        assert shipped.result().scores()[key] == pytest.approx(value, abs=1e-6), key
    assert compare.original_scores(ws, split, 5).result() is expected and scored == [5]  # no seed 5 shipped
    assert compare.original_scores(ws, split, 5).result() is expected and scored == [5]


def test_references_for_another_original_are_ignored_with_a_note(digits, with_references):
    other, meta = train_original(digits, "compact", TrainRecipe(epochs=2, lr=0.05, batch_size=64), seed=1,
                                 device="cpu")
    from wsscl_core.checkpoints import checkpoint_bytes

    ws = open_workspace(checkpoint_bytes(other, meta), digits, device="cpu")
    at = make_app(ws)
    at.session_state["workspace_key"] = "default"  # as if the shipped model had changed
    at.switch_page("pages/unlearn.py").run()
    choose_class(at, 3)
    assert any(c.key == "with_retrain" for c in at.checkbox)
    assert any("built for another original model" in c.value for c in at.caption)
    start(at)
    poll_until_finished(at)
    assert jobs_of(at).current.result.retrain is None


# --------------------------------------------------------------------------- links

def test_a_link_restores_the_choices_and_runs_nothing(digits_workspace):
    at = make_app(digits_workspace)
    at.switch_page("pages/unlearn.py")
    at.query_params = {"forget": "random:0.2", "seed": "2", "method": "ft", "set": ["epochs=3", "lr=0.02"]}
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.radio(key="forget_kind").value == "A random subset"
    assert at.slider(key="forget_percent").value == 20 and at.number_input(key="forget_seed").value == 2
    assert at.selectbox(key="method").value == "ft"
    assert at.number_input(key="hp.ft.random.epochs").value == 3
    assert at.number_input(key="hp.ft.random.lr").value == 0.02
    assert "jobs" not in at.session_state or jobs_of(at).current is None
    shared = [c.value for c in at.code if "forget=" in c.value]
    assert shared and "set=epochs%3D3" in shared[0] and "forget=random%3A0.2" in shared[0]


def test_the_url_follows_the_choices(digits_workspace):
    at = make_app(digits_workspace, "pages/unlearn.py")
    choose_class(at, 5)
    at.selectbox(key="method").set_value("ga").run()
    at.number_input(key="hp.ga.class.epochs").set_value(7).run()
    assert at.query_params["forget"] == "class:5" and at.query_params["method"] == "ga"
    assert at.query_params["set"] == "epochs=7"


def test_bad_link_values_are_reported_and_the_rest_is_restored(digits_workspace):
    at = make_app(digits_workspace)
    at.switch_page("pages/unlearn.py")
    at.query_params = {"forget": "class:42", "method": "ft", "set": ["nonsense=1", "epochs=many"]}
    at.run()
    errors = " ".join(e.value for e in at.error)
    assert "class that does not exist" in errors and "nonsense" in errors and "'many'" in errors
    assert at.selectbox(key="method").value == "ft" and not at.exception


def test_a_comparison_link_offers_the_run_and_shows_it(digits_workspace):
    at = make_app(digits_workspace)
    at.switch_page("pages/compare.py")
    at.query_params = {"forget": "class:2", "method": "ft", "seed": "0", "set": "epochs=1"}
    at.run()
    button = at.button(key="run_link")
    assert button.label == "Run FT on class:2" and "jobs" not in at.session_state or jobs_of(at).current is None
    button.click().run()
    poll_until_finished(at)
    at.run()
    assert not at.exception and not at.error
    record = jobs_of(at).current.result
    assert record.request.spec.classes == (2,) and record.unlearned.config["epochs"] == 1
    assert list(compare_table(at).index)[:2] == ["Original", f"#{record.number} FT"]


# --------------------------------------------------------------------------- methods view

def test_one_click_queues_the_methods_and_the_methods_view_compares_them(digits_workspace, with_references,
                                                                          monkeypatch):
    monkeypatch.setattr(session, "CLASS_DEMO_METHODS", ("ft", "ga"))
    at = make_app(digits_workspace, "pages/methods.py")
    at.selectbox(key="methods_demo_class").set_value(3).run()
    button = at.button(key="methods_demo")
    assert button.label == "Run FT and GA on class 3"  # Retrain is shipped for class 3: not queued
    button.click().run()
    jobs = jobs_of(at)
    assert jobs.batch_total == 2
    deadline = time.monotonic() + 120
    while jobs.busy and time.monotonic() < deadline:
        time.sleep(0.3)
        at.run()
    at.run()
    assert [r.unlearned.label for r in jobs.results("unlearn")] == ["FT", "GA"]
    assert not at.exception and not at.error
    gaps = at.dataframe[0].value
    assert list(gaps.columns) == ["UA", "RA", "TA", "MIA", "Avg.Gap"] and len(gaps) == 2
    titles = " | ".join(chart_titles(at))
    assert "Gap to Retrain per metric" in titles and "confusion minus Retrain" in titles and "MIA" in titles


def test_the_class_demo_queues_retrain_when_none_is_shipped(digits_workspace, with_references, monkeypatch):
    monkeypatch.setattr(session, "CLASS_DEMO_METHODS", ("ft",))
    at = make_app(digits_workspace, "pages/methods.py")
    at.selectbox(key="methods_demo_class").set_value(4).run()
    assert at.button(key="methods_demo").label == "Run FT and Retrain on class 4"


# --------------------------------------------------------------------------- saliency

def test_saliency_runs_as_a_job_and_shows_the_kernels(digits_workspace):
    at = make_app(digits_workspace, "pages/saliency.py")
    assert jobs_of(at).current.kind == "saliency"
    poll_until_finished(at)
    assert not at.exception and not at.error
    titles = " | ".join(chart_titles(at))
    assert "Saliency of body.0.0.weight" in titles and "kernels of 3×3" in titles and "Layer sizes" in titles
    at.radio(key="saliency_layout").set_value("matrix").run()
    assert "each block of 9 columns" in " ".join(chart_titles(at))
    assert any("of the model's" in md.value and "selected" in md.value for md in at.markdown)


def test_saliency_can_be_stopped(digits_workspace, monkeypatch):
    from wsscl_core.studio import jobs as jobs_module

    real = jobs_module.forget_gradients

    def slow(*args, on_progress=None, **kwargs):
        def tick(event):
            on_progress(event)
            time.sleep(0.5)

        return real(*args, on_progress=tick, **kwargs)

    monkeypatch.setattr(jobs_module, "forget_gradients", slow)
    at = make_app(digits_workspace, "pages/saliency.py")
    job = jobs_of(at).current
    while not job.events:
        time.sleep(0.05)
    at.run()
    stop = at.button(key=f"stop-{job.number}")
    assert stop.label == "Stop"
    stop.click().run()
    assert job.wait(1.5) and job.status == "cancelled"
    at.run()
    assert any("Stopped" in w.value for w in at.warning)
    assert at.button(key="saliency_start").label == "Compute the saliency"


# --------------------------------------------------------------------------- Compare's linked views

def test_a_selected_point_shows_the_image_under_every_model(digits_workspace, with_references):
    at = make_app(digits_workspace, "pages/unlearn.py")
    choose_class(at, 3)
    start(at)
    poll_until_finished(at)
    number = jobs_of(at).current.result.number
    at.switch_page("pages/compare.py").run()
    at.session_state[f"selected-{number}"] = 0
    at.run()
    assert not at.exception
    assert "Predicted probabilities (* = true class)" in chart_titles(at)
    captions = [caption for image in at.main if type(image).__name__ == "Image" for caption in image.captions]
    assert any(c.startswith("train image #") for c in captions)
    listed = " ".join(md.value for md in at.markdown)
    assert all(f"- {name}:" in listed for name in ("Original", "FT", "Retrain (shipped)"))


def test_umap_replaces_pca_when_it_is_ready(digits_workspace, no_umap_worker):
    at = make_app(digits_workspace, "pages/unlearn.py")
    start(at)
    poll_until_finished(at)
    at.switch_page("pages/compare.py").run()
    assert any(t.startswith("Penultimate features (PCA") for t in chart_titles(at))
    future, features = no_umap_worker[-1]
    assert set(features) == {"before", "after"}
    future.set_result(embed.aligned_embedding(features, "before", "pca").__class__(
        "umap", "before", {k: v[:, :2] for k, v in features.items()}, 0.0))
    at.run()
    assert any(t.startswith("Penultimate features (UMAP") for t in chart_titles(at))
