"""A run folder's lock: a second holder waits until the first has finished its run."""

import threading

import pytest

from trainattn.locks import fcntl, run_lock

pytestmark = pytest.mark.skipif(fcntl is None, reason="no fcntl: the lock is a no-op on this platform")


def test_second_holder_waits_for_the_first_and_sees_its_result(tmp_path):
    folder = tmp_path / "seed-0" / "taalm"
    holding, release = threading.Event(), threading.Event()
    events = []

    def first():
        with run_lock(folder):
            holding.set()
            release.wait(10)
            (folder / "result.json").write_text("{}")
            events.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(10)
    waiter = threading.Thread(target=lambda: _second(folder, events))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive(), "the second holder must block while the first holds the lock"
    release.set()
    thread.join(10)
    waiter.join(10)
    assert events == ["first done", "second saw result: True"]


def _second(folder, events):
    with run_lock(folder):
        events.append(f"second saw result: {(folder / 'result.json').is_file()}")


def test_lock_is_released_on_error_and_names_are_independent(tmp_path):
    with pytest.raises(RuntimeError), run_lock(tmp_path):
        raise RuntimeError("boom")
    with run_lock(tmp_path), run_lock(tmp_path, ".measure.lock"):  # different files: no deadlock
        pass
    with run_lock(tmp_path):  # released after the error above
        pass
    assert (tmp_path / ".lock").is_file() and (tmp_path / ".measure.lock").is_file()
