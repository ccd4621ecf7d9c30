"""Hand-built ONNX generator models for tests: no TensorFlow, exact and known behaviour.

``repeat`` continues a context with its own last ``horizon`` seconds (a perfect loop), ``nan`` answers NaN and
inf, ``loud`` answers the repeat times ``gain`` (40 dB too hot by default), ``silent`` answers zeros. Each carries
Encore's contract in its metadata, which the caller may override or remove to build broken models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from engine.contract import ModelContract


def make_model(path: Path, kind: str = "repeat", *, sample_rate: int = 8000, chunk_s: float = 1.0,
               context_s: float = 20.0, horizon_s: float = 10.0, metadata: dict[str, str | None] | None = None,
               graph_context_chunks: int | None = None, gain: float = 100.0) -> Path:
    """Write a test generator model and return its path.

    ``metadata`` entries override the contract's (``None`` removes a key); ``graph_context_chunks`` makes the graph's
    input length disagree with the contract.
    """
    contract = ModelContract(sample_rate=sample_rate, chunk_s=chunk_s, context_s=context_s, horizon_s=horizon_s,
                             preset=f"test-{kind}", corpus="none (hand-built test model)", project_version="test")
    n_in = graph_context_chunks or contract.context_chunks
    n_out, samples = contract.horizon_chunks, contract.chunk_samples
    inp = helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", n_in, samples])
    out = helper.make_tensor_value_info("continuation", TensorProto.FLOAT, ["batch", n_out, samples])
    const = [
        helper.make_tensor("starts", TensorProto.INT64, [1], [n_in - n_out]),
        helper.make_tensor("ends", TensorProto.INT64, [1], [n_in]),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    nodes = [helper.make_node("Slice", ["context", "starts", "ends", "axes"], ["last"])]
    if kind == "repeat":
        nodes.append(helper.make_node("Identity", ["last"], ["continuation"]))
    elif kind == "loud":
        const.append(helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]))
        nodes.append(helper.make_node("Mul", ["last", "gain"], ["continuation"]))
    elif kind == "silent":
        const.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
        nodes.append(helper.make_node("Mul", ["last", "zero"], ["continuation"]))
    elif kind == "nan":
        # last / 0: NaN where the context is 0, +-inf elsewhere; then half of it replaced by the signal itself.
        const.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
        nodes.append(helper.make_node("Div", ["last", "zero"], ["broken"]))
        mask = np.zeros((1, n_out, samples), bool)
        mask[:, :, ::2] = True
        const.append(helper.make_tensor("mask", TensorProto.BOOL, mask.shape, mask.ravel().tolist()))
        nodes.append(helper.make_node("Where", ["mask", "broken", "last"], ["continuation"]))
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, f"test_{kind}", [inp], [out], initializer=const)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    props = contract.to_metadata()
    for key, value in (metadata or {}).items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return Path(path)
