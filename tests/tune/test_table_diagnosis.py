"""``benchmarks/table_diagnosis.py``: its pure functions on hand-made tensors with known answers,
then the whole report on a two-model table fitted here by ``reelgraph fit`` (BPR-MF, 3 epochs;
GF-CF) on the small planted world: the recomputed test Recall@20 equals the logged one."""
import json
import math
import os

import pytest
import torch

from tests._bench import load_benchmark

td = load_benchmark("table_diagnosis")


def test_summarize_curve():
    c = td.summarize_curve([0.1, 0.2, 0.25, 0.25, 0.24], max_epochs=5)
    assert (c.epochs, c.best_epoch, c.best, c.at_cap) == (5, 2, 0.25, False)  # first maximum
    assert c.gain_last3 == pytest.approx(0.24 - 0.2)
    rising = td.summarize_curve([0.1, 0.2, 0.3, 0.4], max_epochs=4)
    assert rising.at_cap and rising.best_epoch == 3 and rising.gain_last3 == pytest.approx(0.3)
    assert math.isnan(td.summarize_curve([0.1, 0.2], 10).gain_last3)
    with pytest.raises(ValueError, match="no validation curve"):
        td.summarize_curve([], 10)


def test_degree_quartiles_and_head_items():
    bucket, edges = td.degree_quartiles(torch.arange(1, 9))   # quartiles 2.75, 4.5, 6.25
    assert edges.tolist() == pytest.approx([2.75, 4.5, 6.25])
    assert bucket.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    bucket, edges = td.degree_quartiles(torch.tensor([1, 1, 1, 1, 1, 1, 5, 9]))
    assert edges.tolist() == pytest.approx([1, 1, 2])          # q75 = 1 + 0.25 * (5 - 1)
    assert bucket.tolist() == [0] * 6 + [3, 3]                 # ties share a bucket (Q2, Q3 empty)
    head = td.head_items(torch.tensor([5, 1, 9, 0, 5, 2, 7, 3, 4, 8]))
    assert head.nonzero().flatten().tolist() == [2, 9]         # the 2 of 10 most popular
    assert td.head_items(torch.tensor([3, 3, 3, 3, 3])).nonzero().flatten().tolist() == [0]


def test_group_recall_and_popularity():
    # user 0 holds out items 1 (head) and 4 (tail), ranks [1, 2, 4]: both found;
    # user 1 holds out 0 (head) and 3 (tail), ranks [3, 2, -1]: the tail item only
    top = torch.tensor([[1, 2, 4], [3, 2, -1]])
    test_row, test_item = torch.tensor([0, 0, 1, 1]), torch.tensor([1, 4, 0, 3])
    hits = torch.tensor([[True, False, True], [True, False, False]])
    head = torch.tensor([True, True, False, False, False])
    recall, has = td.group_recall(hits, top, test_row, test_item, head)
    assert recall.tolist() == [1.0, 0.0] and has.tolist() == [True, True]
    recall, _ = td.group_recall(hits, top, test_row, test_item, ~head)
    assert recall.tolist() == [1.0, 1.0]
    everything = torch.ones(5, dtype=torch.bool)               # the group of all items: Recall@K
    recall, _ = td.group_recall(hits, top, test_row, test_item, everything)
    assert recall.tolist() == [1.0, 0.5]
    only_4 = torch.tensor([False] * 4 + [True])
    recall, has = td.group_recall(hits, top, test_row, test_item, only_4)
    assert recall.tolist() == [1.0, 0.0] and has.tolist() == [True, False]
    deg = torch.tensor([10, 20, 30, 40, 50])
    assert td.mean_rec_degree(top, deg) == pytest.approx((20 + 30 + 50 + 40 + 30) / 5)


def test_geometry():
    items = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])   # one direction: cos 1
    g = td.geometry(torch.ones(4, 2), items, torch.tensor([1, 10, 100]), pairs=1000)
    assert g["cos"] == pytest.approx(1.0)
    assert g["item_cv"] == pytest.approx(0.5)                    # std 1 / mean 2
    assert g["user_cv"] == pytest.approx(0.0) and g["norm_deg_corr"] > 0.9
    opposite = td.geometry(torch.ones(2, 2), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
                           torch.tensor([1, 2]), pairs=1000)
    assert opposite["cos"] == pytest.approx(-1.0)


def test_prior_standardises_per_user_and_breaks_ties_by_popularity():
    base = torch.tensor([[1.0, 3.0, 3.0, 5.0],        # items 1 and 2 tied
                         [12.0, 32.0, 32.0, 52.0],    # user 0's scores x 10 + 2: the same z
                         [2.0, 2.0, 2.0, 2.0]])       # constant: std 0, taken as 1
    score = lambda users, items: base[users][:, items]
    mean, std = td.user_moments(score, 3, 4, batch=2, chunk=3)       # chunks of 3 and 1 items
    assert mean.tolist() == pytest.approx([3.0, 32.0, 2.0])
    assert std.tolist() == pytest.approx([math.sqrt(2), 10 * math.sqrt(2), 0.0])
    log_deg = torch.log1p(torch.tensor([0.0, 1.0, 9.0, 0.0]))         # item 2 the popular twin
    users, items = torch.arange(3), torch.arange(4)
    z = td.with_prior(score, mean, std, log_deg, 0.0)(users, items)
    r = 1 / math.sqrt(2)
    assert z.tolist() == [pytest.approx(v) for v in ([-2 * r, 0, 0, 2 * r],) * 2 + ([0] * 4,)]
    s = td.with_prior(score, mean, std, log_deg, 0.5)(users, items)
    assert torch.allclose(s, z + 0.5 * log_deg)
    assert s[:2].topk(2).indices.tolist() == [[3, 2], [3, 2]]        # the tie: the popular one
    assert s[2].argmax() == 2
    strong = td.with_prior(score, mean, std, log_deg, 2.0)(users, torch.tensor([3, 2]))
    assert (strong[:, 1] > strong[:, 0]).all()                        # 2 log 10 > sqrt(2)
    assert strong[0, 1] == pytest.approx(2 * math.log(10))            # a chunk: its items' prior


def _fit(world, cache, root, model_args):
    from reelgraph.lightning_modules.cli import main

    main(["fit", "--data.data", world, "--data.cache_dir", cache, "--data.batch_size", "512",
          "--trainer.max_epochs", "3", "--trainer.accelerator", "cpu",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root,
          "--model.ks", "[10, 20]", *model_args])
    run = os.path.join(root, td.RUN)
    (test,) = td.curve_from_events(run, "test/recall@20")      # the test's value, as logged
    return test


def test_report_on_a_fitted_table(world, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)   # main's --threads: not ours
    out, cache = tmp_path / "table", str(tmp_path / "cache")
    rows = {m: {"model": m, "test_recall@20": _fit(world, cache, str(out / "fit" / m), args)}
            for m, args in (("mf", ["--model.model", "MFConfig",
                                    "--model.model.init_args.embedding_dim", "16"]),
                            ("gfcf", ["--model.model", "GFCFConfig"]))}
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows.values()))
    curve = td.curve_from_events(str(out / "fit" / "mf" / td.RUN))
    assert len(curve) == 3 and all(0 < v <= 1 for v in curve)
    capsys.readouterr()
    assert td.main(["--out", str(out), "--models", "gfcf", "--reference", "mf"]) == 0
    text = capsys.readouterr().out
    check = [line for line in text.splitlines() if line.startswith("| mf |")][0]
    assert "| yes | 0.0e+00 |" in check                        # scores and exported embeddings
    assert "| gfcf | – (training-free) |" in text and "| 3 / 3 |" in text
    for section in ("## 0.", "## 1.", "## 2.", "## 3.", "## 4.", "## 5.", "head R@20", "Q4 deg"):
        assert section in text
