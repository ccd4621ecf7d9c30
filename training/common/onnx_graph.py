"""What every exporter does to the graph tf2onnx gives: the opset, the outputs named as the contract says, and the
contract written into the ONNX metadata. Shared by the seed model's export (:mod:`training.seed.export`) and the resynth
scorer's (:mod:`training.scorer`), so neither imports the other for it.
"""

from __future__ import annotations

from pathlib import Path

from engine.errors import ConfigError

OPSET = 17


def project_version() -> str:
    try:
        from importlib.metadata import version

        return version("encore")
    except Exception:  # running from a source tree that was never installed
        return "0.1.0"


def checked_output_path(out_path: str | Path) -> Path:
    """The path an exporter writes, refused with one line unless it is a ``.onnx`` file in a folder that exists."""
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ConfigError(f"{out_path}: the exported model's name must end in .onnx")
    if not out_path.parent.is_dir():
        raise ConfigError(f"{out_path}: folder {out_path.parent} does not exist")
    return out_path


def finish_graph(proto, metadata: dict[str, str], *, inputs: tuple[str, ...], outputs: tuple[str, ...],
                 doc: str) -> None:
    """Name the outputs as the contract says (in order), check the inputs, and write the contract into the metadata."""
    import onnx

    graph = proto.graph
    if [i.name for i in graph.input] != list(inputs):
        raise ConfigError(f"exported graph inputs {[i.name for i in graph.input]}, expected {list(inputs)}")
    if len(graph.output) != len(outputs):
        raise ConfigError(f"exported graph has {len(graph.output)} outputs, expected {len(outputs)}")
    renames = {o.name: name for o, name in zip(graph.output, outputs, strict=True) if o.name != name}
    for node in graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for output in graph.output:
        output.name = renames.get(output.name, output.name)
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = doc
