"""The deploy side of modalities: one adapter per graft.json `modality`, picked by a table."""

from types import SimpleNamespace
from typing import get_args

import pytest

from graftkit.deploy.modality import RUN_MODALITIES, RunModality, run_modality
from graftkit.errors import ConfigError
from graftkit.rundir.spec import Modality


def test_every_run_modality_has_an_adapter_that_keeps_the_contract():
    assert set(RUN_MODALITIES) == set(get_args(Modality))
    members = [m for m in dir(RunModality) if not m.startswith("_")] + list(RunModality.__annotations__)
    for name, cls in RUN_MODALITIES.items():
        adapter = run_modality(SimpleNamespace(modality=name, head=None))
        assert isinstance(adapter, cls) and adapter.name == name
        assert [m for m in members if not hasattr(adapter, m)] == []


def test_unknown_modality_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError, match=r"modality 'imgae'.*did you mean 'image'.*choose one of: image, text"):
        run_modality(SimpleNamespace(modality="imgae", head=None))
