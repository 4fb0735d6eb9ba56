import numpy as np
import pytest

from reelgraph.data.split import TEST, TRAIN, VALID, carve_valid, ratio_split, temporal_split


def _users(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_ratio_split_counts_per_user():
    users = _users([10, 20, 2, 3])
    code, stats = ratio_split(users, (0.8, 0.1, 0.1), seed=1)
    per = lambda u, c: int(((users == u) & (code == c)).sum())
    assert (per(0, TRAIN), per(0, VALID), per(0, TEST)) == (8, 1, 1)
    assert (per(1, TRAIN), per(1, VALID), per(1, TEST)) == (16, 2, 2)
    assert (per(2, TRAIN), per(2, VALID), per(2, TEST)) == (2, 0, 0)  # too small: kept, counted
    assert (per(3, TRAIN), per(3, VALID), per(3, TEST)) == (1, 1, 1)
    assert stats["kept_in_train_users"] == 1


def test_ratio_split_721_and_seeds():
    users = _users([10] * 50)
    a, _ = ratio_split(users, (0.7, 0.2, 0.1), seed=3)
    b, _ = ratio_split(users, (0.7, 0.2, 0.1), seed=3)
    c, _ = ratio_split(users, (0.7, 0.2, 0.1), seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert (np.bincount(a) == [350, 100, 50]).all()


def test_ratio_split_rejects_bad_ratios():
    with pytest.raises(ValueError):
        ratio_split(_users([5]), (0.5, 0.1, 0.1))


def test_temporal_leave_one_out():
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    ts = np.array([5, 1, 9, 3, 1, 2, 7, 7, 1])  # user 2 has a tie at t=7: input order breaks it
    code, stats = temporal_split(users, ts)
    assert code.tolist() == [VALID, TRAIN, TEST, TRAIN, TRAIN, TRAIN, VALID, TEST, TRAIN]
    assert stats["kept_in_train_users"] == 1


def test_carve_valid_only_moves_train():
    users = _users([10, 10])
    code = np.array(([TRAIN] * 8 + [TEST] * 2) * 2, dtype=np.int8)
    out, _ = carve_valid(users, code, 0.25, seed=0)
    assert (out[code == TEST] == TEST).all()
    assert [int(((users == u) & (out == VALID)).sum()) for u in (0, 1)] == [2, 2]


def test_eval_warnings_count_cold_items_and_single_nodes():
    from reelgraph.data.split import TEST, TRAIN, VALID, eval_warnings

    users = np.array([0, 0, 1, 1, 1])
    items = np.array([0, 1, 0, 2, 3])
    code = np.array([TRAIN, TEST, TRAIN, VALID, TEST])     # item 0 trained; 1, 2, 3 never
    assert eval_warnings(users, items, code, 2, 4) == {"cold_eval_interactions": 3,
                                                       "cold_eval_items": 3}
    code = np.array([TRAIN, TRAIN, TRAIN, TRAIN, TEST])    # only item 3's test pair is cold
    assert eval_warnings(users, items, code, 2, 4) == {"cold_eval_interactions": 1,
                                                       "cold_eval_items": 1}
    one = np.zeros(3, dtype=np.int64)
    assert eval_warnings(one, np.array([0, 1, 0]), np.array([TRAIN, TRAIN, TEST]), 1, 2) == {
        "single_user": 1}
