"""P x K RandomIdentitySampler: batch structure, lengths, determinism, distributed slices."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from reid.data.sampler import RandomIdentitySampler

# 7 identities with non-contiguous labels and 1 to 8 images each, interleaved.
COUNTS = {10: 5, 20: 4, 30: 3, 40: 2, 50: 1, 60: 8, 70: 6}
LABELS = [pid for i in range(8) for pid, n in COUNTS.items() if i < n]


def batches(sampler: RandomIdentitySampler) -> list[list[int]]:
    indices = list(sampler)
    size = sampler.batch_size
    assert len(indices) % size == 0
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def test_every_batch_is_p_identities_times_k_images() -> None:
    sampler = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=3)
    found = batches(sampler)
    assert found
    for batch in found:
        pids = [LABELS[i] for i in batch]
        assert len(set(pids)) == 3  # P = 6 / 2
        assert all(pids[j] == pids[j + 1] for j in range(0, 6, 2))  # K consecutive per id
        assert all(count == 2 for count in Counter(pids).values())


def test_len_is_the_exact_number_of_indices() -> None:
    sampler = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=0)
    for epoch in range(4):
        sampler.set_epoch(epoch)
        assert len(sampler) == len(list(sampler))
        assert len(sampler) % 6 == 0
    # at most all chunks of K: sum over ids of max(n, K) // K = 2+2+1+1+1+4+3 = 14 chunks
    assert len(sampler) <= 14 * 2


def test_epoch_is_a_permutation_when_every_identity_fills_every_batch() -> None:
    # 3 identities x 4 images, P = 3, K = 2: two batches that use every image exactly once.
    labels = [0, 1, 2] * 4
    sampler = RandomIdentitySampler(labels, batch_size=6, num_instances=2, seed=5)
    assert len(sampler) == 12
    assert sorted(sampler) == list(range(12))


def test_identity_with_few_images_is_sampled_with_replacement() -> None:
    # id 0 has one image (index 0), id 1 has two (1 and 2); K = 4, P = 2: one batch.
    labels = [0, 1, 1]
    sampler = RandomIdentitySampler(labels, batch_size=8, num_instances=4, seed=0)
    (batch,) = batches(sampler)
    assert Counter(batch)[0] == 4
    assert Counter(labels[i] for i in batch) == {0: 4, 1: 4}
    assert set(batch) <= {0, 1, 2}


def test_identities_with_enough_images_are_not_repeated_within_an_epoch() -> None:
    sampler = RandomIdentitySampler(LABELS, batch_size=4, num_instances=2, seed=1)
    counts = Counter(sampler)
    for index, count in counts.items():
        if COUNTS[LABELS[index]] >= 2:
            assert count == 1
    # id 10 has 5 images: at most 2 chunks of 2 per epoch (the fifth image is left out)
    assert sum(c for i, c in counts.items() if LABELS[i] == 10) <= 4


def test_order_is_a_pure_function_of_seed_and_epoch() -> None:
    first = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=7)
    second = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=7)
    for epoch in range(3):  # `first` walks through the epochs, `second` jumps (resume)
        first.set_epoch(epoch)
        list(first)
    second.set_epoch(2)
    assert list(first) == list(second)
    assert list(first) == list(first)  # iterating twice in an epoch replays it

    second.set_epoch(3)
    assert list(second) != list(first)
    other_seed = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=8)
    other_seed.set_epoch(2)
    assert list(other_seed) != list(first)


def test_sampler_neither_uses_nor_changes_the_global_rngs() -> None:
    sampler = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=7)
    np.random.seed(0)
    torch.manual_seed(0)
    np_state, torch_state = np.random.get_state()[1].copy(), torch.get_rng_state()
    order = list(sampler)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)
    np.random.seed(123)
    torch.manual_seed(123)
    fresh = RandomIdentitySampler(LABELS, batch_size=6, num_instances=2, seed=7)
    assert list(fresh) == order


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="multiple of num_instances"):
        RandomIdentitySampler(LABELS, batch_size=7, num_instances=2)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        RandomIdentitySampler(LABELS, batch_size=16, num_instances=2)  # 8 ids > 7
    with pytest.raises(ValueError, match="rank"):
        RandomIdentitySampler(LABELS, batch_size=4, num_instances=2, rank=2, world_size=2)


def test_distributed_ranks_split_the_single_process_batches() -> None:
    # world 2 x batch 4 (P = 2) is the single-process sampler with batch 8 (P = 4), split.
    single = batches(RandomIdentitySampler(LABELS, batch_size=8, num_instances=2, seed=4))
    ranks = [
        batches(
            RandomIdentitySampler(
                LABELS, batch_size=4, num_instances=2, seed=4, rank=r, world_size=2
            )
        )
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single) > 0
    for whole, part0, part1 in zip(single, ranks[0], ranks[1], strict=True):
        assert not {LABELS[i] for i in part0} & {LABELS[i] for i in part1}
        assert part0 + part1 == whole


def test_works_as_a_dataloader_sampler() -> None:
    sampler = RandomIdentitySampler(LABELS, batch_size=6, num_instances=3, seed=0)
    loader = DataLoader(
        torch.tensor(LABELS), sampler=sampler, batch_size=6, drop_last=True, num_workers=0
    )
    got = list(loader)
    assert len(got) == len(loader) == len(sampler) // 6
    for batch in got:
        assert sorted(Counter(batch.tolist()).values()) == [3, 3]
