"""The bench command's parts work (no timing is asserted: speed is measured, not tested)."""
import json

import numpy as np

import mistral_np
from mistral_np import bench
from mistral_np.__main__ import main

from helpers import TINY_BF16


def test_fill_cache_writes_the_slots_a_prefill_would():
    model = mistral_np.load(TINY_BF16)              # W = 6
    for n in (4, 6, 13):
        filled, real = model.new_cache(), model.new_cache()
        bench.fill_cache(filled, n)
        model.prefill(np.arange(n) % 90 + 3, real)
        np.testing.assert_array_equal(filled.pos, real.pos)
        assert filled.n_seen == real.n_seen == n


def test_bytes_per_token():
    model = mistral_np.load(TINY_BF16)
    a = model.args
    matrices = sum(int(np.prod(s)) for n, s in mistral_np.checkpoint.expected_shapes(a).items()
                   if n != "tok_embeddings.weight")
    assert bench.weight_bytes_per_token(model) == 4 * (matrices + a.dim)     # widened to float32
    cache = model.new_cache()
    assert bench.cache_bytes_per_token(cache, 3) == 3 * 2 * a.n_layers * a.n_kv_heads * a.head_dim * 4
    assert bench.cache_bytes_per_token(cache, 100) == cache.k.nbytes + cache.v.nbytes


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
