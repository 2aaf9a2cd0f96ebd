"""A tiny MaCo budget for CPU tests."""

FAST = dict(steps=8, image_size=64, crops=4, input_size=32, progress=False)
