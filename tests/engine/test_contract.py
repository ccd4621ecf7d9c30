"""The model contract: what loads, and what is refused with a message that names both sides."""

from __future__ import annotations

import pytest

from engine.continuator import Continuator
from engine.contract import ModelContract
from engine.errors import ModelContractError
from tests.onnx_models import make_model


def test_metadata_round_trip():
    contract = ModelContract(sample_rate=22050, chunk_s=1.0, context_s=20.0, horizon_s=10.0, preset="compact")
    again = ModelContract.from_metadata(contract.to_metadata())
    assert again == contract
    assert (again.context_samples, again.horizon_samples, again.chunk_samples) == (441000, 220500, 22050)
    assert again.input_shape == (20, 22050) and again.output_shape == (10, 22050)


def test_loads_a_model_and_reports_its_contract(repeat_model):
    model = Continuator(repeat_model)
    assert model.contract.sample_rate == 8000
    assert model.contract.context_s == 20.0 and model.contract.horizon_s == 10.0
    assert dict(model.contract.describe())["sample rate"] == "8000 Hz"


def test_a_model_without_encore_metadata_is_not_an_encore_model(tmp_path):
    keys = {k: None for k in ModelContract(sample_rate=8000, chunk_s=1, context_s=20, horizon_s=10).to_metadata()}
    path = make_model(tmp_path / "plain.onnx", metadata=keys)
    with pytest.raises(ModelContractError, match="not an Encore model"):
        Continuator(path)


def test_missing_key_is_named(tmp_path):
    path = make_model(tmp_path / "partial.onnx", metadata={"encore.horizon_s": None})
    with pytest.raises(ModelContractError, match="missing encore.horizon_s"):
        Continuator(path)


def test_graph_that_disagrees_with_its_metadata_names_both_sides(tmp_path):
    path = make_model(tmp_path / "liar.onnx", graph_context_chunks=15)
    with pytest.raises(ModelContractError) as caught:
        Continuator(path)
    message = str(caught.value)
    assert "(batch, 20, 8000)" in message and "15" in message


@pytest.mark.parametrize(("key", "value", "words"), [
    ("encore.contract_version", "7", "contract version 7"),
    ("encore.generator", "diffusion", "generator 'diffusion'"),
    ("encore.sample_rate", "many", "bad value"),
    ("encore.context_s", "20.5", "whole number"),
])
def test_unsupported_contract_values_are_refused(tmp_path, key, value, words):
    path = make_model(tmp_path / "odd.onnx", metadata={key: value})
    with pytest.raises(ModelContractError, match=words):
        Continuator(path)


def test_a_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "song.onnx"
    path.write_bytes(b"RIFF....WAVEfmt this is not a model")
    with pytest.raises(ModelContractError, match="not a loadable ONNX model"):
        Continuator(path)


def test_a_missing_model_is_refused(tmp_path):
    with pytest.raises(ModelContractError, match="no such model file"):
        Continuator(tmp_path / "nothing.onnx")
