"""Stage: ONNX model -> list of what TensorRT's ONNX parser would refuse (runs on CPU, no TensorRT)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from export.stages.trt_ops import CAVEATS, CONSTANT_WEIGHT_INPUT, MAX_OPSET, QDQ_OPS, UNSUPPORTED
from runtime.errors import ConfigError


@dataclass
class CheckReport:
    target: str
    op_counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"target": self.target, "passed": self.passed, "problems": self.problems,
                "warnings": self.warnings, "op_counts": self.op_counts}


def check_tensorrt(onnx_path: Path) -> CheckReport:
    import onnx

    if not Path(onnx_path).is_file():
        raise ConfigError(f"{onnx_path}: no such ONNX file; check the path")
    model = onnx.load(str(onnx_path), load_external_data=False)
    report = CheckReport(target="tensorrt")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > MAX_OPSET:
        report.problems.append(f"opset {opset} is newer than TensorRT 10 parses ({MAX_OPSET}); "
                               f"export again with --opset {MAX_OPSET}")
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    # A quantized weight is a constant too: the dequantized initializer (explicit quantization, Q/DQ).
    constants |= {node.output[0] for node in model.graph.node
                  if node.op_type == "DequantizeLinear" and node.input[0] in constants}
    for node in _all_nodes(model.graph):
        report.op_counts[node.op_type] = report.op_counts.get(node.op_type, 0) + 1
        label = f"{node.op_type} ({node.name or 'unnamed'})"
        if node.domain not in ("", "ai.onnx"):
            report.problems.append(f"{label}: custom domain {node.domain!r} needs a TensorRT plugin")
        elif node.op_type in UNSUPPORTED:
            report.problems.append(f"{label}: not supported by TensorRT's ONNX parser")
        elif node.op_type == "Dropout" and _dropout_trains(node, constants, model.graph):
            report.problems.append(f"{label}: Dropout in training mode; TensorRT refuses it. Export with "
                                   "`mnet-export onnx`, which feeds MC dropout as the mc_mask input instead")
        weight_index = CONSTANT_WEIGHT_INPUT.get(node.op_type)
        if weight_index is not None and len(node.input) > weight_index and node.input[weight_index] not in constants:
            report.problems.append(f"{label}: weight input {node.input[weight_index]!r} must be an initializer")
        if node.op_type in QDQ_OPS:
            report.problems.extend(f"{label}: {problem}" for problem in _qdq_problems(node, model.graph, constants))
        if node.op_type in CAVEATS:
            report.warnings.append(f"{label}: {CAVEATS[node.op_type]}")
    return report


def _qdq_problems(node, graph, constants: set[str]) -> list[str]:
    """TensorRT's explicit quantization is symmetric INT8: constant scales, zero points 0 and of type int8."""
    from onnx import TensorProto, numpy_helper

    values = {init.name: init for init in graph.initializer}
    problems = []
    if node.input[1] not in constants:
        problems.append("its scale must be a constant")
    if len(node.input) > 2 and node.input[2]:
        zero_point = values.get(node.input[2])
        if zero_point is None:
            problems.append("its zero point must be an initializer")
        elif zero_point.data_type != TensorProto.INT8:
            problems.append(f"zero point of type {TensorProto.DataType.Name(zero_point.data_type)}: TensorRT "
                            "quantizes to INT8 only; quantize again with --target tensorrt")
        elif numpy_helper.to_array(zero_point).any():
            problems.append("non-zero zero point (asymmetric activations): TensorRT takes symmetric scales only; "
                            "quantize again with mnet-export quantize --target tensorrt")
    return problems


def _dropout_trains(node, constants: set[str], graph) -> bool:
    if len(node.input) < 3 or not node.input[2]:
        return False
    if node.input[2] not in constants:
        return True
    from onnx import numpy_helper

    values = {init.name: init for init in graph.initializer}
    if node.input[2] in values:
        return bool(numpy_helper.to_array(values[node.input[2]]))
    for constant in graph.node:
        if constant.op_type == "Constant" and constant.output[0] == node.input[2]:
            return bool(numpy_helper.to_array(constant.attribute[0].t))
    return True


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.g.node:
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)
