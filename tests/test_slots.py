"""The server-wide run cap: never more than ``cap`` runs at once, first come first served, a visible place
in the line, and Stop leaves the line."""

import threading
import time

import pytest

from wsscl_core.errors import RunCancelled
from wsscl_core.studio.slots import RunSlots, default_cap


def test_thirty_sessions_at_once_run_at_most_cap_at_a_time_in_arrival_order():
    slots = RunSlots(2)
    lock = threading.Lock()
    now, peak, order = [0], [0], []

    def session(i: int) -> None:
        ticket = slots.acquire()
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
            order.append(i)
        time.sleep(0.01)
        with lock:
            now[0] -= 1
        slots.release(ticket)

    threads = []
    for i in range(30):
        threads.append(threading.Thread(target=session, args=(i,)))
        threads[-1].start()
        time.sleep(0.002)  # arrival order
    for t in threads:
        t.join(10)
    assert len(order) == 30 and peak[0] == 2
    assert slots.running == 0 and slots.waiting == 0


def test_waiting_sessions_see_their_place_and_stop_leaves_the_line():
    slots = RunSlots(1)
    holder = slots.acquire()
    places: dict[str, list[int]] = {"a": [], "b": []}
    stop_b = threading.Event()
    outcome = {}

    def wait(name: str, cancel=None) -> None:
        try:
            outcome[name] = slots.acquire(cancel, on_wait=places[name].append, poll_s=0.01)
        except RunCancelled:
            outcome[name] = "stopped"

    a = threading.Thread(target=wait, args=("a",))
    a.start()
    time.sleep(0.05)
    b = threading.Thread(target=wait, args=("b", stop_b))
    b.start()
    time.sleep(0.05)
    assert places == {"a": [1], "b": [2]} and slots.waiting == 2
    stop_b.set()
    b.join(2)
    assert outcome["b"] == "stopped" and slots.waiting == 1
    slots.release(holder)
    a.join(2)
    assert isinstance(outcome["a"], int) and slots.running == 1 and slots.waiting == 0


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("WSSCL_MAX_RUNS", "3")
    assert default_cap() == 3
    monkeypatch.setenv("WSSCL_MAX_RUNS", "0")
    with pytest.raises(ValueError, match="at least 1"):
        default_cap()
    monkeypatch.delenv("WSSCL_MAX_RUNS")
    assert default_cap() >= 1


def test_studio_jobs_of_many_sessions_wait_in_line_for_the_server_cap():
    """Three sessions press Run under a cap of one: one runs, the others show their place, Stop leaves the line."""
    from wsscl_core.studio.jobs import SessionJobs

    slots = RunSlots(1)
    release = threading.Event()
    running = []

    def work(job):
        running.append(job.number)
        release.wait(5)
        return job.number

    sessions = [SessionJobs(heartbeat_timeout_s=None, slots=slots) for _ in range(3)]
    jobs = []
    for s in sessions:
        jobs.append(s.start("unlearn", "demo", work))
        time.sleep(0.3)
    assert len(running) == 1 and slots.running == 1
    assert [j.place_in_line for j in jobs] == [0, 1, 2]
    assert "number 2 in line" in jobs[2].stage
    jobs[2].stop()
    assert jobs[2].wait(2) and jobs[2].status == "cancelled" and slots.waiting == 1
    release.set()
    assert jobs[0].wait(5) and jobs[1].wait(5)
    assert [j.status for j in jobs] == ["done", "done", "cancelled"] and running == [jobs[0].number, jobs[1].number]
    assert slots.running == 0 and slots.waiting == 0
