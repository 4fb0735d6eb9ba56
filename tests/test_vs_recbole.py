"""``benchmarks/vs_recbole.py``'s pure parts, without RecBole: reading the peer harness's output
(its SUMMARY line, or the EPOCH/EVAL lines of a run that died before it), the time to a target
on a hand-made curve, and the goals table's met / not met."""
import importlib.util
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location(
    "vs_recbole", os.path.join(ROOT, "benchmarks", "vs_recbole.py"))
vs = importlib.util.module_from_spec(spec)
sys.modules["vs_recbole"] = vs
spec.loader.exec_module(vs)

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
    assert vs.time_to_target(curve, 0.05)["train_s"] == 20  # equal counts, a later dip does not
    assert vs.time_to_target(curve, 0.055)["epoch"] == 1.0
    assert vs.time_to_target(curve, 0.07) is None


def test_goal_rows_met_and_not_met():
    recbole = {"evals": _curve([(1, 120, 0.05), (2, 240, 0.06)]), "peak_rss_mib": 1800.0}
    fast = {"evals": _curve([(0.25, 4, 0.055), (0.5, 8, 0.061)]), "peak_rss_mib": 1700.0}
    slow = {"evals": _curve([(1, 100, 0.05)]), "peak_rss_mib": 1900.0}
    rows = vs.goal_rows(recbole, {"recipe": fast, "recbole-settings": slow}, 0.06)
    (_, _, ours, ratio, met), (_, _, _, eval_ratio, eval_met), (_, _, _, _, rss_met) = rows
    assert "recipe" in ours and ratio == 30.0 and met           # 240 s / 8 s
    assert eval_ratio == 1.0 and not eval_met                   # same eval seconds
    assert not rss_met                                          # the highest arm counts
    rows = vs.goal_rows(recbole, {"recbole-settings": slow}, 0.06)
    assert rows[0][2] == "not reached" and not rows[0][4]
    table = vs.goal_table(rows)
    assert table.count("not met") == 3 and table.startswith("| goal |")
