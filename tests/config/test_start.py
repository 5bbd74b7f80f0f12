"""`start` keeps the platform up: a process that exits is started again (and the output
says so); only Ctrl-C / SIGTERM stops everything. Real child processes, no platform."""
import functools
import os
import subprocess
import sys
import threading
import time

import pytest

from config.management.commands import start

PY = sys.executable
spawn = functools.partial(subprocess.Popen, start_new_session=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of this test process counts as gone.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


@pytest.fixture
def supervised(monkeypatch):
    """Run start.supervise in a thread; yields (run, lines, stopping, procs)."""
    monkeypatch.setattr(start, "BACKOFF_FIRST", 0.2)
    lines, stopping, procs, threads = [], [], {}, []

    def run(commands):
        thread = threading.Thread(target=start.supervise, args=(commands, spawn, lines.append, stopping, procs),
                                  kwargs={"tick": 0.05}, daemon=True)
        thread.start()
        threads.append(thread)

    yield run, lines, stopping, procs
    stopping.append(True)
    for thread in threads:
        thread.join(5)
    start.Command.stop(procs)


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_process_that_exits_is_started_again_with_a_growing_backoff_and_the_output_says_so(supervised):
    run, lines, _, procs = supervised
    run({"web": [PY, "-c", "import sys; sys.exit(3)"], "beat": [PY, "-c", "import time; time.sleep(60)"]})
    wait_for(lambda: lines.count("web restarted") >= 2)
    beat = procs["beat"]
    assert lines[:4] == ["web exited with code 3; restarting in 0.2 s", "web restarted",
                         "web exited with code 3; restarting in 0.4 s", "web restarted"]
    # The others run on, untouched.
    assert beat.poll() is None and procs["beat"] is beat


def test_a_killed_process_leaves_nothing_behind_and_comes_back(supervised, tmp_path):
    run, lines, _, procs = supervised
    child = tmp_path / "child"
    # Like a Celery worker: a process with a child of its own (its pool).
    run({"worker": [PY, "-c", f"import subprocess, time; p = subprocess.Popen(['sleep', '60']); "
                              f"open({str(child)!r}, 'w').write(str(p.pid)); time.sleep(60)"]})
    wait_for(lambda: child.exists() and child.read_text())
    first, pool = procs["worker"], int(child.read_text())
    first.kill()
    wait_for(lambda: "worker restarted" in lines)
    assert lines[0] == "worker exited with code -9; restarting in 0.2 s"
    assert not alive(pool)
    assert procs["worker"] is not first and procs["worker"].poll() is None


def test_stopping_stops_every_process_and_restarts_none(supervised):
    run, lines, stopping, procs = supervised
    run({"web": [PY, "-c", "import time; time.sleep(60)"], "beat": [PY, "-c", "import time; time.sleep(60)"]})
    wait_for(lambda: len(procs) == 2)
    stopping.append(True)
    time.sleep(0.2)
    start.Command.stop(procs)
    assert all(proc.poll() is not None for proc in procs.values())
    time.sleep(0.3)
    assert lines == []


def test_a_process_that_ran_steadily_restarts_after_the_first_backoff_again(supervised, monkeypatch):
    monkeypatch.setattr(start, "STEADY", 0.3)
    run, lines, _, _ = supervised
    run({"web": [PY, "-c", "import sys, time; time.sleep(0.5); sys.exit(1)"]})
    wait_for(lambda: lines.count("web restarted") >= 2)
    assert lines[0] == lines[2] == "web exited with code 1; restarting in 0.2 s"
