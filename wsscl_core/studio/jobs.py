"""Background runs for the studio: one worker thread per run, fed by the engine's progress events.

A browser session owns one :class:`SessionJobs`: at most one run at a time, a queue of runs to
start one after the other (a class demo: WSS-CL, then SalUn, then Retrain), plus a bounded history
of finished runs per kind (so repeated runs cannot grow memory without bound, and saliency jobs do
not push unlearning runs out). The page polls a :class:`Job` for its events and status; it never
blocks on training. A job whose pages stop polling (the tab was closed) cancels itself once its
heartbeat is older than a timeout.
"""

from __future__ import annotations

import collections
import importlib
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch

from ..data import Dataset, ForgetSpec, ForgetSplit
from ..engine import ProgressEvent, ProgressFn, TrainRecipe, check_cancel
from ..errors import RunCancelled, WssclError
from ..runs import PreparedRun, RunRequest, RunResult, execute, prepare
from ..saliency import forget_gradients
from ..workspace import Workspace, train_original
from .slots import SERVER_SLOTS, RunSlots

log = logging.getLogger(__name__)


def preload_run_imports() -> None:
    """Import what a first run would otherwise import on its way: ``torch._dynamo`` (loaded by the first
    optimizer) and scikit-learn (the membership attacks), about 3 s on a 2-core CPU. The studio calls it in
    Home's script run once Home is drawn, so the cost falls while Home is read and not after Run. (In a
    background thread instead, a run started during the import waited on it and its first point came later.)"""
    for module in ("torch._dynamo", "sklearn.svm", "sklearn.metrics"):
        importlib.import_module(module)


JobStatus = Literal["running", "done", "failed", "cancelled"]
# Browsers poll a hidden tab's timers as rarely as once a minute, so a run is only given up as
# orphaned (tab closed) after two minutes without a poll.
HEARTBEAT_TIMEOUT_S = 120.0
HISTORY_SIZE = 5
_job_numbers = itertools.count(1)


@dataclass
class JobEvent:
    """A progress event tagged with the stage it belongs to (e.g. "WSS-CL" or "Retrain")."""

    stage: str
    event: ProgressEvent
    at_s: float  # seconds since the job started, so stages line up on one time axis


class _JobCancel:
    """The cancel flag the engine polls between steps: Stop was pressed, or nobody is watching."""

    def __init__(self, job: "Job") -> None:
        self._job = job

    def is_set(self) -> bool:
        timeout = self._job.heartbeat_timeout_s
        return self._job.stop_requested.is_set() or (timeout is not None and self._job.heartbeat_age() > timeout)


class Job:
    """One background run: its events, status, and result or error message."""

    def __init__(self, kind: str, title: str, work: Callable[["Job"], Any],
                 heartbeat_timeout_s: float | None = HEARTBEAT_TIMEOUT_S,
                 on_finish: Callable[["Job"], None] | None = None, slots: RunSlots | None = SERVER_SLOTS) -> None:
        """``slots``: the server-wide run cap this job waits for (None: start at once, for scripts)."""
        self.number = next(_job_numbers)
        self.slots = slots
        self.place_in_line = 0  # > 0 while waiting for a free slot
        self.kind = kind
        self.title = title
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.events: list[JobEvent] = []
        self.stage = "Starting"
        self.status: JobStatus = "running"
        self.result: Any = None
        self.error: str | None = None
        self.started_at = time.monotonic()
        self.finished_at: float | None = None
        self.stop_requested = threading.Event()
        self._progressed = threading.Event()
        self.cancel = _JobCancel(self)
        self._heartbeat = time.monotonic()
        self._work = work
        self._on_finish = on_finish
        self._thread = threading.Thread(target=self._run, name=f"wsscl-job-{self.number}", daemon=True)

    # ---- control, called from the page
    def start(self) -> "Job":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop at once for the user; the engine sees the flag at its next step (milliseconds on CPU)."""
        self.stop_requested.set()
        if self.status == "running":
            self.error, self.status = "Stopped: the original model is unchanged.", "cancelled"

    def touch(self) -> None:
        """Heartbeat: a page is still showing this session."""
        self._heartbeat = time.monotonic()

    def heartbeat_age(self) -> float:
        return time.monotonic() - self._heartbeat

    def wait_for_progress(self, timeout: float) -> bool:
        """Block until the first progress event or the end of the run, at most ``timeout`` s; True if one came."""
        self._progressed.wait(timeout)
        return bool(self.events)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the worker ends (tests, scripts); True when it did."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self.status == "running"

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def elapsed_s(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started_at

    @property
    def latest(self) -> JobEvent | None:
        return self.events[-1] if self.events else None

    def early_stops(self) -> list[str]:
        """One sentence per phase that its stop rule ended before its last epoch (the live chart ends early)."""
        return [f"{e.stage}: {e.event.phase_label} ended at step {int(e.event.metrics['stopped_at_step'])} of "
                f"{e.event.total_steps}, once the forget set's accuracy "
                f"({e.event.metrics['stop_forget_accuracy']:.1f} %) had fallen to that of held-out images "
                f"({e.event.metrics['stop_holdout_accuracy']:.1f} %)."
                for e in self.events if e.event.kind == "phase_end" and "stopped_at_step" in e.event.metrics]

    # ---- reporting, called from the worker
    def progress(self, stage: str) -> ProgressFn:
        """A progress callback for the engine that tags events with ``stage``."""

        def record(event: ProgressEvent) -> None:
            self.stage = f"{stage}: {event.phase_label}"
            self.events.append(JobEvent(stage, event, time.monotonic() - self.started_at))
            self._progressed.set()

        return record

    def set_stage(self, text: str) -> None:
        self.stage = text

    def _wait_in_line(self, place: int) -> None:
        self.place_in_line = place
        self.stage = (f"Waiting for a free slot: number {place} in line ({self.slots.cap} run"
                      f"{'s' if self.slots.cap > 1 else ''} at a time on this server)")
        self._progressed.set()

    def _run(self) -> None:
        ticket = None
        try:
            if self.slots is not None:
                ticket = self.slots.acquire(self.cancel, on_wait=self._wait_in_line)
                self.place_in_line, self.stage = 0, "Starting"
            result = self._work(self)
            check_cancel(self.cancel)
            self.result, self.status = result, "done"
        except RunCancelled:
            reason = ("the original model is unchanged." if self.stop_requested.is_set()
                      else "nobody was watching this run (the tab was closed?).")
            self.error, self.status = f"Stopped: {reason}", "cancelled"
        except WssclError as exc:
            self.error, self.status = str(exc), "failed"
        except Exception as exc:  # a bug, not a user error: keep the app alive and say what happened
            log.exception("Job %s failed", self.title)
            self.error, self.status = f"The run failed unexpectedly ({type(exc).__name__}: {exc}).", "failed"
        finally:
            if ticket is not None:
                self.slots.release(ticket)
            self.finished_at = time.monotonic()
            self.stage = {"done": "Finished", "failed": "Failed", "cancelled": "Stopped"}[self.status]
            self._progressed.set()
            if self._on_finish is not None:
                self._on_finish(self)


@dataclass
class QueuedJob:
    """A run waiting for the one before it: started by :class:`SessionJobs` when that one succeeds."""

    kind: str
    title: str
    work: Callable[[Job], Any]


class SessionJobs:
    """One browser session's runs: at most one at a time, a queue of runs to start next, and the last
    ``history_size`` finished runs of each kind."""

    def __init__(self, history_size: int = HISTORY_SIZE, heartbeat_timeout_s: float | None = HEARTBEAT_TIMEOUT_S,
                 slots: RunSlots | None = SERVER_SLOTS) -> None:
        """``heartbeat_timeout_s`` None: runs never time out (scripts that do not poll). ``slots``: the
        server-wide cap every run of this session waits for."""
        self.slots = slots
        self.current: Job | None = None
        self.history_size = history_size
        self._history: dict[str, collections.deque[Job]] = {}
        self.queue: collections.deque[QueuedJob] = collections.deque()
        self.batch_total = 0  # runs in the current queued batch (1 for a single run)
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self._lock = threading.Lock()

    @property
    def history(self) -> list[Job]:
        """Finished jobs of every kind, oldest first."""
        return sorted((job for jobs in self._history.values() for job in jobs), key=lambda job: job.number)

    @property
    def busy(self) -> bool:
        return (self.current is not None and self.current.alive) or bool(self.queue)

    @property
    def batch_position(self) -> tuple[int, int]:
        """(which run of the current batch is going, how many the batch has), e.g. (2, 3)."""
        return self.batch_total - len(self.queue), self.batch_total

    def start(self, kind: str, title: str, work: Callable[[Job], Any]) -> Job:
        """Start ``work(job)`` in the background; refuses while another run of this session is going."""
        return self.start_queue([QueuedJob(kind, title, work)])

    def start_queue(self, items: list[QueuedJob]) -> Job:
        """Start the first of ``items`` now and each next one when the one before it has succeeded;
        a run that is stopped or fails drops the rest. Refuses while another run is going."""
        if not items:
            raise WssclError("Nothing to run.")
        with self._lock:
            if self.busy:
                doing = ("still stopping" if self.current is not None and self.current.stop_requested.is_set()
                         else "still running")
                title = self.current.title if self.current is not None else self.queue[0].title
                raise WssclError(f"“{title}” is {doing}. Wait for it to finish or press "
                                 "“Stop” before starting another run.")
            self.queue = collections.deque(items[1:])
            self.batch_total = len(items)
            job = self._launch(items[0])
        return job

    def _launch(self, item: QueuedJob) -> Job:
        """Start a job, then make it current (called with the lock held, so its end waits for this): there is
        no moment at which ``current`` is a job whose thread has not started and ``busy`` reads False."""
        job = Job(item.kind, item.title, item.work, self.heartbeat_timeout_s, on_finish=self._finished,
                  slots=self.slots)
        job.start()
        self.current = job
        return job

    def _finished(self, job: Job) -> None:
        with self._lock:
            self._history.setdefault(job.kind, collections.deque(maxlen=self.history_size)).append(job)
            if job is not self.current:
                return
            if job.status == "done" and self.queue:
                self._launch(self.queue.popleft())
            else:
                self.queue.clear()

    def stop(self) -> None:
        """Stop the current run and drop the runs queued after it."""
        with self._lock:
            self.queue.clear()
            current = self.current
        if current is not None:
            current.stop()

    def touch(self) -> None:
        if self.current is not None:
            self.current.touch()

    def results(self, kind: str) -> list[Any]:
        """Results of this session's successful runs of ``kind``, oldest first."""
        return [job.result for job in self._history.get(kind, ()) if job.status == "done"]


# --------------------------------------------------------------------------- unlearning runs

@dataclass(frozen=True)
class UnlearnRequest:
    """What the user asked for on the Unlearn page."""

    spec: ForgetSpec
    method: str
    overrides: dict = field(default_factory=dict)
    with_retrain: bool = False
    seed: int = 0
    workspace_key: str = "default"  # which original model the run started from

    def run_request(self, method: str | None = None) -> RunRequest:
        """The run pipeline's request for this method (or for ``method``, e.g. Retrain on the same split)."""
        if method is None:
            return RunRequest(self.method, self.spec, dict(self.overrides), self.seed)
        return RunRequest(method, self.spec, {}, self.seed)


@dataclass
class RunRecord:
    """A finished unlearning run: the unlearned model, and Retrain when it was asked for or shipped
    (a shipped reference, labelled "Retrain (shipped)"); models on the CPU."""

    number: int
    request: UnlearnRequest
    split: ForgetSplit
    unlearned: RunResult
    retrain: RunResult | None
    total_s: float

    @property
    def title(self) -> str:
        return f"#{self.number} {self.unlearned.label} · {self.request.spec}"

    def gap(self, reference: RunResult | None = None) -> float | None:
        return self.unlearned.gap_to(reference or self.retrain)

    @property
    def is_retrain(self) -> bool:
        """The run itself is Retrain (chosen as the method): it is its own reference."""
        return self.unlearned.method == "retrain"


@dataclass
class PreparedUnlearn:
    """A studio request checked by the run pipeline before any work starts."""

    request: UnlearnRequest
    run: PreparedRun

    @property
    def notes(self) -> list[str]:
        return self.run.notes

    @property
    def split(self) -> ForgetSplit:
        return self.run.split


def prepare_run(ws: Workspace, request: UnlearnRequest) -> PreparedUnlearn:
    """Check a request before any work starts; raises :class:`WssclError` with a message for the user."""
    return PreparedUnlearn(request, prepare(ws, request.run_request()))


def _on_cpu(result: RunResult) -> RunResult:
    result.model = result.model.cpu().eval()
    return result


def unlearn_work(ws: Workspace, prepared: PreparedUnlearn,
                 reference: Callable[[], RunResult | None] | None = None) -> Callable[[Job], RunRecord]:
    """The background work of one unlearning run (plus Retrain when asked), for :meth:`SessionJobs.start`.

    ``reference`` gives a shipped Retrain for the same split and seed (or None); it is attached when
    Retrain was not asked for, so Avg.Gap comes with the result without a Retrain run.
    """

    def work(job: Job) -> RunRecord:
        request = prepared.request
        unlearned = _on_cpu(execute(ws, prepared.run, job.progress(prepared.run.label), job.cancel))
        retrain = None
        if request.with_retrain:
            retrain_run = prepare(ws, request.run_request("retrain"))
            retrain = _on_cpu(execute(ws, retrain_run, job.progress(retrain_run.label), job.cancel))
        elif reference is not None and unlearned.method != "retrain":
            job.set_stage("Loading the shipped Retrain reference")
            shipped = reference()
            retrain = None if shipped is None else _on_cpu(shipped)
        return RunRecord(job.number, request, prepared.split, unlearned, retrain, job.elapsed_s)

    return work


# --------------------------------------------------------------------------- saliency

@dataclass
class SaliencyGradients:
    """The forget-set gradients at the original for one forget set (masks are derived from them on demand)."""

    workspace_id: str
    spec: ForgetSpec
    grads: dict[str, torch.Tensor]
    seconds: float


def saliency_work(ws: Workspace, split: ForgetSplit, workspace_id: str) -> Callable[[Job], SaliencyGradients]:
    """Background work computing the forget-set gradients at ``ws.original``: progress per chunk, stoppable."""

    def work(job: Job) -> SaliencyGradients:
        began = time.monotonic()
        grads = forget_gradients(ws.original, ws.data, split.forget, cancel=job.cancel,
                                 on_progress=job.progress("Saliency"))
        return SaliencyGradients(workspace_id, split.spec, {k: v.cpu() for k, v in grads.items()},
                                 time.monotonic() - began)

    return work


def train_work(data: Dataset, model_name: str, recipe: TrainRecipe, seed: int = 0,
               device: str | torch.device = "auto") -> Callable[[Job], Workspace]:
    """Background work that trains a new original model on ``data`` and returns its workspace.

    The recipe is checked here, before the job starts, so a bad one is refused with a message at once."""
    recipe.validate()

    def work(job: Job) -> Workspace:
        model, meta = train_original(data, model_name, recipe, seed, device,
                                     on_progress=job.progress("Original model"), cancel=job.cancel)
        model_device = next(model.parameters()).device
        return Workspace(data.to(model_device), model.eval(), meta, model_name, recipe, model_device)

    return work
