"""Concept overlays: blended over the photo, coloured by rank, in a colour-blind-safe palette."""

import numpy as np
import torch

from pipelines.run.overlays import CONCEPT_COLOURS, MAX_ALPHA, all_concepts_overlay, concept_colour, one_concept_overlay


def test_each_pixel_takes_the_colour_of_its_strongest_concept_and_the_photo_shows_through():
    image = torch.full((3, 8, 8), 0.5)
    maps = torch.zeros(3, 8, 8)
    maps[2, :, :4] = 1.0  # concept id 2, ranked first: left half
    maps[0, :, 4:] = 0.5  # concept id 0, ranked second: right half, half as strong
    out = np.asarray(all_concepts_overlay(image, maps, order=[2, 0, 1])).astype(float) / 255
    first, second = (np.array([int(c[i:i + 2], 16) for i in (1, 3, 5)]) / 255 for c in CONCEPT_COLOURS[:2])
    np.testing.assert_allclose(out[0, 0], 0.5 * (1 - MAX_ALPHA) + first * MAX_ALPHA, atol=1 / 255)
    np.testing.assert_allclose(out[0, 7], 0.5 * (1 - MAX_ALPHA / 2) + second * MAX_ALPHA / 2, atol=1 / 255)
    assert MAX_ALPHA < 1  # never replaces the photo


def test_a_hidden_concept_is_not_drawn_and_does_not_dim_the_others():
    image = torch.full((3, 8, 8), 0.5)
    maps = torch.zeros(3, 8, 8)
    maps[1] = 4.0  # concept id 1, ranked first: flat and strong everywhere (a shared offset)
    maps[2, :, :4] = 1.0  # concept id 2, ranked second: the left half
    out = np.asarray(all_concepts_overlay(image, maps, order=[1, 2, 0], hidden={1})).astype(float) / 255
    second = np.array([int(CONCEPT_COLOURS[1][i:i + 2], 16) for i in (1, 3, 5)]) / 255  # rank 2 keeps its colour
    np.testing.assert_allclose(out[0, 0], 0.5 * (1 - MAX_ALPHA) + second * MAX_ALPHA, atol=1 / 255)  # full strength
    np.testing.assert_allclose(out[0, 7], [0.5] * 3, atol=1 / 255)  # where only the hidden one is: the photo
    everything = np.asarray(all_concepts_overlay(image, maps, order=[1, 2, 0], hidden={0, 1, 2})).astype(float)
    np.testing.assert_allclose(everything / 255, 0.5, atol=1 / 255)


def test_no_map_leaves_the_photo_unchanged():
    image = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(0))
    out = np.asarray(one_concept_overlay(image, torch.zeros(6, 6), rank=4)).astype(float) / 255
    np.testing.assert_allclose(out, image.permute(1, 2, 0).numpy(), atol=1 / 255)


def test_palette_is_tol_muted_and_wraps():
    # the default ten concepts each have their own colour (the tenth once took the first's: the most important)
    assert len(set(CONCEPT_COLOURS)) == 10 and concept_colour(10) == concept_colour(0) == "#CC6677"
