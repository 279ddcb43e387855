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
