"""``benchmarks/vs_recbole.py``'s pure parts, without RecBole: reading the peer harness's output
(its SUMMARY line, or the EPOCH/EVAL lines of a run that died before it), the time to a target
on a hand-made curve (every evaluation, and only those that end a whole epoch as RecBole's do),
and the goals table's met / not met."""
import json

import pytest

from tests._bench import load_benchmark

vs = load_benchmark("vs_recbole")

LINES = [  # as ../shared/peers/recbole/run.py prints them, with RecBole's own log between
    "LOAD dataset_s=0.45 dataloaders_s=0.25 model_init_s=0.12 users=2000 items=13895",
    "EPOCH e=1 train_s=20.31 loss=13.1149 rss_mib=528",
    "07 Dec 12:32    INFO  epoch 0 training [time: 20.31s, train loss: 13.1149]",
    "EVAL e=1 eval_s=1.16 recall@20=0.0154 ndcg@20=0.0082 rss_mib=515",
    "EPOCH e=2 train_s=19.73 loss=12.7911 rss_mib=549",
    "EVAL e=2 eval_s=1.19 recall@20=0.0260 ndcg@20=0.0131 rss_mib=549",
]


def test_parse_lines_without_summary():
    out = vs.parse_peer_output(LINES)
    assert [e["epoch"] for e in out["evals"]] == [1, 2]
    assert [round(e["train_s"], 2) for e in out["evals"]] == [20.31, 40.04]  # cumulative
    assert out["evals"][1]["recall@20"] == 0.0260 and out["evals"][0]["eval_s"] == 1.16
    assert out["peak_rss_mib"] is None


def test_summary_line_wins_and_evals_get_training_time():
    summary = {"epochs": [{"epoch": 1, "train_s": 3.0, "loss": 1.0},
                          {"epoch": 2, "train_s": 5.0, "loss": 0.9}],
               "evals": [{"epoch": 2, "eval_s": 0.5, "recall@20": 0.07, "ndcg@20": 0.03}],
               "peak_rss_mib": 123.0}
    out = vs.parse_peer_output(LINES + ["SUMMARY " + json.dumps(summary)])
    assert out["evals"] == [{"epoch": 2, "eval_s": 0.5, "recall@20": 0.07, "ndcg@20": 0.03,
                             "train_s": 8.0}]
    assert out["peak_rss_mib"] == 123.0


def _curve(points):
    return [{"epoch": e, "train_s": t, "recall@20": r, "ndcg@20": r / 2, "eval_s": 1.0}
            for e, t, r in points]


def test_time_to_target_is_the_first_evaluation_at_or_above():
    curve = _curve([(0.25, 10, 0.02), (0.5, 20, 0.05), (0.75, 30, 0.049), (1.0, 40, 0.06)])
    assert vs.time_to_target_s(curve, 0.05) == 20  # equal counts, a later dip does not
    assert vs.time_to_target_s(curve, 0.055) == 40
    assert vs.time_to_target_s(curve, 0.07) is None


QUARTERS = _curve([(0.25, 10, 0.01), (0.5, 20, 0.02), (0.75, 30, 0.03), (1.0, 40, 0.04),
                   (1.25, 50, 0.05), (1.5, 60, 0.06), (1.75, 70, 0.058), (2.0, 80, 0.07)])


@pytest.mark.parametrize("target, fine, matched", [
    (0.055, 60, 80),      # reached between grid points: 1.5 fine, the next whole epoch matched
    (0.04, 40, 40),       # exactly at target, and at a whole epoch: both the same
    (0.07, 80, 80),       # exactly at target at the last (whole) evaluation
    (0.08, None, None),   # never reached
])
def test_time_to_target_fine_and_matched(target, fine, matched):
    assert vs.time_to_target_s(QUARTERS, target) == fine
    assert vs.time_to_target_s(QUARTERS, target, whole_epochs=True) == matched


def test_reached_only_at_a_fractional_point_is_none_on_the_grid():
    curve = _curve([(0.5, 20, 0.03), (1.0, 40, 0.04), (1.5, 60, 0.06), (2.0, 80, 0.05)])
    assert vs.time_to_target_s(curve, 0.06) == 60
    assert vs.time_to_target_s(curve, 0.06, whole_epochs=True) is None
    stopped = curve[:3]  # the arm stops at its first hit, inside epoch 2
    assert vs.time_to_target_s(stopped, 0.06, whole_epochs=True) is None


def test_uneven_batches_last_evaluation_of_an_epoch_is_scaled_to_it():
    tail = vs.epoch_end_tail(319, 0.25)  # Lightning: every 79 batches, the last after 316
    assert tail == pytest.approx(3 / 319)
    assert vs.epoch_end_tail(80, 0.25) == 0 and vs.epoch_end_tail(319, None) == 0
    e = [79 * j / 319 for j in range(1, 5)] + [1 + 79 * j / 319 for j in range(1, 5)]
    curve = _curve([(x, 10 * x, 0.01 * x) for x in e])
    # 0.0124 first reached at 1.2476 (fine); on the grid at 1.9906, charged to 2 whole epochs
    assert vs.time_to_target_s(curve, 0.0124) == pytest.approx(12.476, abs=1e-3)
    assert vs.time_to_target_s(curve, 0.0124, whole_epochs=True) is None      # without the tail
    assert vs.time_to_target_s(curve, 0.0124, whole_epochs=True, tail=tail) == pytest.approx(20)
    report = {"evals": curve, "steps_per_epoch": 319, "settings": {"val_check_interval": 0.25}}
    assert vs.arm_times(report, 0.0124) == (pytest.approx(20), pytest.approx(12.476, abs=1e-3))


def test_goal_rows_met_and_not_met():
    recbole = {"evals": _curve([(1, 120, 0.05), (2, 240, 0.06)]), "peak_rss_mib": 1800.0}
    fast = {"evals": _curve([(0.5, 4, 0.055), (1.0, 8, 0.061)]), "peak_rss_mib": 1700.0}
    slow = {"evals": _curve([(1, 100, 0.05)]), "peak_rss_mib": 1900.0}
    rows = vs.goal_rows(recbole, {"recipe": fast, "recbole-settings": slow}, 0.06)
    matched, fine, (_, _, _, eval_ratio, eval_met), (_, _, _, _, rss_met) = rows
    assert "verdict" in matched[0] and "recipe" in matched[2]
    assert matched[3] == 30.0 and matched[4] and fine[3] == 30.0 and fine[4]  # 240 s / 8 s
    assert eval_ratio == 1.0 and not eval_met                   # same eval seconds
    assert not rss_met                                          # the highest arm counts
    rows = vs.goal_rows(recbole, {"recbole-settings": slow}, 0.06)
    assert rows[0][2] == rows[1][2] == "not reached" and not rows[0][4] and not rows[1][4]
    table = vs.goal_table(rows)
    assert table.count("not met") == 4 and table.startswith("| goal |")


def test_goal_verdict_is_the_matched_one():
    recbole = {"evals": _curve([(1, 120, 0.05), (2, 240, 0.06)]), "peak_rss_mib": 1800.0}
    fractional = {"evals": _curve([(0.25, 2, 0.03), (0.5, 4, 0.061)]), "peak_rss_mib": 1700.0}
    between = {"evals": _curve([(0.75, 6, 0.062), (1.0, 9, 0.063)]), "peak_rss_mib": 1700.0}
    matched, fine, *_ = vs.goal_rows(recbole, {"recipe": fractional}, 0.06)
    assert fine[3] == 60.0 and fine[4]                           # fine-grained: met
    assert matched[2] == "not observed" and not matched[4]       # stopped inside epoch 1
    matched, fine, *_ = vs.goal_rows(recbole, {"recipe": between}, 0.06)
    assert fine[3] == 40.0 and fine[4] and matched[3] == pytest.approx(240 / 9) and not matched[4]


def test_the_ours_arm_stops_on_the_peers_epoch_grid():
    # amazon_book.py --stop-at-epoch-end: a validation ends its epoch when fewer than one
    # interval of steps remain (319 steps at a quarter: validations after 79, 158, 237, 316)
    ab = load_benchmark("amazon_book")
    ends = [s for s in (79, 158, 237, 316, 398, 477, 556, 635) if ab.last_of_epoch(s, 319, 79)]
    assert ends == [316, 635]
    assert [s for s in (20, 40, 60, 80, 100, 160) if ab.last_of_epoch(s, 80, 20)] == [80, 160]
    assert ab.last_of_epoch(80, 80, 80) and ab.last_of_epoch(160, 80, 80)
