"""Offline model-based optimization with conservative fine-tuning of diffusion models."""

from mbo.data.alphabet import DNA, PROTEIN, RNA, Alphabet

__all__ = ["DNA", "PROTEIN", "RNA", "Alphabet"]
