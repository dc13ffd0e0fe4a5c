"""The exportable graphs: one backbone pass, T head samples under an explicit dropout mask, and what
GradCAM++ needs (target-layer activations and the gradient of the class logits with respect to them)."""

from __future__ import annotations

import torch
from torch import nn

from melanomanet.model import MelanomaNet


def mc_head(embedding: torch.Tensor, mc_mask: torch.Tensor, head: nn.Linear) -> torch.Tensor:
    """N x C embedding, T x C keep-mask (0 or 1/(1-p)) -> N x T x K logits: the head T times."""
    return torch.matmul(embedding.unsqueeze(1) * mc_mask.unsqueeze(0), head.weight.t()) + head.bias


def heads(embedding: torch.Tensor, mc_mask: torch.Tensor, head: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits with dropout off, mc_logits): one matrix product over an all-keep row and the T mask rows,
    so that an all-keep mask reproduces the logits bit for bit."""
    both = mc_head(embedding, torch.cat([torch.ones_like(mc_mask[:1]), mc_mask]), head)
    return both[:, 0], both[:, 1:]


class LastLayerGraph(nn.Module):
    """GradCAM target = the last feature map. There d logit_c / dA[k, i, j] = W[c, k] / (h * w) exactly,
    so the gradient output costs nothing: a K x C constant broadcast over batch and positions."""

    def __init__(self, model: MelanomaNet):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, image: torch.Tensor, mc_mask: torch.Tensor):
        activations = self.model.forward_features(image)
        embedding = activations.mean(dim=(2, 3))
        head = self.model.head
        logits, mc_logits = heads(embedding, mc_mask, head)
        height, width = activations.shape[-2:]
        gradients = (head.weight / (height * width)).reshape(1, head.out_features, -1, 1, 1)
        return logits, mc_logits, activations, gradients, embedding


class _GradientProbe(nn.Module):
    """Forward to logits while capturing the target layer's output as a leaf, then differentiate the
    selected class logit with respect to it. Traced by `make_fx`, this becomes a plain forward graph."""

    def __init__(self, model: MelanomaNet, layer: str):
        super().__init__()
        self.model = model
        self.layer = model.get_submodule(layer)

    def forward(self, image: torch.Tensor, cam_class: torch.Tensor):
        captured = {}

        def capture(module, inputs, output):
            captured["activations"] = output.detach().requires_grad_(True)
            return captured["activations"]

        handle = self.layer.register_forward_hook(capture)
        try:
            with torch.enable_grad():
                embedding = self.model.forward_features(image).mean(dim=(2, 3))
                logits = self.model.head(embedding)
                selected = (torch.arange(logits.shape[1]) == cam_class[:, None]).to(logits.dtype)
                (gradients,) = torch.autograd.grad((logits * selected).sum(), captured["activations"])
        finally:
            handle.remove()
        return logits.detach(), captured["activations"].detach(), gradients.unsqueeze(1), embedding.detach()


def _convolution_input_gradient(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
                                output_padding, groups, output_mask):
    """aten.convolution_backward for frozen weights: only the input gradient, as a transposed convolution."""
    if transposed:
        raise NotImplementedError("transposed convolutions are not expected in EfficientNetV2")
    kernel = weight.shape[2:]
    restore = [input.shape[2 + i] - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                     + dilation[i] * (kernel[i] - 1) + 1) for i in range(len(kernel))]
    grad_input = None
    if output_mask[0]:
        grad_input = torch.ops.aten.convolution.default(grad_output, weight, None, stride, padding, dilation,
                                                        True, restore, groups)
    return grad_input, None, None


class IntermediateLayerGraph(nn.Module):
    """GradCAM target = an inner layer: the backward pass from the chosen class logit down to that layer
    is traced (make_fx with core ATen decompositions) into forward ops, for a fixed input shape."""

    def __init__(self, model: MelanomaNet, layer: str, image_size: int, batch: int = 1):
        super().__init__()
        from torch._decomp import core_aten_decompositions
        from torch.fx.experimental.proxy_tensor import make_fx

        decompositions = dict(core_aten_decompositions())
        decompositions[torch.ops.aten.convolution_backward.default] = _convolution_input_gradient
        probe = _GradientProbe(model, layer).eval()
        example = (torch.zeros(batch, 3, image_size, image_size), torch.zeros(batch, dtype=torch.int64))
        self.probe = make_fx(probe, decomposition_table=decompositions)(*example)
        self.head = model.head
        self.eval()

    def forward(self, image: torch.Tensor, mc_mask: torch.Tensor, cam_class: torch.Tensor):
        _, activations, gradients, embedding = self.probe(image, cam_class)
        logits, mc_logits = heads(embedding, mc_mask, self.head)
        return logits, mc_logits, activations, gradients, embedding
