"""The bench command's parts work (no timing is asserted: speed is measured, not tested)."""
import json

import mistral_np
from mistral_np import bench
from mistral_np.__main__ import main

from helpers import TINY_BF16


def test_bench_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(TINY_BF16), "--prompt-tokens", "9", "--decode-tokens", "2",
                 "--context", "20", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["params"] == mistral_np.load(TINY_BF16).n_params()
    assert [row["context"] for row in r["decode"]] == [9, 20]
    assert all(row["min_s"] > 0 and row["floor_s"] > 0 for row in r["decode"])
    assert "pre-fill 9 tokens" in capsys.readouterr().out


def test_memory_reads_smaps():
    mem = bench.memory()
    assert mem["Rss"] >= mem["Anonymous"] > 0
