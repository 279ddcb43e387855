"""The main job, `python -m fastad bench`, runs and checks its results (a quick smoke run)."""
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_bench_quick_smoke_run(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    r = subprocess.run([sys.executable, "-m", "fastad", "bench", "--quick", "--only", "seed,memory",
                        "--sizes", "1k", "--impl", "numpy", "--no-progress", "--json", str(out)],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "fastad" in r.stdout and "MISMATCH" not in r.stdout
    data = json.loads(out.read_text())
    fastad_rows = [row for row in data["results"] if row["impl"].startswith("fastad")]
    assert fastad_rows and all(row["status"] == "ok" for row in fastad_rows)
    # a sample repeats a call of microseconds (numpy's 1k memory-bound step) until it lasts ~1 ms
    timed = {(row["workload"], row["impl"]): row for row in data["results"] if row.get("best_s")}
    assert timed[("memory", "numpy")]["reps"] > 1
    assert all(row["reps"] >= 1 and row["best_s"] > 0 for row in timed.values())


def test_a_second_run_of_the_day_does_not_overwrite_the_first(tmp_path, monkeypatch):
    from fastad import _bench_report as report
    monkeypatch.setattr(report, "_repo_root", lambda: tmp_path)
    first = report.default_json_path("cpu", quick=False)
    assert first.parent == tmp_path / "benchmarks" / "results" and first.name.startswith("cpu-")
    first.parent.mkdir(parents=True)
    first.write_text("{}")
    second = report.default_json_path("cpu", quick=False)
    assert second != first and second.name == first.name.replace(".json", "-2.json")
    second.write_text("{}")
    assert report.default_json_path("cpu", quick=False).name == first.name.replace(".json", "-3.json")
