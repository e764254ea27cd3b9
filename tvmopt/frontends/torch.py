"""Import torch.nn.Modules (through torch.export) and saved .pt2 ExportedPrograms into a Model."""

from __future__ import annotations

import sys
from pathlib import Path

from .._files import sha256_file, sha256_text
from ..errors import InputSpecError, ModelImportError, last_line, require
from ..model import Model
from ..native_output import captured
from .relax_specs import input_specs, output_specs


def import_module(module, example_inputs: tuple, input_shapes, name: str | None) -> Model:
    torch = require("torch", "torch")
    if input_shapes:
        raise InputSpecError(
            "input_shapes applies to ONNX models; for a torch module pass example_inputs of the wanted shape"
        )
    label = type(module).__name__
    try:
        exported = torch.export.export(module.eval(), example_inputs)
    except Exception as err:  # noqa: BLE001 - torch.export raises many kinds
        raise ModelImportError(f"torch module {label}: torch.export failed: {last_line(err)}") from err
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
    try:
        mod = exported_program_to_relax(exported)
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


def exported_program_to_relax(exported):
    """torch.export ExportedProgram -> Relax, parameters bound as constants.

    We run torch's decompositions ourselves (with tvmopt's table, torch_converters.py) and hand
    TVM's translator the converters that replace its own for some ops.
    """
    _restore_tvm_ffi_torch_support()
    from tvm.relax.frontend.torch import from_exported_program

    from .torch_converters import CONVERTERS, decomposition_table

    decomposed = exported.run_decompositions(decomposition_table())
    with captured():
        return from_exported_program(
            decomposed, keep_params_as_input=False, run_ep_decomposition=False, custom_convert_map=CONVERTERS
        )


def _restore_tvm_ffi_torch_support() -> None:
    """Give tvm_ffi back the torch module the runtime hid from it (runtime/tvm_runtime.py imports
    tvm_ffi without torch when a process starts with the runtime), so torch tensors convert."""
    convert = sys.modules.get("tvm_ffi._convert")
    if convert is not None and getattr(convert, "torch", None) is None and "torch" in sys.modules:
        convert.torch = sys.modules["torch"]
