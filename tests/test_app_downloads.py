"""Downloads: the unlearned checkpoint reloads with its metadata; the report holds the table and figures."""

import pytest

from wsscl_core.studio import plots
from wsscl_core.checkpoints import checkpoint_bytes, load_model
from wsscl_core.data import ForgetSpec
from wsscl_core.studio.jobs import SessionJobs, UnlearnRequest, prepare_run, unlearn_work
from wsscl_core.metrics import evaluate
from wsscl_core.studio.report import checkpoint_metadata, html_report


@pytest.fixture()
def finished_run(digits_workspace):
    prepared = prepare_run(digits_workspace, UnlearnRequest(ForgetSpec("class", (2,)), "ft", {"epochs": 1}))
    job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "ft", unlearn_work(digits_workspace, prepared))
    assert job.wait(120) and job.status == "done", job.error
    return job.result


def test_checkpoint_download_reloads_with_metadata(digits_workspace, finished_run):
    payload = checkpoint_bytes(finished_run.unlearned.model, checkpoint_metadata(digits_workspace, finished_run))
    model, meta = load_model(payload, dataset=digits_workspace.data)
    assert meta["method"] == "ft" and meta["forget"]["text"] == "class:2"
    assert meta["metrics"]["UA"] == pytest.approx(finished_run.unlearned.evaluation.UA)
    for name, tensor in finished_run.unlearned.model.state_dict().items():
        assert (model.state_dict()[name] == tensor).all(), name


def test_report_has_settings_table_and_figures(digits_workspace, finished_run):
    original = evaluate(digits_workspace.original, digits_workspace.data, finished_run.split)
    table = plots.metrics_table({"Original": (original, None), "FT": (finished_run.unlearned.evaluation, 1.0)}, None)
    report = html_report(digits_workspace, finished_run, table,
                         [plots.mia_figure({"Original": original, "FT": finished_run.unlearned.evaluation})])
    assert "class:2" in report and "<table" in report and "MIA-efficacy" in report
    assert "Plotly.newPlot" in report and "<script src=" not in report  # plotly.js inlined: works offline


def test_metrics_table_gaps_and_time_ratio_against_retrain(digits_workspace, finished_run):
    ev = finished_run.unlearned.evaluation
    table = plots.metrics_table({"Retrain": (ev, 10.0), "FT": (ev, 2.0)}, ev, reference_rte_s=10.0)
    assert table.loc["FT", "Avg.Gap"] == 0.0 and table.loc["FT", "RTE / Retrain"] == 0.2
    assert plots.metrics_table({"FT": (ev, 2.0)}, None)["Avg.Gap"].isna().all()
