"""wildocr.train.det: DB targets from word polygons, training windows, and a loss that training lowers."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")

from wildocr.engine.models import DET_MODEL, model_path  # noqa: E402
from wildocr.samples import render_sample  # noqa: E402
from wildocr.train import det  # noqa: E402
from wildocr.train.data import WordBox  # noqa: E402
from wildocr.train.graph import load  # noqa: E402


def _box(x0: float, y0: float, x1: float, y1: float, text: str = "word") -> WordBox:
    return WordBox(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32), text)


def test_targets_shrink_words_and_mask_unreadable_ones() -> None:
    gt, mask = det.targets([_box(10, 10, 70, 30), _box(80, 40, 95, 55, "###"), _box(5, 50, 7, 52)], (64, 100))
    inside = gt[10:31, 10:71]
    assert gt.sum() > 0 and 0 < inside.mean() < 1  # the kernel is inside the word, smaller than it
    assert gt[10, 10] == 0 and gt[20, 40] == 1  # a corner is not text, the centre is
    assert gt[:, 75:].sum() == 0  # ### is never taught as text...
    assert mask[47, 87] == 0 and mask[5, 5] == 1  # ...nor as background, nor is a word too small to shrink
    assert mask[51, 6] == 0


def test_sample_is_a_normalised_window_with_its_targets() -> None:
    photo = render_sample(2, 0)
    words = [WordBox(np.asarray(w["poly"], np.float32), w["text"]) for w in photo.words]
    x, gt, mask = det.sample(photo.rgb[:, :, ::-1].copy(), words, np.random.default_rng(0), crop=160)
    assert x.shape == (3, 160, 160) and x.dtype == np.float32 and abs(float(x.mean())) < 3
    assert gt.shape == mask.shape == (160, 160) and set(np.unique(gt)) <= {0.0, 1.0}


def test_windows_are_scaled_to_the_input_size_trained_for() -> None:
    """Half the input size, half the words' height: the same draw of the random scale at 368 and 736 px
    gives text maps of about a quarter of the area."""
    photo = render_sample(2, 0)
    words = [WordBox(np.asarray(w["poly"], np.float32), w["text"]) for w in photo.words]
    pixels = photo.rgb[:, :, ::-1].copy()
    areas = [
        float(det.sample(pixels, words, np.random.default_rng(3), crop=1600, limit_side=side)[1].sum())
        for side in (368, 736)
    ]
    assert areas[1] > 0 and 0.15 < areas[0] / areas[1] < 0.35, areas


@pytest.mark.slow
def test_training_lowers_the_loss_on_fixed_windows() -> None:
    """A few AdamW steps at a fine-tuning learning rate lower the DB loss on the windows trained on."""
    photo = render_sample(4, 0)
    words = [WordBox(np.asarray(w["poly"], np.float32), w["text"]) for w in photo.words]
    rng = np.random.default_rng(1)
    items = [det.sample(photo.rgb[:, :, ::-1].copy(), words, rng, crop=128) for _ in range(2)]
    x, gt, mask = (torch.from_numpy(np.stack(c)) for c in zip(*items, strict=True))
    assert gt.sum() > 0
    module, _ = load(str(model_path(DET_MODEL)))
    optimizer = torch.optim.AdamW(module.parameters(), lr=2e-4)
    losses = []
    for _ in range(4):
        optimizer.zero_grad()
        loss = det.loss(module(x), gt, mask)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        final = float(det.loss(module(x), gt, mask))
    assert final < losses[0], (losses, final)
