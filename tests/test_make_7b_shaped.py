"""tools/make_7b_shaped_checkpoint.py without writing 14.5 GB: the shard split and the rounding."""
import importlib.util

import numpy as np

from mistral_np import MISTRAL_7B
from mistral_np.bf16 import f32_to_bf16_bits
from mistral_np.checkpoint import expected_shapes

from helpers import REPO

spec = importlib.util.spec_from_file_location("make7b", REPO / "tools" / "make_7b_shaped_checkpoint.py")
make7b = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make7b)


def test_split_matches_the_published_shards():
    sizes = dict.fromkeys(make7b.SHARDS, 0)
    for name, shape in expected_shapes(MISTRAL_7B).items():
        sizes[make7b.shard_of(name)] += 2 * int(np.prod(shape))
    assert list(sizes.values()) == [9_942_958_080, 4_540_506_112]       # 9.94 GB and 4.54 GB
    assert sum(sizes.values()) == make7b.TOTAL_SIZE == 14_483_464_192
    assert make7b.shard_of("layers.22.attention.wo.weight") == make7b.SHARDS[0]
    assert make7b.shard_of("layers.22.feed_forward.w1.weight") == make7b.SHARDS[1]


def test_rounding_agrees_with_the_library_away_from_ties():
    x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32) * 0.02
    x = x[(x.view(np.uint32) & 0xFFFF) != 0x8000]      # exact ties: the tool rounds them away from 0
    np.testing.assert_array_equal(make7b.to_bf16_bits(x.copy()), f32_to_bf16_bits(x))
