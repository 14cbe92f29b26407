"""Run by tests/test_distributed.py in 2 processes (`torch.distributed.run`): what each rank sees.

Writes OUT/rank<R>.json: the sample ids of this rank's training batches per epoch, and the ids
`predict_probs` gathered from a 21-sample evaluation loader (uneven: Accelerate pads the last batch),
and the error a global batch that does not split over the processes gives.
"""

import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from graftkit.engine import AccelerateEngine
from graftkit.errors import ConfigError


class _IdTask:
    """predict_probs' view of a task: the 'logits' are the sample ids themselves."""

    num_classes = 1

    def loss(self, logits, y):
        return logits.float().mean()

    def collect(self, logits, y):
        return logits, y


def main(out: Path) -> None:
    engine = AccelerateEngine("cpu", "fp32")
    ids = torch.arange(24)
    gen = torch.Generator().manual_seed(0)
    train = engine.shard(DataLoader(TensorDataset(ids, ids), batch_size=8, shuffle=True, generator=gen))
    epochs = []
    for epoch in range(2):
        train.generator.manual_seed(epoch)  # as the loop reseeds it
        epochs.append([x.tolist() for x, _ in train])
    from graftkit.training.loop import predict_probs

    evaluation = engine.shard(DataLoader(TensorDataset(torch.arange(21).float()[:, None], torch.arange(21)), batch_size=8))
    rows, targets, _ = predict_probs(torch.nn.Identity(), evaluation, engine, _IdTask())
    try:
        engine.shard(DataLoader(TensorDataset(ids), batch_size=7))
        refused = None
    except ConfigError as e:
        refused = str(e)
    rank = engine.accelerator.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({"train": epochs, "eval": targets.tolist(), "batches": len(train), "refused": refused}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
