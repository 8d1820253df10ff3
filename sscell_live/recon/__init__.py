"""Tomographic reconstruction: preprocessing, centre finding, backends (TomoPy when importable, our own CPU/GPU), streaming."""
