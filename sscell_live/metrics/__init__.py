"""Metrics: pure functions of a label volume (and grey volume) plus voxel size, in physical units."""
