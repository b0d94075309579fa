"""Fine-tune a features_only backbone with frozen early stages, as detection and segmentation do.

    python examples/finetune_backbone.py resnet18 --frozen-stages 2 --steps 30
    python examples/finetune_backbone.py resnet18 --weights IMAGENET1K_V1   # the real network, pretrained

The backbone gives feature maps (timm's features_only); the stem and the first stages are frozen
(no gradients, their norms in eval mode: mmdetection's frozen_stages), and a 1x1 conv head on the
last map learns a synthetic dense task: each pixel's label is the channel in which its image was
tinted. Nothing is downloaded unless asked: start from pretrained weights with --weights (a declared
name, a file or a URL), loaded through archkit's transfer plan. --width shrinks the network for a
quick run (the default 1.0 is the spec's own network, the one pretrained weights fit).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import archkit


def batch(n: int, size: int, classes: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, classes, (n,), generator=g)
    images = torch.randn(n, 3, size, size, generator=g)
    images[torch.arange(n), labels % 3] += 1.5
    return images, labels[:, None, None].expand(n, size, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec")
    parser.add_argument("--frozen-stages", type=int, default=2)
    parser.add_argument("--weights", help="pretrained weights for the backbone")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--width", type=float, default=1.0, help="width multiplier (1.0: the spec's network)")
    args = parser.parse_args()

    torch.manual_seed(0)
    backbone = archkit.create_model(args.spec, weights=args.weights, width_multiplier=args.width,
                                    frozen_stages=args.frozen_stages, features_only=True,
                                    **{"input.size": [args.size, args.size], "seed": 0})
    head = nn.Conv2d(backbone.feature_info[-1]["num_chs"], args.classes, 1)
    trainable = [p for p in (*backbone.parameters(), *head.parameters()) if p.requires_grad]
    frozen = sum(p.numel() for p in backbone.parameters() if not p.requires_grad)
    print(f"{frozen:,} backbone parameters frozen, {sum(p.numel() for p in trainable):,} trained")
    optimizer = torch.optim.SGD(trainable, lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    backbone.train()
    for step in range(args.steps):
        images, labels = batch(16, args.size, args.classes, g)
        logits = F.interpolate(head(backbone(images)[-1]), size=labels.shape[-2:], mode="bilinear")
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)


if __name__ == "__main__":
    main()
