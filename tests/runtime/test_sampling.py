import numpy as np
import pytest

from core.types import GenerationParams
from runtime.sampling import sample_next_token


def test_top_k_one_is_argmax() -> None:
    rng = np.random.default_rng(0)
    params = GenerationParams(temperature=1.5, top_k=1, top_p=1.0, repetition_penalty=1.0)
    for _ in range(20):
        logits = rng.standard_normal(50).astype(np.float32)
        expected = int(np.argmax(logits))
        assert sample_next_token(logits.copy(), [], params, rng) == expected


def test_top_p_never_picks_the_tail() -> None:
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05], dtype=np.float32))
    params = GenerationParams(temperature=1.0, top_k=0, top_p=0.6, repetition_penalty=1.0)
    picks = {sample_next_token(logits.copy(), [], params, rng) for _ in range(300)}
    assert picks == {0, 1}


def test_draws_from_the_top_k_then_the_top_p_of_those() -> None:
    rng = np.random.default_rng(0)
    logits = np.log(np.array([0.05, 0.4, 0.01, 0.3, 0.2, 0.04], dtype=np.float32))

    def picks(top_k: int, top_p: float, draws: int = 2000) -> list[int]:
        params = GenerationParams(temperature=1.0, top_k=top_k, top_p=top_p,
                                  repetition_penalty=1.0)  # fmt: skip
        return [sample_next_token(logits.copy(), [], params, rng) for _ in range(draws)]

    assert set(picks(3, 0.5, 300)) == {1, 3}  # 0.4 alone is under 0.5: the next one crosses it
    assert set(picks(2, 0.95, 300)) == {1, 3}  # top_k cuts before top_p would
    drawn = picks(3, 1.0)
    assert set(drawn) == {1, 3, 4}
    # Renormalised over the three kept: 0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9.
    for token, p in ((1, 4 / 9), (3, 3 / 9), (4, 2 / 9)):
        assert drawn.count(token) / len(drawn) == pytest.approx(p, abs=0.05)


def test_a_low_temperature_sharpens_the_choice() -> None:
    rng = np.random.default_rng(1)
    logits = np.array([1.0, 0.8, 0.0], dtype=np.float32)
    params = GenerationParams(temperature=0.05, top_k=0, top_p=1.0, repetition_penalty=1.0)
    drawn = [sample_next_token(logits.copy(), [], params, rng) for _ in range(200)]
    assert drawn.count(0) > 190  # e^(0.2/0.05) ≈ 55 : 1


def test_the_same_seed_gives_the_same_tokens() -> None:
    logits = np.log(np.array([0.3, 0.3, 0.2, 0.2], dtype=np.float32))
    params = GenerationParams(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)

    def run(seed: int) -> list[int]:
        rng = np.random.default_rng(seed)
        return [sample_next_token(logits.copy(), [], params, rng) for _ in range(30)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_repetition_penalty_lowers_a_repeated_token() -> None:
    greedy = GenerationParams(temperature=0.0, repetition_penalty=2.0)
    positive = np.array([0.0, 2.0, 1.5, -3.0], dtype=np.float32)
    assert sample_next_token(positive.copy(), [], greedy) == 1
    assert sample_next_token(positive.copy(), [1], greedy) == 2  # 2.0 / 2 < 1.5

    negative = np.array([-1.0, -1.5, -9.0], dtype=np.float32)
    assert sample_next_token(negative.copy(), [], greedy) == 0
    assert sample_next_token(negative.copy(), [0, 0], greedy) == 1  # -1.0 * 2 < -1.5

    # Only the seen tokens are penalised.
    scores = np.array([3.0, -2.0, 1.0, 0.5], dtype=np.float32)
    sample_next_token(scores, [0, 1], greedy)  # penalises in place
    assert scores.tolist() == [1.5, -4.0, 1.0, 0.5]
