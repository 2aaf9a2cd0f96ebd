import torch

from maco import add_uniform_noise, crop_and_resize, sample_crop_boxes


def test_crop_boxes_follow_the_area_distribution_and_stay_inside():
    boxes = sample_crop_boxes(20000, crop_size=(0.25, 0.1), generator=torch.Generator().manual_seed(0))
    side = boxes[:, 2] - boxes[:, 0]
    torch.testing.assert_close(side, boxes[:, 3] - boxes[:, 1])
    assert boxes.min() >= 0 and boxes.max() <= 1
    area = side**2
    assert area.min() >= 0.05 - 1e-6 and area.max() <= 1 + 1e-6
    assert abs(area.mean().item() - 0.25) < 0.01  # the clip at 0.05 barely moves the mean
    assert abs(side.mean().item() - 0.49) < 0.02
    centers = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert (centers.mean(0) - 0.5).abs().max() < 0.01


def test_crop_boxes_are_reproducible_per_generator():
    a = sample_crop_boxes(8, generator=torch.Generator().manual_seed(3))
    b = sample_crop_boxes(8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)


def test_crop_and_resize_cuts_the_right_region():
    image = torch.zeros(2, 3, 64, 64)
    image[0, 0, :32, :32] = 1.0  # red top-left quadrant of target 0
    image[1, 2, 32:, 32:] = 1.0  # blue bottom-right quadrant of target 1
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], [[0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]])
    crops = crop_and_resize(image, boxes, 16)
    assert crops.shape == (4, 3, 16, 16)
    means = crops.mean((2, 3))
    torch.testing.assert_close(means[0], torch.tensor([1.0, 0, 0]))
    torch.testing.assert_close(means[1], torch.zeros(3))
    torch.testing.assert_close(means[2], torch.tensor([0, 0, 1.0]))
    torch.testing.assert_close(means[3], torch.zeros(3))


def test_uniform_noise_range_mean_and_per_target_streams():
    crops = torch.zeros(4, 3, 32, 32)
    def gens():
        return [torch.Generator().manual_seed(s) for s in (1, 2)]

    noisy = add_uniform_noise(crops, 0.1, gens())
    assert noisy.abs().max() <= 0.1
    assert abs(noisy.mean().item()) < 0.005
    assert abs(noisy.std().item() - 0.1 / 3**0.5) < 0.005
    alone = add_uniform_noise(torch.zeros(2, 3, 32, 32), 0.1, [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(noisy[2:], alone)


def test_crop_and_resize_scales_x_by_width_and_y_by_height():
    image = torch.zeros(1, 3, 32, 64)  # H=32, W=64
    image[0, 1, :16, 48:] = 1.0  # green: top rows, rightmost quarter
    crops = crop_and_resize(image, torch.tensor([[[0.75, 0.0, 1.0, 0.5], [0.0, 0.5, 0.25, 1.0]]]), 8)
    torch.testing.assert_close(crops.mean((2, 3)), torch.tensor([[0, 1.0, 0], [0, 0, 0]]))
