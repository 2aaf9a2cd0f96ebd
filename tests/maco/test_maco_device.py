"""The CUDA-only seam: no-ops (or the CPU equivalent) on the CPU, the CUDA calls on CUDA (stubbed without a GPU)."""

import pytest
import torch

from maco.device import generator, on_cuda_by_default, peak_memory_mb, reset_peak_memory, synchronize

CUDA = torch.device("cuda", 0)


@pytest.fixture
def cuda_calls(monkeypatch) -> list:
    """Record the CUDA functions the seam calls, so its CUDA branch runs on a machine without a GPU."""
    calls: list = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: calls.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: calls.append(("peak", device)) or 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", device)))
    return calls


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_on_other_devices_the_seam_calls_no_cuda_function(cuda_calls, device):
    synchronize(device)
    reset_peak_memory(device)
    assert peak_memory_mb(device) is None  # no counter: a missing figure, not a zero
    assert cuda_calls == []


@pytest.mark.parametrize("device", [CUDA, "cuda:0"])
def test_on_cuda_the_seam_calls_the_cuda_functions(cuda_calls, device):
    synchronize(device)
    assert peak_memory_mb(device) == 3.0
    reset_peak_memory(device)
    assert [name for name, _ in cuda_calls] == ["synchronize", "peak", "reset"]
    assert all(torch.device(called) == CUDA for _, called in cuda_calls)


@pytest.mark.parametrize(
    "choice, device, expected",
    [(None, "cpu", False), (None, CUDA, True), (True, "cpu", True), (False, CUDA, False), (True, CUDA, True)],
)
def test_none_means_on_cuda_only_and_an_explicit_choice_wins(choice, device, expected):
    assert on_cuda_by_default(choice, device) is expected


def test_cpu_generators_are_seeded_cpu_generators():
    a, b = generator("cpu", 7), generator(torch.device("cpu"), 7)
    assert a.device.type == "cpu"
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert torch.equal(
        torch.rand(5, generator=generator("cpu", 7)), torch.rand(5, generator=torch.Generator().manual_seed(7))
    )


@pytest.mark.gpu
def test_cuda_generators_draw_on_the_gpu_and_repeat():
    a, b = generator(CUDA, 7), generator(CUDA, 7)
    assert a.device.type == "cuda"
    assert torch.equal(torch.rand(5, generator=a, device=CUDA), torch.rand(5, generator=b, device=CUDA))


@pytest.mark.gpu
def test_peak_memory_counts_a_tensor_on_the_gpu():
    reset_peak_memory(CUDA)
    x = torch.empty(8 * 2**20, dtype=torch.uint8, device=CUDA)
    synchronize(CUDA)
    assert peak_memory_mb(CUDA) >= 8
    del x
