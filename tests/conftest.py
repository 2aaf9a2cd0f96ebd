"""Shared test configuration: GPU tests skip where no CUDA device is present; hypothesis profiles.

The fuzz tests (tests/test_fuzz.py) run the "ci" profile by default: derandomized, so CI tries the same inputs on
every run and a failure replays. The "long" profile tries many more, fresh ones each time:

    pytest tests/test_fuzz.py --hypothesis-profile=long      # or HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py
"""
import os

import pytest
import torch
from hypothesis import settings

CI_EXAMPLES = 300
LONG_EXAMPLES = 3000
settings.register_profile("ci", derandomize=True, max_examples=CI_EXAMPLES, deadline=None, print_blob=True)
settings.register_profile("long", max_examples=LONG_EXAMPLES, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
