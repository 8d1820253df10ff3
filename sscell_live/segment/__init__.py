"""Segmentation of reconstructed volumes into material labels: classical pipeline and a small torch U-Net."""
