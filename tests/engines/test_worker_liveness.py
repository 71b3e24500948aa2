"""When the gateway's watchdog counts an engine worker as hung: silent too long, or
generating with its engine's step count standing still too long."""

from __future__ import annotations

import json

from openclone.engines.supervised import Liveness


def _pong(generating: int, progress: int | None) -> bytes:
    return json.dumps({"generating": generating, "progress": progress}).encode()


def test_a_worker_that_answers_nothing_is_hung_after_the_timeout() -> None:
    live = Liveness(heard=0.0, moved=0.0)
    assert live.hung(59.0, 60) is None
    reason = live.hung(61.0, 60)
    assert reason is not None and reason.startswith("answered nothing for over 60 s")
    assert live.hung(1e9, 0) is None  # 0: the watchdog is off


def test_a_worker_generating_without_steps_is_hung_and_an_idle_one_is_not() -> None:
    live = Liveness(heard=0.0, moved=0.0)
    live.pong(_pong(2, 10), 1.0)  # generating, at step 10
    for t in range(2, 70):  # it answers every ping, but its engine stays at step 10
        live.heard = float(t)
        live.pong(_pong(2, 10), float(t))
    assert live.hung(60.5, 60) is None  # 59.5 s since its last step
    reason = live.hung(61.5, 60)
    assert reason is not None and "made no progress on its requests for over 60 s" in reason

    live.pong(_pong(2, 11), 70.0)  # a step: moving again
    assert live.hung(70.5, 60) is None
    # Idle (nothing to generate) or an engine that counts no steps: never "no progress".
    for body in (_pong(0, 11), _pong(3, None)):
        quiet = Liveness(heard=0.0, moved=0.0)
        for t in range(1, 200):
            quiet.heard = float(t)
            quiet.pong(body, float(t))
        assert quiet.hung(199.5, 60) is None


def test_an_unreadable_pong_changes_nothing() -> None:
    live = Liveness(heard=0.0, moved=0.0)
    live.pong(_pong(1, 5), 1.0)
    live.pong(b"not json", 50.0)
    live.pong(b"[1, 2]", 50.0)
    assert (live.generating, live.progress, live.moved) == (True, 5, 1.0)
