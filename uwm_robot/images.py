"""Camera frame resizing shared by the robot client (live frames) and training (recorded frames),
so a policy is trained on exactly the pixels it is served."""

from __future__ import annotations

import cv2
import numpy as np


def resize_rgb(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    # INTER_AREA for shrinking (no aliasing), linear when enlarging.
    shrink = image.shape[0] >= hw[0] and image.shape[1] >= hw[1]
    return cv2.resize(image, (hw[1], hw[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_frames(images: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, h, w, 3), frame by frame as `resize_rgb`."""
    images = np.asarray(images)
    if images.shape[1:3] == tuple(hw):
        return np.ascontiguousarray(images)
    out = np.empty((len(images), hw[0], hw[1], 3), np.uint8)
    for i, img in enumerate(images):
        out[i] = resize_rgb(np.ascontiguousarray(img), hw)
    return out
