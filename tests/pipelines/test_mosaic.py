"""The mosaic: its title stays readable at the size the class page shows it (about half its width)."""

import numpy as np
import torch

from pipelines.run.mosaic import concept_mosaic


def test_title_text_scales_with_the_mosaic():
    torch.manual_seed(0)
    mosaic = concept_mosaic(torch.rand(3, 64, 64), torch.rand(1, 64, 64), [torch.rand(3, 16, 16)] * 10,
                            title="house (3) - concept 1 of 5 - 63.6% of logit")
    pixels = np.asarray(mosaic.convert("L"))
    first_image_row = int(np.argmax((pixels < 250).mean(1) > 0.5))  # pictures fill their rows; text does not
    ink_rows = np.where((pixels[:first_image_row] < 128).any(1))[0]
    assert len(ink_rows) > 0
    text_height = ink_rows.max() - ink_rows.min() + 1
    assert text_height >= mosaic.width / 60  # >= ~10 px when the page shows a 1176 px mosaic at half size
