"""Background jobs: results, refusal of a second run, Stop, heartbeat, bounded history, failures, isolation."""

import copy
import threading
import time

import pytest
import torch

from wsscl_core.data import ForgetSpec
from wsscl_core.engine import Phase, ProgressEvent, Round, StepOutput, check_cancel, run_phases
from wsscl_core.errors import WssclError
from wsscl_core.studio.jobs import Job, QueuedJob, SessionJobs, UnlearnRequest, prepare_run, saliency_work, unlearn_work

CLASS_3 = ForgetSpec("class", (3,))


def _wait_running(job: Job, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not job.events and job.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.events, "the run never reported progress"


def _idle_until_cancelled(job: Job) -> str:
    while True:
        check_cancel(job.cancel)
        time.sleep(0.01)


def _start_unlearn(jobs: SessionJobs, ws, method: str = "ft", **overrides) -> Job:
    prepared = prepare_run(ws, UnlearnRequest(CLASS_3, method, overrides))
    return jobs.start("unlearn", method, unlearn_work(ws, prepared))


def test_run_completes_with_events_and_result(digits_workspace):
    jobs = SessionJobs(heartbeat_timeout_s=None)
    job = _start_unlearn(jobs, digits_workspace, epochs=1)
    assert job.wait(120)
    assert job.status == "done", job.error
    record = job.result
    assert record.unlearned.label == "FT" and record.retrain is None
    assert {e.stage for e in job.events} == {"FT"}
    assert any(e.event.losses for e in job.events)
    assert jobs.results("unlearn") == [record]


def test_a_phase_ended_by_its_stop_rule_is_named(digits_workspace):
    """GA with the stop rule on, random forgetting: the job says which phase stopped early, at which step and
    on which accuracies; a run without the rule says nothing."""
    jobs = SessionJobs(heartbeat_timeout_s=None)
    spec = ForgetSpec("random", fraction=0.2)
    for rule in ("holdout", "off"):
        prepared = prepare_run(digits_workspace, UnlearnRequest(spec, "ga", {"epochs": 20, "lr": 0.005,
                                                                            "batch_size": 32, "forget_stop": rule}))
        job = jobs.start("unlearn", "ga", unlearn_work(digits_workspace, prepared))
        assert job.wait(120) and job.status == "done", job.error
        notes = job.early_stops()
        if rule == "off":
            assert notes == []
            continue
        end = next(e.event for e in job.events if e.event.kind == "phase_end")
        assert len(notes) == 1 and notes[0].startswith("GA: Gradient ascent on D_f ended at step ")
        assert f"step {int(end.metrics['stopped_at_step'])} of {end.total_steps}," in notes[0]
        assert end.metrics["stopped_at_step"] < end.total_steps


def test_waiting_for_the_first_progress_returns_as_soon_as_it_comes_or_the_run_ends():
    gate = threading.Event()

    def report_then_idle(job: Job) -> None:
        gate.wait(5)
        job.progress("work")(ProgressEvent("step", "p", "Phase", 0, 1, 0, 1, 1, 10))
        _idle_until_cancelled(job)

    jobs = SessionJobs(heartbeat_timeout_s=None)
    job = jobs.start("unlearn", "reports", report_then_idle)
    assert not job.wait_for_progress(0.05)
    gate.set()
    began = time.monotonic()
    assert job.wait_for_progress(5) and time.monotonic() - began < 2
    job.stop()
    assert job.wait(5)
    silent = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "fails", lambda job: 1 / 0)
    began = time.monotonic()
    assert not silent.wait_for_progress(5) and time.monotonic() - began < 2


def test_second_run_is_refused_while_one_runs():
    jobs = SessionJobs()
    first = jobs.start("unlearn", "first", _idle_until_cancelled)
    with pytest.raises(WssclError, match="still running"):
        jobs.start("unlearn", "second", _idle_until_cancelled)
    first.stop()
    assert first.wait(2)
    jobs.start("unlearn", "third", lambda job: 3).wait(2)
    assert jobs.results("unlearn") == [3]


def test_stop_ends_a_real_run_within_a_second_and_keeps_the_original(digits_workspace):
    before = copy.deepcopy(digits_workspace.original.state_dict())
    jobs = SessionJobs()
    job = _start_unlearn(jobs, digits_workspace, epochs=500)
    _wait_running(job)
    stopped_at = time.monotonic()
    job.stop()
    assert job.status == "cancelled"  # the page sees it at once
    assert job.wait(1.0), "the worker did not end within a second of Stop"
    assert time.monotonic() - stopped_at < 1.0
    assert job.status == "cancelled" and "unchanged" in job.error
    assert jobs.results("unlearn") == []
    for name, tensor in digits_workspace.original.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_a_run_nobody_polls_cancels_itself():
    jobs = SessionJobs(heartbeat_timeout_s=0.3)
    job = jobs.start("unlearn", "orphan", _idle_until_cancelled)
    assert job.wait(3)
    assert job.status == "cancelled" and "watching" in job.error


def test_polling_keeps_a_run_alive():
    jobs = SessionJobs(heartbeat_timeout_s=0.3)
    job = jobs.start("unlearn", "watched", _idle_until_cancelled)
    for _ in range(10):
        job.touch()
        time.sleep(0.1)
    assert job.running
    job.stop()
    assert job.wait(2)


def test_history_is_bounded():
    jobs = SessionJobs(history_size=3)
    for value in range(6):
        jobs.start("unlearn", f"run {value}", lambda job, v=value: v).wait(2)
    assert jobs.results("unlearn") == [3, 4, 5]


def test_diverging_run_fails_with_message_and_keeps_earlier_results(digits_workspace):
    jobs = SessionJobs(heartbeat_timeout_s=None)
    jobs.start("unlearn", "earlier", lambda job: "earlier result").wait(2)
    before = copy.deepcopy(digits_workspace.original.state_dict())

    def nan_loss(model, batch):
        return StepOutput(model(batch.x).sum() * float("nan"))

    def diverging(job: Job):
        model = copy.deepcopy(digits_workspace.original)
        phase = Phase("bad", "Diverging", [Round("all", torch.arange(64), nan_loss)], epochs=1, lr=0.1, batch_size=32)
        run_phases(model, digits_workspace.data, [phase], on_progress=job.progress("bad"), cancel=job.cancel)
        return model

    job = jobs.start("unlearn", "diverging", diverging)
    assert job.wait(30)
    assert job.status == "failed" and "diverged" in job.error
    assert jobs.results("unlearn") == ["earlier result"]
    for name, tensor in digits_workspace.original.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_unexpected_errors_become_a_message():
    def broken(job: Job):
        raise KeyError("oops")

    job = SessionJobs().start("unlearn", "broken", broken)
    assert job.wait(2)
    assert job.status == "failed" and "KeyError" in job.error


def test_two_sessions_run_at_once_and_keep_their_own_results(digits_workspace, digits, digits_checkpoint):
    from wsscl_core.workspace import open_workspace

    other_ws = open_workspace(digits_checkpoint, digits, device="cpu")
    alice, bob = SessionJobs(heartbeat_timeout_s=None), SessionJobs(heartbeat_timeout_s=None)
    job_a = _start_unlearn(alice, digits_workspace, epochs=1)
    job_b = _start_unlearn(bob, other_ws, "ga", epochs=1)
    assert job_a.wait(120) and job_b.wait(120)
    assert [r.unlearned.label for r in alice.results("unlearn")] == ["FT"]
    assert [r.unlearned.label for r in bob.results("unlearn")] == ["GA"]


@pytest.mark.parametrize("spec, overrides, message", [
    (ForgetSpec("random", fraction=0.0), {}, "fraction"),
    (ForgetSpec("random", fraction=1.0), {}, "fraction"),
    (CLASS_3, {"epochs": 0}, "epochs"),
    (CLASS_3, {"lr": 0.0}, "Learning rate"),
    (CLASS_3, {"lr": 1e6}, "Learning rate"),
])
def test_bad_parameters_are_refused_before_any_work(digits_workspace, spec, overrides, message):
    with pytest.raises(WssclError, match=message):
        prepare_run(digits_workspace, UnlearnRequest(spec, "ft", overrides))


def test_batch_larger_than_the_forget_set_is_noted(digits_workspace):
    prepared = prepare_run(digits_workspace, UnlearnRequest(CLASS_3, "ft", {"batch_size": 5000}))
    assert any("batch_size = 5000" in note for note in prepared.notes)


def test_job_threads_do_not_pile_up():
    jobs = SessionJobs(history_size=2)
    baseline = threading.active_count()
    for value in range(5):
        jobs.start("unlearn", "quick", lambda job, v=value: v).wait(2)
    assert threading.active_count() <= baseline


# --------------------------------------------------------------------------- queues, per-kind history, saliency

def test_a_queue_runs_one_after_the_other_in_order():
    order, gate = [], threading.Event()

    def step(name, wait=False):
        def work(job: Job):
            if wait:
                gate.wait(5)
            order.append(name)
            return name
        return work

    jobs = SessionJobs(heartbeat_timeout_s=None)
    first = jobs.start_queue([QueuedJob("unlearn", "a", step("a", wait=True)), QueuedJob("unlearn", "b", step("b")),
                              QueuedJob("unlearn", "c", step("c"))])
    assert jobs.busy and jobs.batch_position == (1, 3) and [q.title for q in jobs.queue] == ["b", "c"]
    with pytest.raises(WssclError, match="still running"):
        jobs.start("unlearn", "other", step("x"))
    gate.set()
    assert first.wait(5)
    deadline = time.monotonic() + 5
    while jobs.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    assert order == ["a", "b", "c"] and jobs.results("unlearn") == ["a", "b", "c"]
    assert not jobs.busy and jobs.current.title == "c"


@pytest.mark.parametrize("ending", ["stop", "failure"])
def test_a_stopped_or_failed_run_drops_the_rest_of_its_queue(ending):
    ran = []

    def first(job: Job):
        if ending == "failure":
            raise WssclError("bad settings")
        _idle_until_cancelled(job)

    jobs = SessionJobs(heartbeat_timeout_s=None)
    job = jobs.start_queue([QueuedJob("unlearn", "first", first),
                            QueuedJob("unlearn", "second", lambda job: ran.append("second"))])
    if ending == "stop":
        jobs.stop()
    assert job.wait(5)
    time.sleep(0.1)
    assert ran == [] and not jobs.queue and not jobs.busy and jobs.current is job
    assert job.status == ("cancelled" if ending == "stop" else "failed")


def test_history_is_kept_per_kind():
    jobs = SessionJobs(history_size=2)
    jobs.start("unlearn", "run", lambda job: "run").wait(2)
    for value in range(4):
        jobs.start("saliency", "saliency", lambda job, v=value: v).wait(2)
    assert jobs.results("unlearn") == ["run"] and jobs.results("saliency") == [2, 3]
    assert [j.kind for j in jobs.history] == ["unlearn", "saliency", "saliency"]


def test_saliency_job_gives_the_forget_gradients(digits_workspace):
    from wsscl_core.data import make_forget_split
    from wsscl_core.saliency import forget_gradients

    split = make_forget_split(digits_workspace.data.train.labels, CLASS_3)
    job = SessionJobs(heartbeat_timeout_s=None).start("saliency", "s", saliency_work(digits_workspace, split, "ws"))
    assert job.wait(60) and job.status == "done", job.error
    assert job.events and all(e.stage == "Saliency" for e in job.events)
    expected = forget_gradients(digits_workspace.original, digits_workspace.data, split.forget)
    assert job.result.spec == CLASS_3 and job.result.workspace_id == "ws"
    for name, grad in expected.items():
        torch.testing.assert_close(job.result.grads[name], grad)


def test_saliency_job_stops(digits_workspace):
    from wsscl_core.data import make_forget_split

    split = make_forget_split(digits_workspace.data.train.labels, ForgetSpec("random", fraction=0.9))
    job = Job("saliency", "s", saliency_work(digits_workspace, split, "ws"), None)
    job.stop()  # pressed before the first chunk: the computation must not run to the end
    job.start()
    assert job.wait(5) and job.status == "cancelled" and job.result is None


def test_the_reference_loader_is_asked_once_when_retrain_was_not_asked_for(digits_workspace):
    calls = []

    def shipped():
        calls.append(1)
        return None  # no file for this split: the record simply has no Retrain

    prepared = prepare_run(digits_workspace, UnlearnRequest(CLASS_3, "ft", {"epochs": 1}))
    job = SessionJobs(heartbeat_timeout_s=None).start("unlearn", "ft", unlearn_work(digits_workspace, prepared, shipped))
    assert job.wait(120) and job.status == "done" and calls == [1] and job.result.retrain is None
