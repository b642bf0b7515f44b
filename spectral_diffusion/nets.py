"""Denoiser networks with FiLM conditioning, and output parameterisations."""

from ._nets import (
    Conditioning as Conditioning,
    Denoiser as Denoiser,
    EpsPrediction as EpsPrediction,
    Parameterisation as Parameterisation,
    UNet as UNet,
    UViT as UViT,
    VPrediction as VPrediction,
    XPrediction as XPrediction,
)
