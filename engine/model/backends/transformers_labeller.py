"""The fast label pass: the analyst prompt's fixed head is computed once and reused.

Every label prompt is `head + user text + tail`, and the head (system role plus the opening
marker) is the same for every message. Its KV cache is computed once at start-up, so a label
only runs the user's tokens and the short tail, for all waiting messages in one batch. And
since only two next-token scores matter, the 151k-row LM head is replaced by its two rows.
The result equals the plain full-prompt pass up to float rounding (tests check this).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class PrefixLabeller:
    def __init__(
        self, model: Any, head_ids: list[int], tail_ids: list[int], label_ids: tuple[int, int]
    ) -> None:
        self.model = model
        self.tail_ids = tail_ids
        self.head_length = len(head_ids)
        weight = model.get_output_embeddings().weight
        self.label_rows = weight[list(label_ids)].detach().clone()  # (2, hidden)
        self.label_bias = None
        bias = getattr(model.get_output_embeddings(), "bias", None)
        if bias is not None:
            self.label_bias = bias[list(label_ids)].detach().clone()
        with torch.inference_mode():
            out = model.model(input_ids=torch.tensor([head_ids]), use_cache=True)
        self.prefix = [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    @torch.inference_mode()
    def label_scores(self, user_ids: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, 2) scores of the two label words after each head + text + tail, and the
        (batch, hidden) final hidden states they were read from."""
        from transformers import DynamicCache

        rows = [ids + self.tail_ids for ids in user_ids]
        lengths = torch.tensor([len(row) for row in rows])
        width = int(lengths.max())
        batch = len(rows)
        # Right padding: real tokens never attend to the pads after them (causal), and every
        # row's real tokens keep the same positions as in an unpadded pass.
        input_ids = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, self.head_length + width), dtype=torch.long)
        mask[:, : self.head_length] = 1
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row)
            mask[index, self.head_length : self.head_length + len(row)] = 1
        cache = DynamicCache(
            ddp_cache_data=[
                (keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1))
                for keys, values in self.prefix
            ]
        )
        hidden = self.model.model(
            input_ids=input_ids, attention_mask=mask, past_key_values=cache, use_cache=True
        ).last_hidden_state
        last = hidden[torch.arange(batch), lengths - 1]  # (batch, hidden)
        scores = last.float() @ self.label_rows.float().T
        if self.label_bias is not None:
            scores = scores + self.label_bias.float()
        return scores, last.float()
