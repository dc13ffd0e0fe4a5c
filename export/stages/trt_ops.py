"""A pinned table: ONNX operators that TensorRT 10's ONNX parser does not import (onnx-tensorrt
docs/operators.md, TensorRT 10.x, opsets 9-20), and restrictions that matter for our graphs."""

MAX_OPSET = 20

UNSUPPORTED = frozenset({
    "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "CenterCropPad",
    "Col2Im", "ConcatFromSequence", "ConvInteger", "Det", "DynamicQuantizeLinear",
    "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial",
    "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv",
    "QLinearMatMul", "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence",
    "StringConcat", "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique",
})

# Explicit quantization: TensorRT imports these as IQuantizeLayer / IDequantizeLayer (symmetric INT8).
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

# Operators whose listed weight input must be a constant (an initializer or a Constant node).
CONSTANT_WEIGHT_INPUT = {"Conv": 1, "ConvTranspose": 1}

# Operators TensorRT imports but with caveats worth a warning.
CAVEATS = {
    "RandomUniformLike": "TensorRT ignores the seed: MC samples would not be reproducible",
    "RandomUniform": "TensorRT ignores the seed: MC samples would not be reproducible",
    "RandomNormalLike": "TensorRT ignores the seed",
    "RandomNormal": "TensorRT ignores the seed",
}
