"""Fine-tuning diffusion models against (conservative) rewards with a KL leash to the pretrained model."""

from mbo.finetune.backprop import finetune_backprop

__all__ = ["finetune_backprop"]
