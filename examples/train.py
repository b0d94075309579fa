"""Train a model built from YAML on synthetic data, save safe checkpoints, reload them.

One process:                python examples/train.py specs/resnet18.yaml --epochs 3
Several (DDP, CPU, gloo):   torchrun --nproc-per-node 2 examples/train.py specs/resnet18.yaml --epochs 3
Training tricks as flags:   --frozen-stages 1 --drop-path 0.1 --layer-decay 0.75 --grad-checkpointing

The data is generated (nothing is downloaded): each image is noise plus a colour tint whose channel
is the label, so a working model learns it within a few epochs. Checkpoints are archkit's
(state_dict + resolved spec, loaded with weights_only=True), not ``torch.save(model)``: a pickled
module runs code when loaded.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import archkit


def synthetic(n: int, classes: int, size: int, seed: int) -> TensorDataset:
    """Noise images tinted in the channel named by the label."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randn(n, 3, size, size, generator=g)
    images[torch.arange(n), labels % 3] += 1.0
    return TensorDataset(images, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier, to keep CPU runs short")
    parser.add_argument("--output", default="checkpoints", help="checkpoint directory")
    parser.add_argument("--report", help="directory: each rank writes rank<N>.json with its losses and a "
                                         "checksum of its parameters")
    parser.add_argument("--frozen-stages", type=int, default=-1, help="freeze the stem and the first N stages")
    parser.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate (drop_path_rate)")
    parser.add_argument("--layer-decay", type=float, default=1.0, help="layer-wise learning-rate decay")
    parser.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward")
    args = parser.parse_args()

    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if distributed else 0
    torch.manual_seed(0)  # same initial weights everywhere (DDP also broadcasts rank 0's)

    spec = archkit.load_spec(args.spec, [f"input.size=[{args.size}, {args.size}]", f"width_multiplier={args.width}",
                                         "seed=0", f"frozen_stages={args.frozen_stages}",
                                         f"drop_path_rate={args.drop_path}"], num_classes=args.classes)
    model = archkit.build_model(spec)
    model.set_grad_checkpointing(args.grad_checkpointing)
    train_model = DistributedDataParallel(model) if distributed else model

    data = synthetic(args.samples, args.classes, args.size, seed=1)
    sampler = DistributedSampler(data, shuffle=True, seed=0) if distributed else None
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, shuffle=sampler is None)
    # per-layer learning rates (timm's layer decay), no weight decay on norms and biases; frozen ones left out
    optimizer = torch.optim.SGD(archkit.param_groups(model, lr=0.05, layer_decay=args.layer_decay,
                                                     weight_decay=1e-4), momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)

    losses = []
    for epoch in range(args.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        train_model.train()
        total, count = 0.0, 0
        for images, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(train_model(images), labels)
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(labels), count + len(labels)
        losses.append(total / count)
        if rank == 0:
            path = out_dir / f"epoch{epoch + 1}.pt"
            archkit.save_checkpoint(model, spec, path)
            print(f"epoch {epoch + 1}: loss {losses[-1]:.4f}, saved {path}", flush=True)

    if rank == 0:  # reload the last checkpoint and check it is the trained model
        restored = archkit.load_checkpoint(out_dir / f"epoch{args.epochs}.pt").eval()
        model.eval()
        x = data.tensors[0][:8]
        with torch.inference_mode():
            same = torch.equal(restored(x), model(x))
        print(f"reloaded epoch{args.epochs}.pt: outputs identical = {same}", flush=True)
    if args.report:
        checksum = sum(p.detach().double().sum().item() for p in model.parameters())
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        (report / f"rank{rank}.json").write_text(json.dumps({"rank": rank, "losses": losses, "checksum": checksum}))
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
