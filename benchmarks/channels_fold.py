"""What folding constants into zero-padded convs as bias maps buys the `channels` format.

A user's own `torch.nn.utils.prune.ln_structured` checkpoint zeroes conv weights along dim 0
and leaves conv biases and BatchNorm alone, so most zeroed channels still carry a constant,
into the next zero-padded conv. This builds the zoo's vgg16_bn (random weights, BatchNorm set
to random non-trivial values), zeroes half the output channels of every conv that way (the
final layer is a Linear, left alone), exports it to `channels` through `sparsebench.export`
without and with per-position bias maps (`_channel_removal.FOLD_BIAS_MAPS`), loads each
artifact back and prints dense vs artifact MACs, the zeroed channels removed and the largest
output difference from the dense model.

Usage: python benchmarks/channels_fold.py [--samples 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune

import sparsebench
from sparsebench.checkpoint import CheckpointMeta, save_checkpoint
from sparsebench.export import export
from sparsebench.formats import ExportConfig, _channel_removal
from sparsebench.measure.macs import count_macs

ARCH, SHAPE = "vgg16_bn", (1, 3, 32, 32)


def pruned_vgg() -> nn.Module:
    """vgg16_bn with random BatchNorm and half of every conv's output channels zeroed (L1)."""
    torch.manual_seed(0)
    model = sparsebench.create_model(ARCH).eval()
    generator = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(n, generator=generator))
        elif isinstance(m, nn.Conv2d):
            prune.ln_structured(m, "weight", amount=0.5, n=1, dim=0)
            prune.remove(m, "weight")
    return model


def zeroed_channels(model: nn.Module) -> int:
    """Conv output channels whose weights are all zero."""
    return sum(
        int((m.weight.flatten(1).abs().amax(1) == 0).sum())
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    )


def conv_channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def run(folder: Path, samples: int) -> None:
    model = pruned_vgg()
    source = folder / "vgg16_bn-ln.pt"
    save_checkpoint(source, model, CheckpointMeta(arch=ARCH, input_shape=list(SHAPE)))
    x = torch.randn(samples, *SHAPE[1:], generator=torch.Generator().manual_seed(1))
    dense_macs = count_macs(model, x[:1]).dense
    with torch.inference_mode():
        reference = model(x)
    zeroed, channels = zeroed_channels(model), conv_channels(model)
    rows = [("dense (ln_structured, 50%)", dense_macs, 0, "-", 0.0, model)]
    for label, maps in (("channels, before (no bias maps)", False), ("channels, bias maps", True)):
        _channel_removal.FOLD_BIAS_MAPS = maps
        try:
            out = folder / f"vgg16_bn-channels-{int(maps)}.pt"
            export(source, out, ExportConfig.of("channels", verify_samples=samples), force=True)
        finally:
            _channel_removal.FOLD_BIAS_MAPS = True
        artifact = sparsebench.load(out).model
        with torch.inference_mode():
            diff = float((artifact(x) - reference).abs().max())
        removed = channels - conv_channels(artifact)
        rows.append((label, count_macs(artifact, x[:1]).dense, removed, zeroed, diff, artifact))
    _print(rows, dense_macs)


def _print(rows, dense_macs: int) -> None:
    head = f"{'model':<32} {'MACs (M)':>9} {'x dense':>8} {'removed/zeroed':>15}"
    print(f"{head} {'bias maps (KB)':>15} {'max |diff|':>11}")
    for label, macs, removed, zeroed, diff, model in rows:
        maps = [m.bias_map for m in model.modules() if isinstance(m, _channel_removal._BiasMapped)]
        kb = sum(t.numel() * t.element_size() for t in maps) / 1024
        print(
            f"{label:<32} {macs / 1e6:>9.2f} {macs / dense_macs:>7.3f}x "
            f"{f'{removed}/{zeroed}':>15} {f'{len(maps)} ({kb:.0f})':>15} {diff:>11.2e}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=16, help="verification/diff samples")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(Path(folder), args.samples)


if __name__ == "__main__":
    main()
