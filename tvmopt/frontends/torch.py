"""Import torch.nn.Modules (through torch.export) and saved .pt2 ExportedPrograms into a Model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping

from .._files import sha256_file, sha256_text
from ..errors import InputSpecError, ModelImportError, UnsupportedOperatorError, first_line, last_line, require
from ..model import Model
from ..native_output import captured
from .relax_specs import input_specs, output_specs


def import_module(module, example_inputs: tuple | Mapping[str, Any], input_shapes, name: str | None) -> Model:
    torch = require("torch", "torch")
    if input_shapes:
        raise InputSpecError(
            "input_shapes applies to ONNX models; for a torch module pass example_inputs of the wanted shape"
        )
    label = type(module).__name__
    try:
        if isinstance(example_inputs, Mapping):  # keyword inputs: their names become the input names
            exported = torch.export.export(module.eval(), (), kwargs=dict(example_inputs))
        else:
            exported = torch.export.export(module.eval(), example_inputs)
    except Exception as err:  # noqa: BLE001 - torch.export raises many kinds
        raise ModelImportError(f"torch module {label}: torch.export failed: {first_line(err)}") from err
    return _from_exported(exported, f"torch.nn.Module {label}", "torch", name or label.lower())


def import_pt2(path: Path, input_shapes, name: str | None) -> Model:
    torch = require("torch", "torch")
    if input_shapes:
        raise InputSpecError(f"{path}: input_shapes applies to ONNX models; a .pt2 has its shapes fixed at export")
    try:
        exported = torch.export.load(str(path))
    except Exception as err:  # noqa: BLE001
        raise ModelImportError(f"{path}: not a readable torch.export .pt2 file ({last_line(err)})") from err
    return _from_exported(exported, str(path), "pt2", name or path.stem, sha256_file(path))


def _from_exported(exported, source: str, fmt: str, name: str, sha: str | None = None) -> Model:
    from .torch_converters import decomposition_table

    try:
        decomposed = exported.run_decompositions(decomposition_table())
    except Exception as err:  # noqa: BLE001 - torch raises many kinds
        raise ModelImportError(f"{source}: torch's decomposition of the program failed: {first_line(err)}") from err
    try:
        mod = exported_program_to_relax(decomposed, decomposed=True)
    except NodeConversionError as err:
        raise ModelImportError(f"{source}: TVM's PyTorch frontend failed {err}") from err
    except UnsupportedOperatorError as err:
        raise UnsupportedOperatorError(f"{source}: {err}") from err
    except Exception as err:  # noqa: BLE001
        raise ModelImportError(f"{source}: TVM's PyTorch frontend failed: {last_line(err)}") from err
    inputs = input_specs(mod["main"])
    return Model(
        mod=mod,
        inputs=inputs,
        outputs=output_specs(mod, []),
        name=name,
        source=source,
        format=fmt,
        sha256=sha or sha256_text(str(exported.graph_module.code) + str(inputs)),
    )


class NodeConversionError(RuntimeError):
    """TVM's translator failed on one FX node (`node`, its `target` op)."""

    def __init__(self, target: str, node: str, reason: str):
        super().__init__(f"converting {target} node '{node}': {reason}")


def exported_program_to_relax(exported, decomposed: bool = False):
    """torch.export ExportedProgram -> Relax, parameters bound as constants.

    We run torch's decompositions ourselves (tvmopt's table, torch_converters.py), hand TVM's
    translator the converters that replace its own, and remember the FX node being converted
    so a failure names it (TVM's message names neither the node nor, often, the op).
    """
    _restore_tvm_ffi_torch_support()
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    from .torch_converters import CONVERTERS, decomposition_table

    if not decomposed:
        exported = exported.run_decompositions(decomposition_table())
    importer = ExportedProgramImporter()
    current: list = [None]

    def tracked(convert):
        def call(node, *rest):
            current[0] = node
            return convert(node, *rest)

        return call

    importer.convert_map = {k: tracked(v) for k, v in importer.convert_map.items()}
    _check_supported(exported, set(importer.convert_map) | set(CONVERTERS))
    with captured():
        try:
            return importer.from_exported_program(
                # keep_params_as_input, unwrap_unit_return_tuple, no_bind_return_tuple: the public defaults
                exported, False, False, False, {k: tracked(v) for k, v in CONVERTERS.items()}
            )
        except Exception as err:  # noqa: BLE001 - converters raise anything
            node = current[0]
            if node is None:
                raise
            target = getattr(node.target, "__name__", str(node.target))
            raise NodeConversionError(target, node.name, last_line(err)) from err


def _check_supported(exported, known: set[str]) -> None:
    """Name every op TVM's translator has no converter for, with its nodes (TVM lists op names only)."""
    missing: dict[str, list[str]] = {}
    for node in exported.graph.nodes:
        if node.op == "call_function" and node.target.__name__ not in known:
            missing.setdefault(node.target.__name__, []).append(node.name)
    if missing:
        parts = [
            f"{op} (node {', '.join(nodes[:3])}{f' and {len(nodes) - 3} more' if len(nodes) > 3 else ''})"
            for op, nodes in sorted(missing.items())
        ]
        raise UnsupportedOperatorError(f"TVM's PyTorch frontend has no converter for: {'; '.join(parts)}")


def _restore_tvm_ffi_torch_support() -> None:
    """Give tvm_ffi back the torch module the runtime hid from it (runtime/tvm_runtime.py imports
    tvm_ffi without torch when a process starts with the runtime), so torch tensors convert."""
    convert = sys.modules.get("tvm_ffi._convert")
    if convert is not None and getattr(convert, "torch", None) is None and "torch" in sys.modules:
        convert.torch = sys.modules["torch"]
