"""``benchmarks/model_table.py`` (issue 15's one table) on the tiny synthetic world: BPR-MF
through ``reelgraph-tune`` on a 2-CPU local Ray and GF-CF through its drawn points, 2 trials,
1 epoch; the JSONL rows, the resume (a second run skips both; a model whose search finished
is only retrained) and the report's ratio columns. About 30 s here, most of it Ray and Tune."""
import json
import os

import pytest

from tests._bench import load_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
model_table = load_benchmark("model_table")


def _rows(out) -> list[dict]:
    with open(os.path.join(out, model_table.RESULTS)) as f:
        return [json.loads(line) for line in f]


def test_table_rows_resume_and_report(local_ray, tmp_path, capsys):
    out = str(tmp_path / "table")
    argv = ["--config", os.path.join(ROOT, "configs", "table_synthetic.yaml"),
            "--data", "synthetic:tiny", "--models", "mf,gfcf", "--trials", "2", "--epochs", "1",
            "--cpus-per-trial", "1", "--out", out, f"--data.cache_dir={tmp_path}/cache"]
    assert model_table.main(argv) == 0
    rows = _rows(out)
    assert [r["model"] for r in rows] == ["gfcf", "mf"]          # the table's order
    gfcf, mf = rows
    assert gfcf["trials"] == mf["trials"] == 2                   # the same budget
    assert gfcf["epochs"] == 0 and mf["epochs"] == 1
    for r in rows:
        assert 0 < r["test_recall@20"] <= 1 and 0 < r["test_ndcg@20"] <= 1
        assert 0 < r["val_recall@20"] <= 1 and r["train_seconds"] >= 0
        assert os.path.isfile(os.path.join(out, r["best_yaml"]))
    assert set(gfcf["params"]) == {"model.model.init_args.alpha",
                                   "model.model.init_args.num_singular"}
    assert "model.lr" in mf["params"]
    # the retrain of a searched best validates as the search's best trial did (same seed, config)
    assert mf["retrain_val_recall@20"] == pytest.approx(mf["val_recall@20"], abs=1e-6)
    assert gfcf["retrain_val_recall@20"] == pytest.approx(gfcf["val_recall@20"], abs=1e-6)

    capsys.readouterr()
    assert model_table.main(argv) == 0                           # resume: nothing left to do
    assert "mf: in" in capsys.readouterr().out and len(_rows(out)) == 2

    with open(os.path.join(out, model_table.RESULTS), "w") as f:  # mf's line lost: its search
        f.write(json.dumps(gfcf) + "\n{\"model\": \"mf\", \"tri")  # is done (best.yaml), so
    assert model_table.main(argv) == 0                           # it is only retrained
    again = model_table.load_rows(os.path.join(out, model_table.RESULTS))
    assert again["mf"]["test_recall@20"] == pytest.approx(mf["test_recall@20"])
    assert again["mf"]["search_seconds"] < 1

    capsys.readouterr()
    assert model_table.main(["--report", "--out", out]) == 0
    table = capsys.readouterr().out.splitlines()
    head = [c.strip() for c in table[0].strip("|").split("|")]
    assert "R@20 / GF-CF" in head and "R@20 / LightGCN" not in head   # no LightGCN row
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table[2:]}
    col = head.index("R@20 / GF-CF")
    assert cells["gfcf"][col] == "1.000"
    assert float(cells["mf"][col]) == pytest.approx(mf["test_recall@20"] / gfcf["test_recall@20"],
                                                    abs=1e-3)


def test_draws_spaces_and_recipe(tmp_path):
    from reelgraph.tune.space import load_space

    space = load_space(os.path.join(ROOT, "configs", "spaces", "gfcf.yaml"))
    points = model_table.draw_points(space, 4, seed=0)
    assert points == model_table.draw_points(space, 4, seed=0) != model_table.draw_points(space, 4, 1)
    assert len({tuple(sorted(p.items())) for p in points}) == 4       # distinct points
    for p in points:
        assert p["model.model"] == "reelgraph.models.GFCFConfig"
        assert p["model.model.init_args.alpha"] in (0.0, 0.3, 1.0, 3.0)
        assert 8 <= p["model.model.init_args.num_singular"] < 513
    row = model_table.MODELS["model-al"]
    ablation = load_space(model_table.space_file("model-al", row, str(tmp_path)))
    a2 = load_space(os.path.join(ROOT, "configs", "spaces", "a2bm2gl.yaml"))
    assert ablation["model.model.init_args.rec_loss"].args == ("bpr",)
    assert {k: p for k, p in ablation.items() if k in a2} == a2      # the A2BM2GL space, plus
    values = model_table.recipe_values(model_table.RECIPE)
    assert values["model.model"] == "reelgraph.models.SimGCLConfig"
    assert values["model.lr"] == 1.0e-3 and values["data.batch_size"] == 2048
    assert values["model.model.init_args.cl_weight"] == 0.5
    assert "model.ks" not in values and "data.data" not in values
