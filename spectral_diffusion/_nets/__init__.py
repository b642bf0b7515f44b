from ._blocks import Conditioning as Conditioning, NullClass as NullClass
from ._denoiser import (
    PARAMETERISATIONS as PARAMETERISATIONS,
    Denoiser as Denoiser,
    EpsPrediction as EpsPrediction,
    Parameterisation as Parameterisation,
    VPrediction as VPrediction,
    XPrediction as XPrediction,
)
from ._unet import UNet as UNet
from ._uvit import UViT as UViT
