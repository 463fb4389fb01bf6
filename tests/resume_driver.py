"""A tiny training run for the resume test: `python tests/resume_driver.py CKPT OUT [DELAY]`.

Trains a small conv net with the real engine (P x K sampler, ReidLoss, checkpoints) on random
images; DELAY seconds per image make an epoch long enough to be killed in the middle.
"""

import logging
import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset

from reid.data.batches import LoaderBatches
from reid.data.sampler import RandomIdentitySampler
from reid.engine.train import TrainConfig, train
from reid.losses import ReidLoss
from reid.models.head import ReidModel

NUM_IDS, PER_ID = 8, 4


class TinyBackbone(nn.Sequential):
    num_features = 16

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2))


class SlowRandomImages(Dataset):
    def __init__(self, delay: float) -> None:
        g = torch.Generator().manual_seed(123)
        self.labels = [i // PER_ID for i in range(NUM_IDS * PER_ID)]
        centres = torch.rand(NUM_IDS, 3, 1, 1, generator=g)
        noise = torch.rand(len(self.labels), 3, 16, 8, generator=g)
        self.images = centres[self.labels] + 0.3 * noise
        self.delay = delay

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        time.sleep(self.delay)
        noise = 0.05 * torch.randn(3, 16, 8)  # uses the (restored) RNG, as augmentation does
        return self.images[i] + noise, self.labels[i]


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    ckpt, out = sys.argv[1], sys.argv[2]
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    torch.manual_seed(0)
    model = ReidModel(TinyBackbone(), NUM_IDS)
    criterion = ReidLoss(NUM_IDS, TinyBackbone.num_features)
    data = SlowRandomImages(delay)
    cfg = TrainConfig(epochs=4, batch_size=16, num_instances=4, warmup_epochs=1,
                      milestones=(2, 3), num_workers=1, seed=7)
    device = torch.device("cpu")
    sampler = RandomIdentitySampler(data.labels, cfg.batch_size, cfg.num_instances, seed=cfg.seed)
    batches = LoaderBatches(data, sampler, device, num_workers=cfg.num_workers)
    history = train(model, criterion, batches, cfg, device=device,
                    checkpoint_path=ckpt, settings={"test": "resume"}, progress=False)
    torch.save({"model": model.state_dict(), "history": history}, out)
    print("done", len(history), flush=True)


if __name__ == "__main__":
    main()
