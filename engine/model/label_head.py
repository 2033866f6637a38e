"""How the model's two label-word scores become a calibrated, possibly neutral label.

The analyst frame asks for one of two label words; the raw readout is the score difference
d = s(正面) − s(负面). Used as it is, d ranks well but leans negative (positive recall
0.62–0.67 against 0.89–0.96 for negative on benchmarks.data.datasets' evaluation rows) and its
probabilities are off (ECE 0.07–0.13). The shipped head corrects both per language:
- p_positive = σ(scale·d + bias), the Platt scaling fitted on training rows only
  (`python -m scripts.fitting.label_fit --write`); the eval rows are never fitted on;
- "nothing felt" (greetings, questions, plain facts: shown as neutral, keeping the side the
  scores favour) is a linear readout of the label position's final hidden state h, fitted
  on benchmarks.accuracy.neutral's DEV messages against the training rows. A local backend has h (or
  the whole logits row W·h, where the same readout is a vocabulary-sized vector u = W⁺ᵀv, so it
  costs one dot product); `NothingFelt` holds both forms.
- a backend with only the two scores (a remote serving engine) falls back to a band of
  p_positive, (neutral_low, neutral_high), fitted on the same rows; it catches far fewer.
The calibration reads only the two scores (logits or logprobs: their difference is the same),
so every backend applies it alike.

Heads are fitted per model: one model's scores and hidden states mean nothing to another's
head (the 0.5B's head on the 1.5B showed 24% of real reviews as neutral and nearly every
confidence as 1.00). `label_heads/<model>.json` (+ `<model>.felt.npz`) records the model it was
fitted for (its GGUF's name and SHA-256, hidden size and vocabulary size), and `head_for`
gives a backend the head of ITS model only. A model without a fitted head, or whose head
records another file or shape, gets UNCALIBRATED (logged once, at WARNING): the raw score
difference at a fixed temperature, nothing shown as neutral.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.language import Language, detect_language
from engine.types import Sentiment

log = logging.getLogger(__name__)

HEADS_DIR = Path(__file__).with_name("label_heads")  # <model>.json and <model>.felt.npz
# The fallback's temperature: the raw difference d of the two scores is divided by
# FALLBACK_TEMPERATURE before the sigmoid (no bias: a tie stays 50/50).
FALLBACK_TEMPERATURE = 4.0


@dataclass(frozen=True)
class ModelIdentity:
    """Which model a head belongs to. Empty or zero fields are unknown and not compared."""

    name: str  # the GGUF's stem ("Qwen2.5-Coder-1.5B-Instruct-Q4_K_M"), or a folder / hub id
    sha256: str = ""  # of the GGUF file
    hidden_size: int = 0  # the width of the label position's hidden state
    vocab_size: int = 0  # the length of a logits row

    def mismatch(self, fitted: ModelIdentity) -> str | None:
        """Why a head fitted for `fitted` must not be used for this model; None if it may."""
        if fitted.name != self.name:
            return f"it was fitted for {fitted.name!r}"
        for what in ("sha256", "hidden_size", "vocab_size"):
            mine, theirs = getattr(self, what), getattr(fitted, what)
            if mine and theirs and mine != theirs:
                return f"it was fitted for a model with {what} {theirs}, this one has {mine}"
        return None


def file_stem(name: str) -> str:
    """A model name as a file name (a hub id's slash and the like become "--")."""
    return re.sub(r"[^A-Za-z0-9._-]+", "--", name).strip("-.") or "model"


@dataclass(frozen=True)
class NothingFelt:
    """score = v·h (or u·logits) − threshold; above zero, nothing is felt."""

    hidden_weights: np.ndarray  # v, (n_embd,)
    logit_weights: np.ndarray  # u = W⁺ᵀv, (vocab,): the same readout on the logits row
    threshold: float

    def fits(self, model: ModelIdentity) -> str | None:
        """Why this readout cannot read `model`'s states (unknown sizes are not compared)."""
        for what, size, weights in (
            ("hidden size", model.hidden_size, self.hidden_weights),
            ("vocabulary", model.vocab_size, self.logit_weights),
        ):
            if size and weights.shape != (size,):
                return f"its readout reads a {what} of {weights.shape[0]}, the model's is {size}"
        return None

    def __call__(self, row: Any) -> bool | None:
        """Whether nothing is felt, from a hidden state or a logits row; None when `row` is
        neither (another model's)."""
        values = np.asarray(row, dtype=np.float32)
        for weights in (self.hidden_weights, self.logit_weights):
            if values.shape == weights.shape:
                return float(values @ weights) > self.threshold
        return None

    @classmethod
    def load(cls, path: Path) -> NothingFelt | None:
        if not path.is_file():
            return None
        with np.load(path) as data:
            hidden = data["hidden_weights"].astype(np.float32)
            logits = data["logit_weights"].astype(np.float32)
            return cls(hidden, logits, float(data["threshold"]))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, hidden_weights=self.hidden_weights.astype(np.float32),
                            logit_weights=self.logit_weights.astype(np.float16),
                            threshold=np.float64(self.threshold))  # fmt: skip


@dataclass(frozen=True)
class Calibration:
    scale: float = 1.0
    bias: float = 0.0


@dataclass(frozen=True)
class LabelHead:
    calibration: dict[Language, Calibration] = field(default_factory=dict)
    neutral_low: float = 0.5  # an empty band: nothing is shown as neutral
    neutral_high: float = 0.5
    # The readout says nothing is felt, but a confidence this high says otherwise ("Yay!").
    neutral_max_confidence: float = 1.0
    fitted_on: str = ""  # what the numbers were fitted on, for the record
    nothing_felt: NothingFelt | None = field(default=None, compare=False, repr=False)
    model: ModelIdentity | None = None  # the model it was fitted for

    def p_positive(self, positive: float, negative: float, language: Language) -> float:
        fit = self.calibration.get(language, Calibration())
        x = fit.scale * (positive - negative) + fit.bias
        return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0

    def sentiment(
        self, positive: float, negative: float, text: str, state: Any = None
    ) -> Sentiment:
        """The label of `text` from the scores of the two label words and, when the backend
        has it, the label position's hidden state or whole logits row (`state`)."""
        p_positive = self.p_positive(positive, negative, detect_language(text))
        if self.nothing_felt is None or state is None:  # a remote engine: no state to read
            quiet = self.neutral_low < p_positive < self.neutral_high
            return Sentiment.from_p_positive(p_positive, quiet)
        felt = self.nothing_felt(state)
        if felt is None:
            # Not this head's model's state: never read, and nothing shown as neutral (the
            # band was fitted as a stand-in for the readout, on the same model's states).
            _warn_once(
                f"the label head of {self._model_name()} got a state of shape "
                f"{np.shape(state)} it cannot read: nothing is shown as neutral"
            )
            return Sentiment.from_p_positive(p_positive, False)
        quiet = felt and max(p_positive, 1.0 - p_positive) < self.neutral_max_confidence
        return Sentiment.from_p_positive(p_positive, quiet)

    def _model_name(self) -> str:
        return repr(self.model.name) if self.model else "an unnamed model"

    @classmethod
    def load(cls, path: Path, felt_path: Path | None = None) -> LabelHead:
        """The head in `path` (its readout in `felt_path`, by default beside it as
        <stem>.felt.npz); the identity (the raw readout, no neutral) when it is absent."""
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        calibration = {language: Calibration(**fit)
                       for language, fit in raw.pop("calibration").items()}  # fmt: skip
        model = raw.pop("model", None)
        felt = NothingFelt.load(felt_path or felt_file(path))
        return cls(calibration=calibration, nothing_felt=felt,
                   model=ModelIdentity(**model) if model else None, **raw)  # fmt: skip

    def save(self, path: Path, felt_path: Path | None = None) -> None:
        fields = {key: value for key, value in asdict(self).items() if key != "nothing_felt"}
        fields = {"model": fields.pop("model"), **fields}  # which model first, for a reader
        path.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        if self.nothing_felt is not None:
            self.nothing_felt.save(felt_path or felt_file(path))


UNCALIBRATED = LabelHead(
    {language: Calibration(1.0 / FALLBACK_TEMPERATURE, 0.0) for language in ("en", "zh")},
    fitted_on=f"nothing: no head was fitted for this model; raw score difference / "
    f"{FALLBACK_TEMPERATURE:g}, nothing shown as neutral",
)


def felt_file(head_path: Path) -> Path:
    return head_path.with_name(f"{head_path.stem}.felt.npz")


def head_file(name: str, folder: Path = HEADS_DIR) -> Path:
    """Where the head of the model called `name` is kept."""
    return folder / f"{file_stem(name)}.json"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


@functools.cache
def head_for(model: ModelIdentity, folder: Path = HEADS_DIR) -> LabelHead:
    """The head fitted for `model`, or UNCALIBRATED (said once, at WARNING) when none was,
    or when the one kept under its name records another model or cannot read its states."""
    path = head_file(model.name, folder)
    why = "no head was fitted for it"
    if path.is_file():
        head = LabelHead.load(path)
        fitted = head.model or ModelIdentity("")
        readout = head.nothing_felt
        why = (model.mismatch(fitted) or (readout and (readout.fits(model) or readout.fits(fitted)))
               or "")  # fmt: skip
        if not why:
            log.info("label head for %s: %s (%s)", model.name, path.name, head.fitted_on)
            return head
        why = f"{path.name} does not fit it: {why}"
    _warn_once(
        f"labels of {model.name!r} are uncalibrated: {why}. Each label is the raw score "
        f"difference at temperature {FALLBACK_TEMPERATURE:g} (confidences are not calibrated) "
        "and nothing is shown as neutral; fit a head with "
        "`python -m scripts.fitting.label_features` "
        'and `python -m scripts.fitting.label_fit --write` (README "Sentiment accuracy")'
    )
    return UNCALIBRATED


def gguf_identity(path: Path, hidden_size: int = 0, vocab_size: int = 0) -> ModelIdentity:
    """A GGUF file's identity: its stem, and its SHA-256 when a head is kept under that name
    (read from the `.sha256` stamp the packaged join writes once it verified the file, if the
    stamp is newer than the file; hashed otherwise, once: a second or two)."""
    sha256 = ""
    if head_file(path.stem).is_file() and path.is_file():
        sha256 = _sha256(path)
    return ModelIdentity(path.stem, sha256, hidden_size, vocab_size)


@functools.cache
def _sha256(path: Path) -> str:
    stamp = path.with_name(path.name + ".sha256")
    if stamp.is_file() and stamp.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        recorded = stamp.read_text(encoding="ascii", errors="replace").strip()
        if re.fullmatch(r"[0-9a-f]{64}", recorded):
            return recorded
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def model_identity(
    spec: str, cache_dir: Path, hidden_size: int = 0, vocab_size: int = 0
) -> ModelIdentity:
    """The identity of the model MODEL=`spec` names: a packaged model or a `.gguf` path by its
    file; a transformers folder converted from a GGUF by that GGUF's name (its marker file);
    any other folder by its name, a hub id as it is."""
    from engine.model.model_files import names_a_gguf, resolve_gguf

    if names_a_gguf(spec):
        path, _description = resolve_gguf(spec, cache_dir)
        return gguf_identity(path, hidden_size, vocab_size)
    folder = Path(spec.strip()).expanduser()
    if folder.is_dir():
        marker = folder / "converted.ok"
        if marker.is_file():
            name = Path(marker.read_text(encoding="utf-8").strip()).stem
            return ModelIdentity(name or folder.name, "", hidden_size, vocab_size)
        return ModelIdentity(folder.name, "", hidden_size, vocab_size)
    return ModelIdentity(spec.strip(), "", hidden_size, vocab_size)
