"""A tiny training run for the multi-process test, under torchrun or as a plain process.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/ddp_driver.py OUT 8 bn
    python tests/ddp_driver.py OUT 16 bn        # one process, the same global batch of 16

Trains a small conv net with the real engine (P x K sampler, ReidLoss, DDP under torchrun) on
fixed images (no random augmentation, so both runs see the same pixels) for a few steps; each
rank saves its weights and the loss history to OUT/rank<r>.pt. Args: OUT, the per-rank batch
size, and `bn` (the BNNeck) or `identity` (no batch statistics in the model: the multi-process
run must then equal the single-process one up to float rounding); then optionally `noise`
(random noise on every image, drawn from each rank's own generator, like augmentation) and
`crash=E` (rank 0 dies right after checkpointing epoch E, to test resuming).
"""

import os
import sys

import torch
from resume_driver import NUM_IDS, PER_ID, TinyBackbone  # tests/ is this script's path
from torch import nn
from torch.utils.data import Dataset

from reid.data.batches import LoaderBatches
from reid.data.sampler import RandomIdentitySampler
from reid.distributed import distributed
from reid.engine.train import TrainConfig, train
from reid.losses import ReidLoss
from reid.models.head import ReidModel


class FixedImages(Dataset):
    def __init__(self, noise: bool) -> None:
        self.noise = noise
        g = torch.Generator().manual_seed(123)
        self.labels = [i // PER_ID for i in range(NUM_IDS * PER_ID)]
        centres = torch.rand(NUM_IDS, 3, 1, 1, generator=g)
        self.images = centres[self.labels] + 0.3 * torch.rand(len(self.labels), 3, 16, 8,
                                                              generator=g)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        noise = 0.05 * torch.randn(3, 16, 8) if self.noise else 0.0
        return self.images[i] + noise, self.labels[i]


def main() -> None:
    out, batch_size, neck = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    options = sys.argv[4:]
    crash = next((int(o.split("=")[1]) for o in options if o.startswith("crash=")), None)

    def on_epoch(stats: dict) -> None:  # rank 0, after its checkpoint
        if stats["epoch"] == crash:
            os._exit(3)

    with distributed(torch.device("cpu")) as (info, device):
        torch.manual_seed(0)
        model = ReidModel(TinyBackbone(), NUM_IDS)
        if neck == "identity":
            model.neck = nn.Identity()
        criterion = ReidLoss(NUM_IDS, TinyBackbone.num_features)
        initial = {name: p.detach().clone() for name, p in model.named_parameters()}
        data = FixedImages("noise" in options)
        cfg = TrainConfig(epochs=3, batch_size=batch_size, num_instances=4, warmup_epochs=1,
                          milestones=(2,), num_workers=0, seed=7, lr=1e-3)
        sampler = RandomIdentitySampler(data.labels, batch_size, 4, seed=cfg.seed,
                                        rank=info.rank, world_size=info.world_size)
        batches = LoaderBatches(data, sampler, device, num_workers=0)
        history = train(model, criterion, batches, cfg, device=device,
                        checkpoint_path=f"{out}/checkpoint.pt", settings={"test": "ddp"},
                        on_epoch=on_epoch, progress=False)
        weights = {name: p.detach() for name, p in model.named_parameters()}
        torch.save({"weights": weights, "centers": criterion.center.centers.detach(),
                    "initial": initial, "history": history}, f"{out}/rank{info.rank}.pt")


if __name__ == "__main__":
    main()
