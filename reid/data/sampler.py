"""P x K identity sampler for the triplet loss (Hermans et al. 2017; the BoT sampler).

Each batch holds P identities with K images each, so every anchor has K - 1 positives and
(P - 1) * K negatives. The order is a pure function of (seed, epoch): a resumed run replays the
same batches, and in distributed training every rank computes the same global plan and takes
its own disjoint slice of identities from each global batch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
import torch.utils.data


class RandomIdentitySampler(torch.utils.data.Sampler[int]):
    """Yields indices into `labels`, batch_size at a time: P = batch_size / K identities x K.

    Per epoch, as the BoT sampler: each identity's images are shuffled and cut into chunks of K
    (a remainder shorter than K is dropped; an identity with fewer than K images is drawn K
    times with replacement); then batches of identities are drawn without replacement among
    those with chunks left, each giving its next chunk, until fewer identities remain than one
    batch needs. Use with `DataLoader(sampler=..., batch_size=batch_size, drop_last=True)`.

    Distributed: the global plan draws P * world_size identities per batch; rank r takes the
    identities [r * P, (r + 1) * P) of each. With world_size 1 it is the plain sampler.
    """

    def __init__(
        self,
        labels: Sequence[int],
        batch_size: int,
        num_instances: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_instances <= 0 or batch_size <= 0 or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances "
                f"({num_instances}): each batch is P identities x K images"
            )
        if world_size <= 0 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank {rank}, world {world_size}")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

        labels_array = np.asarray(labels)
        if labels_array.ndim != 1:
            raise ValueError(f"labels must be a flat sequence, got shape {labels_array.shape}")
        pids, inverse = np.unique(labels_array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse, minlength=len(pids))
        # Indices of each identity's images, identities in sorted label order.
        self._index_groups: list[np.ndarray] = np.split(order, np.cumsum(counts)[:-1])
        pids_needed = self.num_pids_per_batch * world_size
        if len(pids) < pids_needed:
            raise ValueError(
                f"{len(pids)} identities cannot fill one batch of {self.num_pids_per_batch} "
                f"identities x {world_size} rank(s)"
            )
        self._cached: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order `__iter__` yields (call before each epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be non-negative, got {epoch}")
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        """Global batches for the current epoch: (P * world_size, K) index arrays."""
        if self._cached is not None and self._cached[0] == self.epoch:
            return self._cached[1]
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        chunks: list[deque[np.ndarray]] = []
        for indices in self._index_groups:
            if len(indices) < k:
                drawn = rng.choice(indices, size=k, replace=True)
            else:
                drawn = rng.permutation(indices)
            n_chunks = len(drawn) // k
            chunks.append(deque(drawn[: n_chunks * k].reshape(n_chunks, k)))

        pids_needed = self.num_pids_per_batch * self.world_size
        available = list(range(len(chunks)))
        batches = []
        while len(available) >= pids_needed:
            picked = rng.choice(len(available), size=pids_needed, replace=False)
            pids = [available[i] for i in picked]
            batches.append(np.stack([chunks[pid].popleft() for pid in pids]))
            available = [pid for pid in available if chunks[pid]]
        self._cached = (self.epoch, batches)
        return batches

    def __iter__(self) -> Iterator[int]:
        p = self.num_pids_per_batch
        for batch in self._global_batches():
            yield from batch[self.rank * p : (self.rank + 1) * p].reshape(-1).tolist()

    def __len__(self) -> int:
        """Exact number of indices this rank yields in the current epoch."""
        return len(self._global_batches()) * self.batch_size
