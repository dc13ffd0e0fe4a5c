"""Fits and measures the runtime's "not dermoscopy" input check (runtime/domain.py, issue 35 item 1): a logistic
regression on twelve colour, contrast and vignette features of a 64-px thumbnail, telling the dermoscopic
images of ../shared/data/real (400 of HAM10000, all of ISIC 2017 and the PH2 half) from the PAD-UFES-20
smartphone photos. Reproduces the figures in runtime/domain.py's docstring and docs/report.md: five-fold
cross-validated AUROC and, at the threshold that flags 1 % of the dermoscopic images (from the cross-validated
scores), the share of clinical photos flagged; then prints the coefficients fitted on all of them.

    .venv/bin/python studies/domain_check.py [../shared/data/real]
"""

import random
import sys
from pathlib import Path

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.domain import domain_features  # noqa: E402

DERMOSCOPY_FALSE_FLAGS = 0.01


def image_sets(real: Path) -> dict[str, list[Path]]:
    rng = random.Random(0)
    return {"ham10000": rng.sample(sorted((real / "ham10000" / "images").glob("*.jpg")), 400),
            "isic2017": sorted((real / "isic2017" / "images").glob("*.jpg")),
            "ph2": sorted((real / "ph2" / "images").glob("*.jpg")),
            "pad-ufes-20": sorted((real / "pad-ufes-20" / "images").glob("*"))}


def main(real: Path) -> None:
    sets = image_sets(real)
    features, clinical, names = [], [], []
    for name, paths in sets.items():
        for path in paths:
            features.append(domain_features(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)))
            clinical.append(name == "pad-ufes-20")
            names.append(name)
    x, y, names = np.array(features), np.array(clinical), np.array(names)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    model = LogisticRegression(C=0.3, class_weight="balanced", max_iter=5000)
    scores = cross_val_predict(model, (x - mean) / scale, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                               method="decision_function")
    threshold = float(np.quantile(scores[~y], 1 - DERMOSCOPY_FALSE_FLAGS))
    print(f"{len(y)} images ({y.sum()} clinical photos); cross-validated AUROC {roc_auc_score(y, scores):.3f}")
    for name in sets:
        print(f"  {name:12s} flagged {np.mean(scores[names == name] > threshold):.1%}")
    model.fit((x - mean) / scale, y)
    print("MEAN =", np.round(mean, 4).tolist())
    print("SCALE =", np.round(scale, 4).tolist())
    print("WEIGHTS =", np.round(model.coef_[0], 4).tolist())
    print("BIAS =", round(float(model.intercept_[0]), 4))
    print("THRESHOLD =", round(threshold, 4))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared" / "data" / "real")
