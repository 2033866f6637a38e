import dataclasses

import numpy as np
import pytest

from engine.model.sampling import DryPenalty, ReplySampler, sample_next_token
from engine.types import GenerationParams


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


def test_presence_and_frequency_penalties_count_the_replys_tokens() -> None:
    greedy = GenerationParams(temperature=0.0, repetition_penalty=1.0, presence_penalty=0.5,
                              frequency_penalty=0.25)  # fmt: skip
    scores = np.array([3.0, 2.0, 1.0, 0.0], dtype=np.float32)
    sample_next_token(scores, [0, 0, 0, 1], greedy)
    assert scores.tolist() == [3.0 - 0.5 - 0.75, 2.0 - 0.5 - 0.25, 1.0, 0.0]


DRY = GenerationParams(temperature=0.0, repetition_penalty=1.0, dry_multiplier=1.0,
                       dry_base=2.0, dry_allowed_length=2)  # fmt: skip


def dry_scores(sources: list[list[int]], generated: list[int], size: int = 10) -> np.ndarray:
    scores = np.zeros(size, dtype=np.float32)
    DryPenalty(sources, DRY.dry_multiplier, DRY.dry_base, DRY.dry_allowed_length)(scores, generated)
    return scores


def test_dry_penalises_the_token_that_would_continue_a_copied_run() -> None:
    source = [1, 2, 3, 4, 5]
    assert dry_scores([source], [7]).tolist() == [0.0] * 10  # shorter than the allowed run
    assert dry_scores([source], [7, 1]).tolist() == [0.0] * 10  # a run of 1: allowed
    # After 1, 2 (a run of 2) the source went on with 3: 1 * 2 ** (2 - 2) = 1.
    scores = dry_scores([source], [1, 2])
    assert scores[3] == -1.0
    assert np.count_nonzero(scores) == 1
    assert dry_scores([source], [9, 1, 2, 3, 4])[5] == -4.0  # a run of 4: 2 ** 2
    # The longest run wins for a token reachable several ways.
    assert dry_scores([[1, 2, 3], [8, 2, 3]], [8, 2])[3] == -1.0
    assert dry_scores([[1, 2, 3], [8, 2, 3]], [1, 8, 2])[3] == -1.0


def test_dry_never_crosses_from_one_source_into_the_next() -> None:
    scores = dry_scores([[1, 2], [3, 4]], [1, 2])
    assert scores.tolist() == [0.0] * 10  # 3 does not follow 1, 2 in any one source


def test_dry_sees_the_reply_repeating_itself() -> None:
    scores = dry_scores([], [5, 6, 7, 1, 5, 6])
    assert scores[7] == -1.0  # 5, 6 was followed by 7 earlier in the reply
    assert np.count_nonzero(scores) == 1


def test_the_reply_sampler_stops_a_greedy_copy_and_is_seeded() -> None:
    message = [4, 5, 6, 7, 8]
    logits = np.zeros(10, dtype=np.float32)

    def greedy_copy(sampler: ReplySampler) -> list[int]:
        out: list[int] = []
        for _ in range(5):
            row = logits.copy()
            row[message[len(out)] if len(out) < len(message) else 0] = 3.0  # wants to echo
            row[9] = 2.0  # the runner-up
            out.append(sampler(row, out))
        return out

    assert greedy_copy(ReplySampler(dataclasses.replace(DRY, dry_multiplier=0.0))) == message
    # After two copied tokens the third loses 1 (3 - 1 = 2 ties with 9: argmax keeps 6);
    # after three copied ones the fourth loses 2 and 9 wins; the run broken, 8 is free again.
    assert greedy_copy(ReplySampler(DRY, [message])) == [4, 5, 6, 9, 8]
    sampled = GenerationParams(seed=3)
    draws = [ReplySampler(sampled)(np.arange(10, dtype=np.float32), []) for _ in range(5)]
    assert len(set(draws)) == 1  # the same seed, the same first token
