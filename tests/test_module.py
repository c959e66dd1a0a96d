from unittest import mock

import torch
from torch import nn

from catdog_pl.module import CatDogClassifier


def test_hook_name_skips_module_setattr_and_the_rest_does_not():
    model = CatDogClassifier()
    extra, scale = nn.Linear(1, 1), nn.Parameter(torch.ones(1))
    with mock.patch.object(nn.Module, "__setattr__", autospec=True, side_effect=nn.Module.__setattr__) as spy:
        model._current_fx_name = "training_step"
        assert spy.call_count == 0
        model.extra = extra  # everything else is still registered by nn.Module
        model.scale = scale
        assert spy.call_count == 2
    assert model._current_fx_name == "training_step"
    assert "_current_fx_name" not in model._parameters and "_current_fx_name" not in model._modules
    assert "extra" in model._modules and "scale" in model._parameters
    model._current_fx_name = None
    assert model._current_fx_name is None
