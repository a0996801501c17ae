#!/usr/bin/env python3
"""NonMaxSuppression and RoiAlign beyond ONNX's own node cases, against
numpy implementations written from ONNX Runtime's definitions: run-time
sized outputs (one module returning different row counts for different
limits and thresholds, and none at all), both box encodings, degenerate
boxes, ties; RoiAlign with an adaptive sampling grid, max mode, both
coordinate modes, regions partly outside the image, hostile regions and
batch indices. Malformed attributes are refused naming the node.

Run with a Python that has onnxruntime (bench/ort_env.py's venv) and every
case is also compared with ONNX Runtime.

usage: detection_vs_numpy.py BIN_DIR
"""
import os
import sys
import tempfile

import numpy as np
from onnx import TensorProto, helper

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import e2e_common as e2e  # noqa: E402

F32 = np.float32


def corners(box, center):
    """(x_min, y_min, x_max, y_max) in f32, as ONNX Runtime reads a box."""
    box = box.astype(F32)
    if center:
        hw, hh = box[2] / F32(2), box[3] / F32(2)
        return box[0] - hw, box[1] - hh, box[0] + hw, box[1] + hh
    return (min(box[1], box[3]), min(box[0], box[2]), max(box[1], box[3]),
            max(box[0], box[2]))


def suppresses(p, q, threshold):
    ix = max(F32(0), min(p[2], q[2]) - max(p[0], q[0]))
    iy = max(F32(0), min(p[3], q[3]) - max(p[1], q[1]))
    inter = F32(ix * iy)
    if inter <= 0:
        return False
    ap, aq = F32((p[2] - p[0]) * (p[3] - p[1])), F32((q[2] - q[0]) * (q[3] - q[1]))
    union = F32(ap + aq - inter)
    if ap <= 0 or aq <= 0 or union <= 0:
        return False
    return F32(inter / union) > threshold


def nms_reference(boxes, scores, limit, iou, score_threshold, center):
    """The sequential sweep: boxes by descending score (a stable sort), each
    kept unless a kept box overlaps it too much, until `limit` are kept."""
    rows = []
    for b in range(boxes.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            order = sorted((i for i in range(s.size)
                            if score_threshold is None or s[i] > score_threshold),
                           key=lambda i: (-s[i], i))
            kept = []
            for i in order:
                if len(kept) >= limit:
                    break
                box = corners(boxes[b, i], center)
                if not any(suppresses(corners(boxes[b, j], center), box, F32(iou)) for j in kept):
                    kept.append(i)
            rows += [(b, c, i) for i in kept]
    return np.array(rows, np.int64).reshape(-1, 3)


def roi_align_reference(x, rois, batch_indices, out_h, out_w, sampling_ratio, spatial_scale,
                        mode, half_pixel):
    """ONNX Runtime's RoiAlign (the formulas of its CPU kernel), in f32."""
    n_rois, channels = rois.shape[0], x.shape[1]
    height, width = x.shape[2], x.shape[3]
    out = np.zeros((n_rois, channels, out_h, out_w), F32)
    offset = F32(0.5) if half_pixel else F32(0)
    for r in range(n_rois):
        b = int(batch_indices[r])
        sx, sy, ex, ey = [F32(v) * F32(spatial_scale) - offset for v in rois[r]]
        rw, rh = F32(ex - sx), F32(ey - sy)
        if not half_pixel:
            rw, rh = max(rw, F32(1)), max(rh, F32(1))
        bh, bw = F32(rh / F32(out_h)), F32(rw / F32(out_w))
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bh))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(bw))
        count = max(gh * gw, 1)
        for ph in range(out_h):
            for pw in range(out_w):
                samples = []
                for iy in range(gh):
                    y = F32(sy + F32(ph) * bh) + F32(F32(F32(iy + 0.5) * bh) / F32(gh))
                    for ix in range(gw):
                        xx = F32(sx + F32(pw) * bw) + F32(F32(F32(ix + 0.5) * bw) / F32(gw))
                        if y < -1 or y > height or xx < -1 or xx > width:
                            samples.append([(F32(0), 0, 0)] * 4)
                            continue
                        yy, xv = max(y, F32(0)), max(xx, F32(0))
                        yl, xl = int(yy), int(xv)
                        if yl >= height - 1:
                            yl = yh = height - 1
                            yy = F32(yl)
                        else:
                            yh = yl + 1
                        if xl >= width - 1:
                            xl = xh = width - 1
                            xv = F32(xl)
                        else:
                            xh = xl + 1
                        ly, lx = F32(yy - yl), F32(xv - xl)
                        hy, hx = F32(1) - ly, F32(1) - lx
                        samples.append([(hy * hx, yl, xl), (hy * lx, yl, xh),
                                        (ly * hx, yh, xl), (ly * lx, yh, xh)])
                for c in range(channels):
                    img = x[b, c]
                    terms = [[F32(w * img[i, j]) for w, i, j in s] for s in samples]
                    if mode == "avg":
                        total = F32(0)
                        for t in terms:
                            total = F32(total + F32(F32(F32(t[0] + t[1]) + t[2]) + t[3]))
                        out[r, c, ph, pw] = total / F32(count)
                    else:
                        out[r, c, ph, pw] = max(max(t) for t in terms) if terms else F32(0)
    return out


def run(bin_dir, work, compiled, inputs, output, tag):
    """hasten's `output`, and ONNX Runtime's or None."""
    (got,), ort = e2e.run_with_ort(bin_dir, work, compiled, inputs, [output], tag)
    return got, None if ort is None else ort[0]


def clustered_boxes(rng, batches, count, center):
    """Boxes around a few centres, so that many overlap, a few degenerate."""
    centres = rng.uniform(0, 10, (batches, 4, 2))
    pick = rng.integers(0, 4, (batches, count))
    xy = centres[np.arange(batches)[:, None], pick] + rng.normal(0, 0.6, (batches, count, 2))
    wh = rng.uniform(0.5, 3, (batches, count, 2))
    wh[:, :2] = 0  # empty boxes never suppress nor get suppressed
    if center:
        boxes = np.concatenate([xy, wh], axis=2)
    else:
        y1, x1 = xy[..., 1] - wh[..., 1] / 2, xy[..., 0] - wh[..., 0] / 2
        y2, x2 = y1 + wh[..., 1], x1 + wh[..., 0]
        boxes = np.stack([y1, x1, y2, x2], axis=2)
        boxes[:, ::3] = boxes[:, ::3][..., [2, 3, 0, 1]]  # corners in either order
    return boxes.astype(F32)


def nms_cases(c, bin_dir, work):
    rng = np.random.default_rng(11)
    batches, classes, count = 2, 3, 40
    for center in (0, 1):
        boxes = clustered_boxes(rng, batches, count, center)
        scores = rng.random((batches, classes, count)).astype(F32)
        scores[0, 0, 5] = scores[0, 0, 6]  # a tie: the lower index first
        name = f"nms_center{center}"
        inputs = {"boxes": boxes, "scores": scores, "limit": np.array([5], np.int64),
                  "iou": np.array([0.4], F32), "score": np.array([0.2], F32)}
        node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit", "iou", "score"],
                                ["selected"], center_point_box=center)
        compiled = e2e.compile_node(c, bin_dir, work, name, node, inputs,
                                    [("selected", TensorProto.INT64, [None, 3])], 11)
        if not compiled:
            continue
        # The same module with other run-time limits and thresholds.
        for tag, limit, iou, score in (("a", 5, 0.4, 0.2), ("b", 100, 0.7, 0.0),
                                       ("c", 3, 0.0, 0.9), ("d", 0, 0.5, 0.1),
                                       ("e", 40, 1.0, -1.0)):
            run_inputs = dict(inputs, limit=np.array([limit], np.int64),
                              iou=np.array([iou], F32), score=np.array([score], F32))
            got, ort = run(bin_dir, work, compiled, run_inputs, "selected", f"{name}_{tag}")
            want = nms_reference(boxes, scores, limit, iou, score, center)
            c.check(got.shape == want.shape and np.array_equal(got, want) and
                    (ort is None or np.array_equal(ort, want)),
                    f"{name}: limit {limit}, iou {iou}, score > {score}: {len(got)} rows "
                    f"= numpy ({len(want)})" + ("" if ort is None else " = ONNX Runtime"))
    # Without the optional thresholds: every box a candidate, overlap > 0.
    boxes = clustered_boxes(rng, 1, 30, 0)
    scores = rng.random((1, 2, 30)).astype(F32)
    inputs = {"boxes": boxes, "scores": scores, "limit": np.array([30], np.int64)}
    node = helper.make_node("NonMaxSuppression", ["boxes", "scores", "limit"], ["selected"])
    compiled = e2e.compile_node(c, bin_dir, work, "nms_no_thresholds", node, inputs,
                                [("selected", TensorProto.INT64, [None, 3])], 11)
    if compiled:
        got, ort = run(bin_dir, work, compiled, inputs, "selected", "nms_no_thresholds")
        want = nms_reference(boxes, scores, 30, 0.0, None, 0)
        c.check(got.shape == want.shape and np.array_equal(got, want) and
                (ort is None or np.array_equal(ort, want)),
                f"nms without thresholds: {len(got)} rows = numpy ({len(want)})"
                + ("" if ort is None else " = ONNX Runtime"))


def roi_cases(c, bin_dir, work):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 10, 12)).astype(F32)
    rois = np.array([[1, 1, 6, 7], [0.5, 2.2, 11.5, 9.8], [-3, -2, 4, 3], [8, 6, 15, 14],
                     [2.3, 4.1, 2.9, 4.6], [0, 0, 24, 20]], F32)
    batch_indices = np.array([0, 1, 1, 0, 1, 0], np.int64)
    cases = [("roi_avg_half_pixel_s2", dict(mode="avg", sampling_ratio=2, output_height=3,
                                             output_width=4, spatial_scale=1.0), True),
             ("roi_avg_output_half_pixel_adaptive", dict(mode="avg", sampling_ratio=0,
                                                         output_height=2, output_width=3,
                                                         spatial_scale=1.0), False),
             ("roi_max_adaptive", dict(mode="max", sampling_ratio=0, output_height=3,
                                       output_width=2, spatial_scale=1.0), True),
             ("roi_avg_scale_half", dict(mode="avg", sampling_ratio=3, output_height=2,
                                         output_width=2, spatial_scale=0.5), True)]
    # Max mode over an image of negative values: the first sample starts the
    # maximum (starting from 0 would give 0 everywhere).
    negative = -np.abs(x) - 1
    cases.append(("roi_max_negative", dict(mode="max", sampling_ratio=2, output_height=2,
                                           output_width=2, spatial_scale=1.0), True))
    for name, attrs, half_pixel in cases:
        image = negative if name == "roi_max_negative" else x
        node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"],
                                coordinate_transformation_mode="half_pixel" if half_pixel
                                else "output_half_pixel", **attrs)
        inputs = {"x": image, "rois": rois, "batch": batch_indices}
        shape = [len(rois), 3, attrs["output_height"], attrs["output_width"]]
        compiled = e2e.compile_node(c, bin_dir, work, name, node, inputs,
                                    [("y", TensorProto.FLOAT, shape)], 16)
        if not compiled:
            continue
        got, ort = run(bin_dir, work, compiled, inputs, "y", name)
        want = roi_align_reference(image, rois, batch_indices, attrs["output_height"],
                                   attrs["output_width"], attrs["sampling_ratio"],
                                   attrs["spatial_scale"], attrs["mode"], half_pixel)
        err = float(np.max(np.abs(got - want)))
        ort_err = None if ort is None else float(np.max(np.abs(ort - want)))
        c.check(got.shape == want.shape and err < 1e-5 and (ort_err is None or ort_err < 1e-5),
                f"{name}: max |hasten - numpy| = {err:.1e}"
                + ("" if ort_err is None else f", |ONNX Runtime - numpy| = {ort_err:.1e}"))


def hostile_rois(c, bin_dir, work):
    """Batch indices outside X read the nearest batch (ONNX Runtime refuses
    them; a compiled model cannot, and must not read outside X), and a
    region a billion pixels wide samples a capped grid instead of hanging."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 2, 6, 6)).astype(F32)
    rois = np.array([[1, 1, 4, 4], [0, 0, 5, 5], [0, 0, 1e9, 3]], F32)
    batch = np.array([-4, 9, 1], np.int64)
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], output_height=2,
                            output_width=2, sampling_ratio=0)
    inputs = {"x": x, "rois": rois, "batch": batch}
    compiled = e2e.compile_node(c, bin_dir, work, "roi_hostile", node, inputs,
                                [("y", TensorProto.FLOAT, [3, 2, 2, 2])], 16)
    if not compiled:
        return
    out = e2e.run_module(bin_dir, compiled[1], inputs, work, "roi_hostile")
    got = np.load(os.path.join(out, "y.npy"))
    want = roi_align_reference(x, rois[:2], np.clip(batch[:2], 0, 1), 2, 2, 0, 1.0, "avg", True)
    err = float(np.max(np.abs(got[:2] - want)))
    c.check(err < 1e-5 and np.all(np.isfinite(got)),
            f"out-of-range batch indices read the nearest batch ({err:.1e}); a 1e9-wide region "
            f"finishes with finite values")


def refusals(c, bin_dir, work):
    boxes, scores = np.zeros((1, 4, 4), F32), np.zeros((1, 1, 4), F32)
    cases = [
        ("nms_center2", helper.make_node("NonMaxSuppression", ["b", "s"], ["y"], name="nms7",
                                         center_point_box=2),
         {"b": boxes, "s": scores}, "nms7", "center_point_box must be 0 or 1",
         (TensorProto.INT64, [None, 3])),
        ("nms_mismatch", helper.make_node("NonMaxSuppression", ["b", "s"], ["y"], name="nms8"),
         {"b": boxes, "s": np.zeros((1, 1, 5), F32)}, "nms8", "expects static f32 boxes",
         (TensorProto.INT64, [None, 3])),
        ("roi_mode", helper.make_node("RoiAlign", ["x", "r", "i"], ["y"], name="roi9",
                                      mode="median"),
         {"x": np.zeros((1, 1, 4, 4), F32), "r": np.zeros((2, 4), F32),
          "i": np.zeros(2, np.int64)}, "roi9", "mode must be 'avg' or 'max'",
         (TensorProto.FLOAT, [2, 1, 1, 1])),
    ]
    for name, node, inputs, node_name, message, (out_type, out_shape) in cases:
        status, stderr = e2e.compile_refused(bin_dir, work, name, node, inputs,
                                             [("y", out_type, out_shape)], 16)
        c.check(status == 1 and node_name in stderr and message in stderr,
                f"{name} is refused naming the node: {stderr[-160:]}")


def main():
    bin_dir = sys.argv[1]
    c = e2e.Checks()
    with tempfile.TemporaryDirectory(prefix="hasten-detection-") as work:
        nms_cases(c, bin_dir, work)
        roi_cases(c, bin_dir, work)
        hostile_rois(c, bin_dir, work)
        refusals(c, bin_dir, work)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
