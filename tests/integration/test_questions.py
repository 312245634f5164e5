"""The question log in the real Redis: outcomes, per-day stats, retention, hashed users, clustering."""

from __future__ import annotations

import time

import redis

from ragcord.questions import QuestionLog, cluster_questions, total


def log_for(redis_url: str, prefix: str, **kw) -> QuestionLog:
    return QuestionLog(redis.Redis.from_url(redis_url), prefix=prefix, **kw)


def test_outcomes_make_the_days_stats(redis_url, key_prefix):
    log = log_for(redis_url, key_prefix)
    now = time.time()
    log.record("kb", "q1", "a", user="u1", found=True, thread_id=11, at=now - 60)
    log.record("kb", "q2", "b", user="u2", found=False, thread_id=12, at=now - 50)
    log.record("kb", "q3", "c", user="u1", found=True, at=now - 40)
    log.mark("q1", "up")
    log.mark("q3", "down")
    log.mark_thread(12, "handed_off")
    log.mark_thread(12, "solved_staff")
    log.mark_thread(11, "solved_asker")
    assert not log.mark("missing", "up")

    days = log.stats("kb")
    all_days = total(days)
    assert (all_days.questions, all_days.answered, all_days.up, all_days.down) == (3, 2, 1, 1)
    assert (all_days.handed_off, all_days.solved, all_days.solved_without_staff) == (1, 2, 1)
    assert round(all_days.answered_rate, 2) == 0.67 and all_days.up_rate == 0.5
    assert [r.id for r in log.questions("kb")] == ["q3", "q2", "q1"]  # newest first
    assert {r.id for r in log.questions("kb") if r.unanswered} == {"q2", "q3"}
    assert log.questions("kb", since=now - 45)[0].id == "q3"


def test_users_are_salted_hashes_and_old_questions_leave(redis_url, key_prefix):
    log = log_for(redis_url, key_prefix, retention_seconds=3600)
    log.record("kb", "old", "x", user="alice", found=False, at=time.time() - 7200)
    log.record("kb", "new", "y", user="alice", found=False)
    assert [r.id for r in log.questions("kb")] == ["new"]
    user = log.questions("kb")[0].user
    assert user != "alice" and user == log_for(redis_url, key_prefix).user_hash("alice")  # the kept salt
    assert log_for(redis_url, key_prefix, salt="other").user_hash("alice") != user


def test_greedy_clusters_join_the_first_close_seed():
    from ragcord.questions import QuestionRecord

    def rec(i: int) -> QuestionRecord:
        return QuestionRecord(str(i), "kb", f"q{i}", "u", "not_found", 100.0 - i)

    vectors = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.95, 0.05]]
    clusters = cluster_questions([rec(i) for i in range(4)], vectors)
    assert [(c.count, c.examples) for c in clusters] == [(3, ["q0", "q1", "q3"]), (1, ["q2"])]
