import pytest
import torch

from maco import FourierImage, MacoImage, PixelImage, default_spectrum


@pytest.mark.parametrize("phase_init", ["offset", "reference", "uniform"])
def test_magnitude_is_fixed_up_to_a_global_scale_at_every_step(phase_init):
    magnitude = default_spectrum(32).double()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    param = MacoImage(magnitude, 2, phase_init=phase_init, generators=gens).double()
    opt = torch.optim.NAdam(param.parameters(), lr=1.0)
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for _ in range(6):
        realised = torch.fft.rfft2(param.spatial()).abs()  # (T, 3, H, W')
        ratio = realised / magnitude
        ratio[..., [0, 0, 16, 16], [0, 16, 0, 16]] = float("nan")  # self-conjugate bins hold M cos(phase)
        for t in range(2):
            r = ratio[t][~torch.isnan(ratio[t])]
            assert (r - r.median()).abs().max() / r.median() < 1e-5
        opt.zero_grad()
        (param() - target).pow(2).mean().backward()
        opt.step()


def test_phase_is_the_only_parameter_and_magnitude_a_buffer():
    param = MacoImage(default_spectrum(16), 3)
    assert [name for name, _ in param.named_parameters()] == ["phase"]
    assert param.phase.shape == (3, 3, 16, 9)
    assert "magnitude" in dict(param.named_buffers())


@pytest.mark.parametrize(
    "make",
    [
        lambda: MacoImage(default_spectrum(24), 2),
        lambda: FourierImage(24, 24, 2),
        lambda: PixelImage(24, 24, 2),
    ],
)
def test_parameterizations_share_one_interface(make):
    image = make()()
    assert image.shape == (2, 3, 24, 24)
    assert image.min() >= 0 and image.max() <= 1
    assert torch.isfinite(image).all()


def test_each_target_draws_its_own_initial_phase():
    def g(seed):
        return torch.Generator().manual_seed(seed)

    batch = MacoImage(default_spectrum(16), 2, generators=[g(4), g(5)])
    single = MacoImage(default_spectrum(16), 1, generators=[g(5)])
    torch.testing.assert_close(batch()[1], single()[0])


def test_offset_init_removes_the_corner_flare_of_the_reference_init():
    def corner_energy(phase_init):
        image = MacoImage(
            default_spectrum(128),
            4,
            phase_init=phase_init,
            generators=[torch.Generator().manual_seed(s) for s in range(4)],
        ).spatial()
        energy = (image - image.mean((2, 3), keepdim=True)).pow(2).sum(1)
        c = 8
        corners = torch.zeros(128, 128, dtype=torch.bool)
        for ys in (slice(0, c), slice(-c, None)):
            for xs in (slice(0, c), slice(-c, None)):
                corners[ys, xs] = True
        return (energy[:, corners].sum() / energy.sum()).item()

    reference, offset = corner_energy("reference"), corner_energy("offset")
    assert reference > 5 * offset
    assert offset < 4 * (4 * 8 * 8) / 128**2  # close to the corners' share of the area


def test_bad_phase_init_is_rejected():
    with pytest.raises(ValueError, match="phase_init"):
        MacoImage(default_spectrum(16), 1, phase_init="gaussian")
