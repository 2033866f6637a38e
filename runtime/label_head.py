"""How the model's two label-word scores become a calibrated, possibly neutral label.

The analyst frame asks for one of two label words; the raw readout is the score difference
d = s(正面) − s(负面). Used as it is, d ranks well but leans negative (positive recall
0.62–0.67 against 0.89–0.96 for negative on bench.datasets' evaluation rows) and its
probabilities are off (ECE 0.07–0.13). The shipped head corrects both per language:
- p_positive = σ(scale·d + bias), the Platt scaling fitted on training rows only
  (`python -m bench.label_fit --write`); the eval rows are never fitted on;
- "nothing felt" (greetings, questions, plain facts: shown as neutral, keeping the side the
  scores favour) is a linear readout of the label position's final hidden state h, fitted
  on bench.neutral's DEV messages against the training rows. A local backend has h (or the
  whole logits row W·h, where the same readout is a vocabulary-sized vector u = W⁺ᵀv, so it
  costs one dot product); `NothingFelt` holds both forms.
- a backend with only the two scores (a remote serving engine) falls back to a band of
  p_positive, (neutral_low, neutral_high), fitted on the same rows; it catches far fewer.
The calibration reads only the two scores (logits or logprobs: their difference is the same),
so every backend applies it alike.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.language import Language, detect_language
from core.types import Sentiment

HEAD_FILE = Path(__file__).with_name("label_head.json")
FELT_FILE = Path(__file__).with_name("label_head_felt.npz")


@dataclass(frozen=True)
class NothingFelt:
    """score = v·h (or u·logits) − threshold; above zero, nothing is felt."""

    hidden_weights: np.ndarray  # v, (n_embd,)
    logit_weights: np.ndarray  # u = W⁺ᵀv, (vocab,): the same readout on the logits row
    threshold: float

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
        quiet = self.nothing_felt(state) if self.nothing_felt and state is not None else None
        if quiet is None:
            quiet = self.neutral_low < p_positive < self.neutral_high
        else:
            quiet = quiet and max(p_positive, 1.0 - p_positive) < self.neutral_max_confidence
        return Sentiment.from_p_positive(p_positive, quiet)

    @classmethod
    def load(cls, path: Path = HEAD_FILE, felt_path: Path = FELT_FILE) -> LabelHead:
        """The head in `path`; the identity (the raw readout, no neutral) when it is absent."""
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text(encoding="utf-8"))
        calibration = {language: Calibration(**fit)
                       for language, fit in raw.pop("calibration").items()}  # fmt: skip
        return cls(calibration=calibration, nothing_felt=NothingFelt.load(felt_path), **raw)

    def save(self, path: Path = HEAD_FILE, felt_path: Path = FELT_FILE) -> None:
        fields = {key: value for key, value in asdict(self).items() if key != "nothing_felt"}
        path.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        if self.nothing_felt is not None:
            self.nothing_felt.save(felt_path)
