"""``benchmarks/kg_models.py --results``: a model's row is stored as soon as it is tested, a
later run under the same protocol takes it instead of training, and a different protocol trains
again. One real 1-epoch LightGCN fit on the tiny synthetic world (seconds); the reruns stub the
training."""
import json

import pytest

from tests._bench import load_benchmark

kg_models = load_benchmark("kg_models")


def test_results_resume_by_protocol(tmp_path, monkeypatch, capsys):
    results = tmp_path / "rows.jsonl"
    argv = ["--data", "synthetic:tiny", "--models", "lightgcn", "--epochs", "1", "--dim", "8",
            "--layers", "1", "--accelerator", "cpu", "--cache-dir", str(tmp_path / "cache"),
            "--results", str(results)]
    kg_models.main(argv)
    (line,) = results.read_text().splitlines()
    stored = json.loads(line)
    assert stored["model"] == "lightgcn" and stored["protocol"]["data"] == "synthetic:tiny"
    assert set(stored["row"]) == {*kg_models.METRICS, "train_s"}

    def fake_run(name, a):
        return {m: 0.5 for m in kg_models.METRICS} | {"train_s": 1.0}

    monkeypatch.setattr(kg_models, "run", lambda name, a: pytest.fail(f"{name} retrained"))
    with open(results, "a") as f:
        f.write('{"model": "ngcf", "protoc')                          # a torn last line
    capsys.readouterr()
    kg_models.main([*argv, "--threads", "2"])                        # threads: not protocol
    out = capsys.readouterr().out
    assert "lightgcn: from" in out and f"{stored['row']['recall@10']:.4f}" in out

    monkeypatch.setattr(kg_models, "run", fake_run)
    kg_models.main([*argv, "--epochs", "2", "--models", "lightgcn,ngcf"])  # another protocol
    rows = []
    for line in results.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            assert line == '{"model": "ngcf", "protoc'                 # kept, on its own line
    assert [(r["model"], r["protocol"]["epochs"]) for r in rows] == [
        ("lightgcn", 1), ("lightgcn", 2), ("ngcf", 2)]
