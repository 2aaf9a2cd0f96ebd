import inspect
import json
from dataclasses import FrozenInstanceError, fields, replace

import numpy as np
import pytest

from maco import RenderSettings, fourier, maco, pixels
from maco.settings import METHODS, PAPER_LR

METHOD_OPTIONS = {"maco": "phase_init", "fourier": "decay_power"}  # the fields only one method has


def test_defaults_follow_the_paper_for_each_method():
    assert RenderSettings() == RenderSettings(method="maco")
    assert RenderSettings().to_dict() == dict(
        method="maco", steps=256, image_size=512, crops=32, crop_size=[0.25, 0.1], noise=0.1, lr=1.0, seed=None,
        amp=None, channels_last=None, fold_bn=True, max_batch=None, phase_init="offset", decay_power=None,
    )  # fmt: skip
    assert (RenderSettings(method="fourier").lr, RenderSettings(method="fourier").decay_power) == (0.05, 1.0)
    assert (RenderSettings(method="pixels").lr, RenderSettings(method="pixels").phase_init) == (0.05, None)
    assert {method: RenderSettings(method=method).lr for method in METHODS} == PAPER_LR


@pytest.mark.parametrize("method", METHODS)
def test_keyword_functions_take_exactly_their_methods_settings(method):
    """The keywords of maco/fourier/pixels and the fields of RenderSettings stay in step."""
    function = {"maco": maco, "fourier": fourier, "pixels": pixels}[method]
    parameters = inspect.signature(function).parameters
    own = {name for m, name in METHOD_OPTIONS.items() if m != method}
    expected = {f.name for f in fields(RenderSettings)} - {"method"} - own
    assert expected <= set(parameters), expected - set(parameters)
    assert not own & set(parameters)
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY for name in expected | {"settings"})


@pytest.mark.parametrize("method", METHODS)
def test_to_dict_is_json_and_round_trips(method):
    settings = RenderSettings(method=method, steps=3, crop_size=(0.5, 0.2), seed=4, max_batch=8)
    data = json.loads(json.dumps(settings.to_dict(), allow_nan=False))
    assert data == settings.to_dict() and data["crop_size"] == [0.5, 0.2]
    assert RenderSettings.from_dict(data) == settings
    assert RenderSettings.from_dict({"steps": 3}) == RenderSettings(steps=3)  # missing fields: the defaults


def test_from_dict_names_unknown_keys_and_lists_the_fields():
    with pytest.raises(TypeError, match=r"unknown key\(s\) \['stpes'\]; the fields are \['method', 'steps'"):
        RenderSettings.from_dict({"stpes": 3})


def test_values_are_normalised_so_equal_settings_compare_equal():
    settings = RenderSettings(steps=np.int64(3), crop_size=[1, 0], noise=0, lr=np.float32(0.5), seed=np.int32(2))
    assert settings == RenderSettings(steps=3, crop_size=(1.0, 0.0), noise=0.0, lr=0.5, seed=2)
    assert type(settings.steps) is int and type(settings.seed) is int and type(settings.lr) is float
    assert hash(settings) == hash(RenderSettings(steps=3, crop_size=(1.0, 0.0), noise=0.0, lr=0.5, seed=2))


def test_settings_are_frozen_and_replace_checks_again():
    settings = RenderSettings()
    with pytest.raises(FrozenInstanceError):
        settings.steps = 3
    assert replace(settings, steps=3).steps == 3
    with pytest.raises(ValueError, match="`steps` of RenderSettings"):
        replace(settings, steps=0)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(method="lucid"), ValueError, r"`method` of RenderSettings must be one of \('maco', 'fourier', 'pix"),
        (dict(steps=0), ValueError, "`steps` of RenderSettings must be a positive integer; got 0"),
        (dict(crops=2.0), ValueError, "`crops` of RenderSettings must be a positive integer; got 2.0"),
        (dict(image_size=63), ValueError, "`image_size` of RenderSettings must be an even integer"),
        (dict(image_size=True), ValueError, "`image_size` of RenderSettings must be a positive integer"),
        (dict(crop_size=(0.0, 0.1)), ValueError, r"`crop_size` of RenderSettings must be \(mean, std\)"),
        (dict(noise=float("nan")), ValueError, "`noise` of RenderSettings must be a finite number >= 0; got nan"),
        (dict(lr=0), ValueError, "`lr` of RenderSettings must be a finite number > 0; got 0"),
        (dict(lr=float("inf")), ValueError, "`lr` of RenderSettings must be a finite number > 0"),
        (dict(seed=1.5), TypeError, "`seed` of RenderSettings must be an integer; got float 1.5"),
        (dict(seed=True), TypeError, "`seed` of RenderSettings must be an integer"),
        (dict(amp=1), TypeError, r"`amp` of RenderSettings must be True, False or None \(None: on CUDA only\); got 1"),
        (dict(channels_last="yes"), TypeError, "`channels_last` of RenderSettings must be True, False or None"),
        (dict(fold_bn="yes"), TypeError, "`fold_bn` of RenderSettings must be True or False"),
        (dict(max_batch=0), ValueError, "`max_batch` of RenderSettings must be a positive integer; got 0"),
        (dict(phase_init="flat"), ValueError, r"`phase_init` of RenderSettings must be one of \('offset'"),
        (dict(method="fourier", decay_power=-1), ValueError, "`decay_power` of RenderSettings must be a finite"),
        (
            dict(method="fourier", phase_init="offset"),
            ValueError,
            r"`phase_init` of RenderSettings applies to "
            r"method='maco' only; got phase_init='offset' with method='fourier'\. Leave it None",
        ),
        (dict(decay_power=1.0), ValueError, "`decay_power` of RenderSettings applies to method='fourier' only"),
    ],
)
def test_every_field_is_checked_with_a_message_naming_it(kwargs, error, message):
    with pytest.raises(error, match=message):
        RenderSettings(**kwargs)


def test_fields_are_keyword_only():
    with pytest.raises(TypeError):
        RenderSettings("maco")
