import pytest

from engine import prompts
from engine.prompt_ids import (
    ReplyPrompter,
    analyst_frame,
    chatml,
    keep_head_and_tail,
    parse_generated_label,
)
from engine.runner import GenerationParams, ReplyRequest
from engine.types import Turn


def words(text: str) -> list[int]:
    """A toy tokenizer: one id per character, so cuts and prefixes are easy to see."""
    return [ord(ch) for ch in text]


def unwords(ids: list[int]) -> str:
    return "".join(chr(i) for i in ids)


def test_chatml_renders_qwen_turns() -> None:
    # Checked against the packaged model's own template in test_llama_cpp_runner.
    messages = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "今天好累"}]
    assert chatml(messages, False) == (
        "<|im_start|>system\nbe kind<|im_end|>\n<|im_start|>user\n今天好累<|im_end|>\n"
    )
    assert chatml(messages, True) == chatml(messages, False) + "<|im_start|>assistant\n"


def test_keep_head_and_tail() -> None:
    ids = list(range(100))
    assert keep_head_and_tail(ids, 200) == ids
    assert keep_head_and_tail(ids, 10) == [0, 1, 2, 3, 4, 95, 96, 97, 98, 99]
    assert keep_head_and_tail(ids, 5) == [0, 1, 97, 98, 99]


def test_the_analyst_frame_surrounds_the_user_text() -> None:
    head, tail = analyst_frame(chatml, words)
    whole = unwords(head) + "USER TEXT" + unwords(tail)
    assert whole.startswith(f"<|im_start|>system\n{prompts.ANALYST_SYSTEM}<|im_end|>")
    assert f"{prompts.ANALYST_USER_HEAD}USER TEXT{prompts.ANALYST_USER_TAIL}" in whole
    assert whole.endswith("<|im_start|>assistant\n")


def reply_request(text: str, history: tuple[Turn, ...] = ()) -> ReplyRequest:
    examples = (Turn("user", "example q"), Turn("assistant", "example a"))
    return ReplyRequest("persona", history, text, GenerationParams(), examples)


def test_the_reply_prompt_opening_covers_system_and_examples() -> None:
    prompter = ReplyPrompter(chatml, words, unwords, input_max_tokens=100,
                             history_max_tokens=100)  # fmt: skip
    prompt = prompter.build(reply_request("hello", (Turn("user", "earlier"),)))
    text = unwords(prompt.ids)
    opening = unwords(prompt.ids[: prompt.opening])
    assert opening == chatml(
        [{"role": "system", "content": "persona"}, {"role": "user", "content": "example q"},
         {"role": "assistant", "content": "example a"}], False,
    )  # fmt: skip
    assert text.startswith(opening)
    assert text.endswith("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n")
    assert "earlier" in text[len(opening) :]


def test_the_reply_prompt_cuts_long_input_and_drops_old_history() -> None:
    prompter = ReplyPrompter(chatml, words, unwords, input_max_tokens=10,
                             history_max_tokens=20)  # fmt: skip
    history = (Turn("user", "old-old-old"), Turn("assistant", "old answer"),
               Turn("user", "new"), Turn("assistant", "yes"))  # fmt: skip
    messages = prompter.messages(reply_request("abcdefghijKLMNOPQRSTUVWXYZ", history))
    contents = [message["content"] for message in messages]
    assert contents[-1] == "abcdeVWXYZ"
    assert contents[3:5] == ["new", "yes"]  # 8 + 8 of 20: the older pair does not fit
    assert "old-old-old" not in contents


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        ("正面", "positive"),
        ("负面", "negative"),
        ("正面。", "positive"),
        ("Positive.", "positive"),
        ("NEGATIVE", "negative"),
        (" 情感：负面\n", "negative"),
        ("正面还是负面", None),
        ("positive or negative", None),
        ("不确定", None),
        ("", None),
    ],
)
def test_parse_generated_label(answer: str, label: str | None) -> None:
    assert parse_generated_label(answer) == label
