"""benchmarks.accuracy.reading: the label's accuracy split by a reader's reading of each line."""

from __future__ import annotations

from benchmarks.accuracy.reading import split_accuracy


def test_rows_are_grouped_by_whether_the_reader_agrees_with_the_dataset() -> None:
    labels = ["positive", "positive", "negative", "negative"]
    rows = [{"source": "a/pos.txt", "line": n, "label": label} for n, label in enumerate(labels)]
    readings = {("pos.txt", 0): "positive", ("pos.txt", 1): "negative",
                ("pos.txt", 2): "unclear", ("pos.txt", 3): "negative"}  # fmt: skip
    predicted: list[str | None] = ["positive", "negative", "positive", "negative"]
    groups = {name: (n, accuracy) for name, n, accuracy in
              split_accuracy(rows, predicted, readings)}  # fmt: skip
    assert groups["all rows"] == (4, 0.5)
    assert groups["reader agrees with the label"] == (2, 1.0)
    assert groups["reader: unclear as a single line"] == (1, 0.0)
    assert groups["reader reads the other side"] == (1, 0.0)
