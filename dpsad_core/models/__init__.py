"""Networks: the class-conditional UNet (teacher, DPDM model), the few-step student and the discriminator."""

from dpsad_core.models.discriminator import Discriminator, DiscriminatorConfig
from dpsad_core.models.ema import EMA
from dpsad_core.models.student import VPredictionStudent
from dpsad_core.models.unet import UNet, UNetConfig

__all__ = ["EMA", "Discriminator", "DiscriminatorConfig", "UNet", "UNetConfig", "VPredictionStudent"]
