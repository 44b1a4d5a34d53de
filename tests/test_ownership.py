"""Who runs a grid point, fast: ``Ledger.holder_of`` (the ownership rule) and ``Ledger.reap_stale`` (trials whose
coordinator is gone), on a real ``Sweep``'s ledger whose study is an in-memory Optuna study: no journal, no trial processes.

The whole-sweep tests in test_sweep.py (``-m slow``) show the same rules end to end, in minutes; these say which
rule broke, in about a second.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState, create_trial

from lab.sweep import STALE_AFTER_S, Sweep, SweepSpec
from tests.conftest import TINY_RECIPE

P, Q = {"train.seed": 0}, {"train.seed": 1}  # the two points of the grid
OTHER_HOST = "another-machine"  # not this one
assert OTHER_HOST != socket.gethostname()


@pytest.fixture
def sweep(tmp_path) -> Sweep:
    """A coordinator of a two-point grid, as ``lab sweep`` makes it, on an empty in-memory study."""
    recipe = {**TINY_RECIPE, "track": {**TINY_RECIPE["track"], "runs_dir": str(tmp_path)}}
    coordinator = Sweep("own", SweepSpec(recipe="tiny", grid={"train.seed": [0, 1]}), recipe)
    coordinator.ledger.study = optuna.create_study(study_name="own")  # no storage: in memory
    return coordinator


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process of this host that has ended (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    """The pid of a process of this host that is running (ended after the test)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def add(sweep: Sweep, point: dict, state: TrialState) -> optuna.trial.FrozenTrial:
    """A finished trial of ``point`` (complete, failed or pruned), numbered next."""
    sweep.study.add_trial(create_trial(state=state, value=1.0 if state == TrialState.COMPLETE else None,
                                       user_attrs={"grid": point}))
    return sweep.study.trials[-1]


def running(sweep: Sweep, point: dict, **attrs) -> optuna.trial.Trial:
    """A trial of ``point`` enqueued and handed out by ``ask()`` (RUNNING), with the user attributes given."""
    sweep.ledger.enqueue(point)
    trial = sweep.study.ask()
    assert trial.user_attrs["grid"] == point
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    return trial


def state(sweep: Sweep, trial) -> TrialState:
    return sweep.study.trials[trial.number].state


# --- the ownership rule: Ledger.holder_of ------------------------------------------------


def test_of_two_unfinished_trials_of_a_point_the_higher_numbered_steps_aside(sweep):
    sweep.ledger.enqueue(P)
    sweep.ledger.enqueue(P)  # two machines enqueued the grid at once
    sweep.ledger.enqueue(Q)
    first, second, other = sweep.study.trials
    assert (first.state, second.state) == (TrialState.WAITING, TrialState.WAITING)
    assert sweep.ledger.holder_of(second, P) == 0 and sweep.ledger.holder_of(first, P) is None
    assert sweep.ledger.holder_of(other, Q) is None  # another point's trials hold nothing of it
    asked = [sweep.study.ask() for _ in range(3)]  # handed out to workers: RUNNING, the same rule
    assert [t.number for t in asked] == [0, 1, 2] and state(sweep, asked[1]) == TrialState.RUNNING
    assert sweep.ledger.holder_of(asked[1], P) == 0 and sweep.ledger.holder_of(asked[0], P) is None
    assert sweep.ledger.holder_of(asked[2], Q) is None


def test_a_complete_trial_holds_its_point_even_over_a_lower_numbered_one(sweep):
    sweep.ledger.enqueue(P)  # trial 0, still waiting
    done = add(sweep, P, TrialState.COMPLETE)  # trial 1: the point already ran (say, on another machine)
    waiting = sweep.study.trials[0]
    assert sweep.ledger.holder_of(waiting, P) == done.number == 1
    sweep.ledger.enqueue(P)  # a later rerun enqueues the point once more: it steps aside too
    assert sweep.ledger.holder_of(sweep.study.trials[2], P) in (0, 1)


def test_failed_pruned_and_lost_trials_hold_nothing(sweep):
    add(sweep, P, TrialState.FAIL)  # 0: its worker died
    add(sweep, P, TrialState.PRUNED)  # 1: stepped aside earlier
    lost = add(sweep, P, TrialState.COMPLETE)  # 2: complete, but its run record is gone
    sweep.ledger.lost = {lost.number}
    sweep.ledger.enqueue(P)
    again = sweep.study.trials[3]
    assert sweep.ledger.holder_of(again, P) is None  # the point runs again
    sweep.ledger.lost = set()
    assert sweep.ledger.holder_of(again, P) == lost.number


# --- stale trials: Ledger.reap_stale -----------------------------------------------------


def test_a_trial_whose_worker_died_on_this_host_is_failed_and_its_point_returned(sweep, dead_pid):
    host = socket.gethostname()
    dead = running(sweep, P, worker=f"{host}:{dead_pid}:0badc0de", heartbeat=time.time())
    # an earlier coordinator that had this very pid (this process is not it: its token differs)
    earlier = running(sweep, Q, worker=f"{host}:{os.getpid()}:0ldc0de0", heartbeat=time.time())
    assert [t.user_attrs["grid"] for t in sweep.ledger.reap_stale()] == [P, Q]
    for trial in (dead, earlier):
        assert state(sweep, trial) == TrialState.FAIL
        assert "lost" in sweep.study.trials[trial.number].user_attrs["failure"]
    assert sweep.ledger.reap_stale() == []  # failed once: a second look (or another coordinator) returns nothing


def test_live_workers_keep_their_trials(sweep, live_pid, dead_pid):
    host = socket.gethostname()
    trials = [
        running(sweep, P, worker=f"{host}:{live_pid}:a11ve000", heartbeat=time.time() - 120),  # alive, quiet a while
        running(sweep, Q, worker=sweep.ledger.worker_id, heartbeat=time.time() - 120),  # this coordinator's own
        # another machine's, heartbeat fresh: its pid says nothing here, even where no such process runs
        running(sweep, P, worker=f"{OTHER_HOST}:{dead_pid}:e15e0000", heartbeat=time.time() - STALE_AFTER_S + 60),
        running(sweep, Q),  # just handed out by ask(), not yet claimed
    ]
    assert sweep.ledger.reap_stale() == []
    assert [state(sweep, t) for t in trials] == [TrialState.RUNNING] * 4


def test_a_trial_without_a_heartbeat_for_stale_after_s_is_failed(sweep, live_pid):
    now = time.time()
    quiet = running(sweep, P, worker=f"{OTHER_HOST}:{live_pid}:0ff11ne0", heartbeat=now - STALE_AFTER_S - 30)
    fresh = running(sweep, Q, worker=f"{OTHER_HOST}:{live_pid}:0411ve00", heartbeat=now - STALE_AFTER_S + 60)
    unclaimed = running(sweep, Q, heartbeat=now - 90)  # asked for, never claimed: its coordinator died in between
    add(sweep, P, TrialState.COMPLETE)
    sweep.ledger.enqueue(Q)  # waiting and finished trials are not the reaper's
    assert [t.user_attrs["grid"] for t in sweep.ledger.reap_stale()] == [P, Q]
    assert [state(sweep, t) for t in (quiet, fresh, unclaimed)] == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]
    assert [t.state for t in sweep.study.trials[3:]] == [TrialState.COMPLETE, TrialState.WAITING]


# --- trial parameters: enqueued with the point, read back through suggest_categorical -------------------


def test_a_claimed_point_has_its_values_as_parameters_also_when_queued_by_an_older_lab(sweep, tmp_path):
    """``lab`` enqueues a point with its values as fixed parameters; a study whose waiting trials an older
    ``lab`` enqueued without them (the sampler would pick the values) queues those points again, with them."""
    sweep.log_dir = tmp_path / "logs"
    for seed in (0, 1):
        sweep.study.enqueue_trial({}, user_attrs={"grid": {"train.seed": seed}})  # as an older lab did
    claims = []
    while (claim := sweep.claim()) is not None:
        claims.append(claim)
        sweep.running.claims.pop(claim.trial.number)
        sweep.study.tell(claim.trial, 1.0)
    assert sorted(c.trial.params["train.seed"] for c in claims) == [0, 1]
    assert all(c.trial.params == c.trial.user_attrs["grid"] for c in claims)
    assert sorted(c.config.train.seed for c in claims) == [0, 1]
    done = sweep.study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["train.seed"] for t in done) == [0, 1]
    assert all("queued again" in t.user_attrs.get("skipped", "queued again") for t in sweep.study.trials
               if t.state == TrialState.PRUNED)
