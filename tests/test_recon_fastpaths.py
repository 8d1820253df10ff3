"""Fast paths of the reconstruction: the Fourier backend's gridding (FINUFFT spreading, our pruned FFT and
deconvolution) and worker threads, the threaded preprocessing, the torch backend's CPU path."""

from __future__ import annotations

import numpy as np
import pytest

from sscell_live.recon.backends import fourier
from sscell_live.recon.backends._gridding import Gridder

pytestmark = pytest.mark.skipif(not fourier.available(), reason="finufft not installed")


@pytest.mark.parametrize("n, n_angles, size, eps", [(64, 45, 72, 1e-2), (65, 20, 70, 1e-5), (48, 181, 54, 1e-4)])
def test_gridder_equals_direct_sum(n, n_angles, size, eps):
    """Spread + pruned FFT + measured-kernel deconvolution equal the direct polar sum to ``eps``.

    Odd ``n``, angle counts that are and are not multiples of the wedge, random angles.
    """
    rng = np.random.default_rng(n)
    theta = rng.uniform(0, np.pi, n_angles)
    spec = (rng.standard_normal((n_angles, size)) + 1j * rng.standard_normal((n_angles, size))).astype(np.complex64)
    weight = (rng.standard_normal(size) + 1j * rng.standard_normal(size)).astype(np.complex64)
    w = 2 * np.pi * np.fft.fftfreq(size)
    rows = (-np.sin(theta)[:, None] * w).ravel()
    cols = (np.cos(theta)[:, None] * w).ravel()
    k = np.arange(n) - n // 2
    exact = (np.exp(1j * k[:, None] * rows) * (spec * weight).ravel()) @ np.exp(1j * k[:, None] * cols).T
    g = Gridder(n, theta, size, eps, 1.25, 1, batch=2)  # two transforms per call, the second unused
    re, im = np.empty((n, n), np.float32), np.empty((n, n), np.float32)
    g.modes(spec[None], [weight], [re], [im])
    err = np.linalg.norm(re + 1j * im - exact) / np.linalg.norm(exact)
    assert err < 2 * eps + 1e-5, err
    # accumulating adds the same numbers again (the imaginary part left alone)
    first, im0 = re.copy(), im.copy()
    g.modes(spec[None], [weight], [re], [None], accumulate=True)
    np.testing.assert_allclose(re, 2 * first, rtol=1e-6, atol=1e-6 * np.abs(first).max())
    np.testing.assert_array_equal(im, im0)


def test_worker_threads_and_pairing_do_not_change_the_result():
    """Pairs split over worker threads (own plans and buffers) give the numbers of one thread; a real
    sinogram gives a real slice, so the partner of a slice in its pair changes it only to ``eps``."""
    rng = np.random.default_rng(0)
    theta = np.linspace(0, np.pi, 60, endpoint=False)
    sino = rng.random((5, 60, 48)).astype(np.float32)  # odd count: the last pair is half empty
    one = fourier.reconstruct_sinograms(sino, theta, 24.3, nthreads=1)
    two = fourier.reconstruct_sinograms(sino, theta, 24.3, nthreads=2)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6 * np.abs(one).max())
    alone = fourier.reconstruct_sinograms(sino[:1], theta, 24.3)[0]
    swapped = fourier.reconstruct_sinograms(sino[[0, 3]], theta, 24.3)[0]
    for other in (alone, swapped):
        assert np.sqrt(np.mean((other - one[0]) ** 2)) < 2e-2 * np.sqrt(np.mean(one[0] ** 2))


def test_torch_backend_cpu_path_and_default_device_agree():
    """The torch backend's device choice (CUDA when present) gives the CPU path's numbers; without a GPU
    this runs the CPU path, which is what CI machines have."""
    from sscell_live.recon.backends import torch_fbp

    theta = np.linspace(0, np.pi, 60, endpoint=False)
    s = np.arange(48) - 24.3
    sino = np.zeros((3, 60, 48), dtype=np.float32)
    for k, (x0, y0, r) in enumerate([(5.0, -3.0, 9.0), (-8.0, 6.0, 6.0), (0.0, 0.0, 15.0)]):
        s0 = x0 * np.cos(theta) - y0 * np.sin(theta)  # an off-centre disk: exact chord lengths
        sino[k] = 0.01 * 2 * np.sqrt(np.clip(r**2 - (s[None] - s0[:, None]) ** 2, 0, None))
    cpu = torch_fbp.reconstruct_sinograms(sino, theta, 24.3, device="cpu")
    auto = torch_fbp.reconstruct_sinograms(sino, theta, 24.3)
    assert cpu.shape == (3, 48, 48) and cpu.dtype == np.float32
    np.testing.assert_allclose(auto, cpu, rtol=0, atol=1e-5 * np.abs(cpu).max())
    # and it is the same FBP as the Fourier backend (exact interpolation vs linear: a few % apart)
    fou = fourier.reconstruct_sinograms(sino, theta, 24.3)
    r = np.hypot(*(np.mgrid[:48, :48] - 24)) < 20
    assert np.sqrt(np.mean((fou - cpu)[:, r] ** 2)) < 0.1 * np.sqrt(np.mean(cpu[:, r] ** 2))


def test_threaded_line_integrals_equal_the_three_steps():
    """normalize -> minus_log -> bin_projections, in threaded blocks: the same numbers, the same guards."""
    from sscell_live.recon import bin_projections, minus_log, normalize
    from sscell_live.recon.preprocess import line_integrals

    rng = np.random.default_rng(2)
    raw = rng.integers(50, 4000, size=(7, 12, 20)).astype(np.uint16)
    flat = np.full((12, 20), 4100.0, dtype=np.float32)
    flat[3, 5] = 0.0  # a dead flat pixel: repaired from its row
    dark = np.full((12, 20), 40.0, dtype=np.float32)
    for b in (1, 2, 3):
        ref = bin_projections(minus_log(normalize(raw, flat, dark)), b)
        fast = line_integrals(raw, flat, dark, binning=b, sinograms=True, threads=2)
        np.testing.assert_array_equal(fast, ref.transpose(1, 0, 2))
    bad = raw.astype(np.float32)
    bad[4] = np.nan  # a failed readout, named with its index in the whole scan
    with pytest.raises(ValueError, match=r"frames \[104\]"):
        line_integrals(bad, flat, dark, first_frame=100, threads=2)
