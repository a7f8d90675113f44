"""NonMaxSuppression. Its output length depends on the data, so it runs on concrete values
(op by op, on the host); a jitted graph that reaches it falls back to op-by-op for that shape."""

from __future__ import annotations

from . import op
from ._common import concrete, is_const, jnp, np


def _corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """[..., 4] boxes as (y_min, x_min, y_max, x_max)."""
    if center_point_box:
        xc, yc, w, h = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
        return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], axis=-1)
    y1, x1, y2, x2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], axis=-1)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    top = np.maximum(box[0], others[:, 0])
    left = np.maximum(box[1], others[:, 1])
    bottom = np.minimum(box[2], others[:, 2])
    right = np.minimum(box[3], others[:, 3])
    inter = np.where((bottom > top) & (right > left), (bottom - top) * (right - left), 0.0)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    ok = (inter > 0) & (area > 0) & (areas > 0) & (union > 0)
    return np.where(ok, inter / np.where(union > 0, union, 1), 0.0)


@op("NonMaxSuppression", fold=False)
def non_max_suppression(n, boxes, scores, max_per_class=None, iou_threshold=None, score_threshold=None):
    boxes_v = concrete(boxes, "NonMaxSuppression boxes").astype(np.float64)
    scores_v = concrete(scores, "NonMaxSuppression scores").astype(np.float64)
    limit = int(concrete(max_per_class, "max boxes").reshape(-1)[0]) if max_per_class is not None and \
        np.asarray(concrete(max_per_class, "max boxes")).size else 0
    iou_t = float(concrete(iou_threshold, "iou").reshape(-1)[0]) if iou_threshold is not None and \
        np.asarray(concrete(iou_threshold, "iou")).size else 0.0
    score_t = None
    if score_threshold is not None and np.asarray(concrete(score_threshold, "score")).size:
        score_t = float(concrete(score_threshold, "score").reshape(-1)[0])
    corners = _corners(boxes_v, n.attr("center_point_box", 0))
    selected = []
    for b in range(scores_v.shape[0]):
        for c in range(scores_v.shape[1]):
            s = scores_v[b, c]
            candidates = np.arange(s.shape[0])
            if score_t is not None:
                candidates = candidates[s[candidates] > score_t]
            # highest score first; ties: lower index first
            order = candidates[np.lexsort((candidates, -s[candidates]))]
            kept: list[int] = []
            for idx in order:
                if len(kept) >= limit:
                    break
                if kept and np.any(_iou(corners[b, idx], corners[b, kept]) > iou_t):
                    continue
                kept.append(int(idx))
                selected.append((b, c, int(idx)))
    result = np.asarray(selected, np.int64).reshape(-1, 3)
    return result if is_const(boxes) and is_const(scores) else jnp.asarray(result)
