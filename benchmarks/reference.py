"""The baseline: explained predictions the way the MelanomaNet reference code computes them, eagerly in
PyTorch, on the same weights: torchvision preprocessing on PIL images, T full forward passes with dropout
active (BatchNorm in eval), GradCAM++ through pytorch-grad-cam (autograd), and colour analysis by
scikit-learn KMeans(n_clusters=6, n_init=10) over the lesion's pixels. Runs on the device the model is on."""

from __future__ import annotations

import json

import cv2
import numpy as np
import torch
from PIL import Image
from torchvision import transforms


class ReferencePipeline:
    def __init__(self, model, target_layer: str, image_size: int, mc_samples: int = 10):
        self.model = model.eval()
        self.layer = model.get_submodule(target_layer)
        self.device = next(model.parameters()).device
        self.mc_samples = mc_samples
        self.transform = transforms.Compose([
            transforms.Resize((image_size, image_size)), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def preprocess(self, path) -> torch.Tensor:
        return self.transform(Image.open(path).convert("RGB"))[None].to(self.device)

    @torch.no_grad()
    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.model(tensor)

    @torch.no_grad()
    def mc_dropout(self, tensor: torch.Tensor, samples: int) -> torch.Tensor:
        dropouts = [m for m in self.model.modules() if isinstance(m, torch.nn.Dropout)]
        for module in dropouts:
            module.train()
        try:
            return torch.stack([torch.softmax(self.model(tensor), 1) for _ in range(samples)])
        finally:
            for module in dropouts:
                module.eval()

    def gradcampp(self, tensor: torch.Tensor, target: int, layer=None) -> np.ndarray:
        return self.gradcampp_batch(tensor, [target], layer)[0]

    def gradcampp_batch(self, tensor: torch.Tensor, targets: list[int], layer=None) -> np.ndarray:
        """One map per image of the batch, each for its own target class."""
        from pytorch_grad_cam import GradCAMPlusPlus
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        with GradCAMPlusPlus(model=self.model, target_layers=[layer or self.layer]) as cam:
            return cam(input_tensor=tensor.clone().requires_grad_(True),
                       targets=[ClassifierOutputTarget(t) for t in targets])

    @staticmethod
    def abcde(image_rgb: np.ndarray) -> dict:
        """Reference-style ABCD: Otsu mask, asymmetry about the image axes, KMeans colours, diameter in px."""
        from sklearn.cluster import KMeans

        gray = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY)
        _, mask = cv2.threshold(cv2.GaussianBlur(gray, (5, 5), 0), 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        area = max(int(mask.sum()), 1)
        asymmetry = [float(np.logical_xor(mask, np.flip(mask, axis)).sum() / area) for axis in (0, 1)]
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        contour = max(contours, key=cv2.contourArea)
        perimeter = cv2.arcLength(contour, True)
        pixels = image_rgb[mask.astype(bool)].astype(np.float32)
        kmeans = KMeans(n_clusters=6, n_init=10, random_state=0).fit(pixels)
        hull = cv2.convexHull(contour).reshape(-1, 2).astype(float)
        diameter = float(np.max(np.linalg.norm(hull[:, None] - hull[None], axis=2)))
        return {"asymmetry": asymmetry, "border": perimeter**2 / (4 * np.pi * area),
                "colors": int(len(np.unique(kmeans.labels_))), "diameter_px": diameter}

    def explain(self, path, abcde: bool = True) -> str:
        tensor = self.preprocess(path)
        probabilities = torch.softmax(self.forward(tensor), 1)[0]
        mc = self.mc_dropout(tensor, self.mc_samples)
        target = int(probabilities.argmax())
        cam = self.gradcampp(tensor, target)
        report = {"probabilities": probabilities.tolist(), "mc_mean": mc.mean(0)[0].tolist(),
                  "cam_peak": float(cam.max())}
        if abcde:
            report["abcde"] = self.abcde(np.asarray(Image.open(path).convert("RGB")))
        return json.dumps(report)
