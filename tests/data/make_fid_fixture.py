"""Regenerate the FID Inception fixtures (needs torch and pytorch-fid; not a test).

    pip install torch pytorch-fid && python tests/data/make_fid_fixture.py

Writes, next to this file:
- fid_reference.npz: pytorch-fid's FID Inception (random-free formula weights from
  fid_weights_formula.py) applied to formula_images(): pool features and logits,
  through pytorch-fid's own preprocessing (bilinear resize to 299, 2x - 1);
- tiny_zip.pth, tiny_legacy.pth, tiny_expected.npz: a small state dict with views,
  offsets, transposes, float16 and an int64 scalar, saved by torch.save in both
  serialisations, and the arrays it must load as.
"""

import collections
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_fid import inception as I


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fid_weights_formula import formula_images, formula_weights  # noqa: E402


def fid_network():
    net = I._inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    net.Mixed_5b = I.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = I.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = I.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = I.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = I.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = I.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = I.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = I.FIDInceptionE_1(1280)
    net.Mixed_7c = I.FIDInceptionE_2(2048)
    return net.eval()


def main():
    net = fid_network()
    params = {k: tuple(v.shape) for k, v in net.state_dict().items() if v.dtype == torch.float32}
    weights = formula_weights(params)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=False)
    blocks = torch.nn.Sequential(
        net.Conv2d_1a_3x3,
        net.Conv2d_2a_3x3,
        net.Conv2d_2b_3x3,
        torch.nn.MaxPool2d(3, 2),
        net.Conv2d_3b_1x1,
        net.Conv2d_4a_3x3,
        torch.nn.MaxPool2d(3, 2),
        net.Mixed_5b,
        net.Mixed_5c,
        net.Mixed_5d,
        net.Mixed_6a,
        net.Mixed_6b,
        net.Mixed_6c,
        net.Mixed_6d,
        net.Mixed_6e,
        net.Mixed_7a,
        net.Mixed_7b,
        net.Mixed_7c,
        torch.nn.AdaptiveAvgPool2d((1, 1)),
    )
    x = torch.from_numpy(formula_images())
    with torch.no_grad():
        # pytorch_fid.inception.InceptionV3.forward(resize_input=True, normalize_input=True)
        resized = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        features = blocks(2 * resized - 1)[:, :, 0, 0]
        logits = net.fc(features)
    np.savez(HERE / "fid_reference.npz", features=features.numpy(), logits=logits.numpy())

    g = torch.Generator().manual_seed(0)
    small = collections.OrderedDict(
        conv_weight=torch.randn(4, 3, 3, 3, generator=g),
        strided=torch.randn(4, generator=g)[::2],
        offset=torch.arange(10, dtype=torch.float32)[3:7],
        steps=torch.tensor(7),
        half=torch.randn(5, generator=g).half(),
        transposed=torch.randn(3, 2, generator=g).t(),
    )
    torch.save(small, HERE / "tiny_zip.pth")
    torch.save(small, HERE / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(HERE / "tiny_expected.npz", **{k: v.numpy() for k, v in small.items()})


if __name__ == "__main__":
    main()
