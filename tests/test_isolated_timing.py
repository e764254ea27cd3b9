"""Timing engines each in a process of its own, rounds alternated (measure/isolated.py): what
`tvmopt demo` uses, so that two engines' spinning thread pools do not slow each other."""

from __future__ import annotations

import psutil
import pytest
import tvmopt
from tvmopt.measure.isolated import MeasureError, ProcessContender, isolated_medians


def test_each_engine_is_timed_in_its_own_process_and_the_processes_end(cnn_artifact, cnn_onnx):
    feeds = tvmopt.load(cnn_artifact).random_inputs()
    calls = []
    medians = isolated_medians(
        {"tvmopt": ProcessContender("artifact", str(cnn_artifact)),
         "onnxruntime": ProcessContender("onnxruntime", str(cnn_onnx), threads=1),
         "here": lambda: calls.append(1)},
        feeds, rounds=3, runs=5, warm_s=0.01)
    assert set(medians) == {"tvmopt", "onnxruntime", "here"}
    assert all(m > 0 for m in medians.values()), medians
    assert len(calls) >= 3 * 5 + 1  # the in-process contender ran its rounds here
    assert not psutil.Process().children(recursive=True)


def test_a_contender_that_cannot_load_is_named_and_leaves_no_process(cnn_artifact, cnn_onnx, tmp_path):
    feeds = tvmopt.load(cnn_artifact).random_inputs()
    with pytest.raises(MeasureError, match=r"tvmopt-tuned: .*no-such-artifact"):
        isolated_medians({"onnxruntime": ProcessContender("onnxruntime", str(cnn_onnx)),
                          "tvmopt-tuned": ProcessContender("artifact", str(tmp_path / "no-such-artifact"))},
                         feeds, rounds=1, runs=1)
    assert not psutil.Process().children(recursive=True)
