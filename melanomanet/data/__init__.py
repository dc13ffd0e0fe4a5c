"""ISIC 2019 data: labels, splits, datasets, augmentation, and the synthetic lesion generator."""
