"""``benchmarks/gpu_models.py --smoke`` on the CPU: MMGCN trains through the product path in
both modes (tiny world, 4 steps each) and the run prints one FIGURE line per part and its
SUMMARY; a failing part is reported and sets the exit status, parts past the deadline are
skipped (those two without training)."""
import math

import pytest

from tests._bench import load_benchmark

gpu_models = load_benchmark("gpu_models")


def figures(out: str) -> dict[str, list[str]]:
    """``{part: fields after the name}`` of the FIGURE lines."""
    return {f[1]: f[2:] for f in (line.split() for line in out.splitlines())
            if f and f[0] == "FIGURE"}


def test_smoke_both_modes(tmp_path, capsys):
    rc = gpu_models.main(["--smoke", "--accelerator", "cpu", "--models", "mmgcn",
                          "--cache-dir", str(tmp_path)])
    out = capsys.readouterr().out
    got = figures(out)
    assert list(got) == ["mmgcn-full", "mmgcn-sampled"], out
    for part, f in got.items():
        assert f[-1] == "ok" and f[f.index("steps") + 1] == "4", (part, f)
        assert float(f[f.index("step_ms") + 1]) > 0
        assert 0 <= float(f[f.index("recall@20") + 1]) <= 1
        first, last = map(float, f[f.index("loss") + 1].split("->"))
        assert math.isfinite(first) and math.isfinite(last)
    assert "SUMMARY trained on cpu" in out and ": 2 of 2 parts" in out
    assert rc == 0


def test_failure_and_deadline_reported(tmp_path, capsys, monkeypatch):
    def broken(name, mode, dim):
        raise ValueError(f"{name}-{mode} broken")

    monkeypatch.setattr(gpu_models, "config", broken)
    argv = ["--smoke", "--accelerator", "cpu", "--models", "ckg,isgnn", "--modes", "sampled",
            "--cache-dir", str(tmp_path)]
    assert gpu_models.main(argv) == 1
    out = capsys.readouterr().out
    assert "ValueError: ckg-sampled broken" in out                     # the traceback, then on
    assert {p: f[-1] for p, f in figures(out).items()} == {"ckg-sampled": "FAILED",
                                                           "isgnn-sampled": "FAILED"}
    assert gpu_models.main([*argv, "--deadline-s", "0"]) == 0
    out = capsys.readouterr().out
    assert {f[-1] for f in figures(out).values()} == {"skipped"} and ": 0 of 2 parts" in out
    with pytest.raises(SystemExit):
        gpu_models.main(["--smoke", "--models", "nope"])
