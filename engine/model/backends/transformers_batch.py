"""Decode steps of several replies as ONE forward pass, one token per reply.

On a CPU a decode step is bound by reading the weights from memory, so a forward over eight
rows costs little more than over one: batching is where concurrent users' throughput comes
from. The replies have different lengths, so the batched KV cache is LEFT-padded to the
longest one: every row's newest token sits in the same last column, the pads are masked out,
and each row gets its own true position (rotary embeddings were applied to the cached keys
at their true positions, so the pads shift nothing).

The batched cache is kept between steps while the same replies decode together, and only
rebuilt when one joins or leaves: rebuilding copies every row's whole cache, which per token
would cost as much memory traffic as the cache itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values of (1, heads, len, dim)


class BatchRow(Protocol):
    """What the decoder needs of a reply; its KV is in `cache` or, while batched, here."""

    cache: Any  # its own DynamicCache, or None while its KV lives in the batch
    pending: torch.Tensor  # (1, 1): the token to feed next
    length: int  # tokens already in its KV cache = the position of `pending`
    done: bool


class BatchDecoder:
    def __init__(self, model: Any) -> None:
        self.model = model
        self.members: list[BatchRow] = []
        self._cache: Any = None  # DynamicCache of batch len(members), left-padded
        self._mask: torch.Tensor | None = None  # (batch, cached length): 1 = a real token

    def holds(self, row: BatchRow) -> bool:
        return any(member is row for member in self.members)

    @torch.inference_mode()
    def step(self, rows: Sequence[BatchRow]) -> torch.Tensor:
        """Feed each row its pending token; return the next-token logits, (len(rows), vocab).

        Each row's `length` grows by one. If the forward fails the batch is dropped, and with
        it the KV of every row in it: the caller must end those replies.
        """
        if not self._same_members(rows):
            self._regroup(rows)
        assert self._mask is not None
        batch = len(rows)
        mask = torch.cat([self._mask, self._mask.new_ones((batch, 1))], dim=1)
        try:
            logits = self.model(
                input_ids=torch.cat([row.pending for row in rows]),
                attention_mask=mask,
                position_ids=torch.tensor([[row.length] for row in rows]),
                past_key_values=self._cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        except BaseException:
            self.clear()
            raise
        self._mask = mask
        for row in rows:
            row.length += 1
        return logits

    def release(self, row: BatchRow) -> None:
        """Hand a member's KV back to its own cache, so it can step alone."""
        self._regroup([member for member in self.members if member is not row])

    def clear_if_idle(self) -> None:
        """Free the batched cache once every member has ended (nobody may step again soon)."""
        if all(member.done for member in self.members):
            self.clear()

    def clear(self) -> None:
        self.members, self._cache, self._mask = [], None, None

    # --- regrouping -------------------------------------------------------------------------

    def _same_members(self, rows: Sequence[BatchRow]) -> bool:
        return len(rows) == len(self.members) and all(
            row is member for row, member in zip(rows, self.members, strict=True)
        )

    def member_kv(self, index: int) -> KV:
        """Views of one member's real (unpadded) columns of the batched cache."""
        row = self.members[index]
        start = self._cache.layers[0].keys.shape[-2] - row.length
        return [
            (layer.keys[index : index + 1, :, start:], layer.values[index : index + 1, :, start:])
            for layer in self._cache.layers
        ]

    def _regroup(self, rows: Sequence[BatchRow]) -> None:
        from transformers import DynamicCache

        kv: dict[int, KV] = {}
        for index, member in enumerate(self.members):
            if member.done:
                continue
            kv[id(member)] = self.member_kv(index)
            if not any(row is member for row in rows):
                # Still decoding but not in this batch: it keeps its KV (a copy, so that the
                # big batched tensors can be freed).
                member.cache = DynamicCache(
                    ddp_cache_data=[(k.clone(), v.clone()) for k, v in kv[id(member)]]
                )
        for row in rows:
            if id(row) not in kv:
                kv[id(row)] = [(layer.keys, layer.values) for layer in row.cache.layers]
        self.clear()
        if not rows:
            return
        width = max(row.length for row in rows)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        layers: KV = []
        for layer in range(len(kv[id(rows[0])])):
            sample = kv[id(rows[0])][layer][0]
            shape = (len(rows), sample.shape[1], width, sample.shape[3])
            keys = sample.new_zeros(shape)
            values = sample.new_zeros(shape)
            for index, row in enumerate(rows):
                row_keys, row_values = kv[id(row)][layer]
                keys[index, :, width - row.length :] = row_keys[0]
                values[index, :, width - row.length :] = row_values[0]
            layers.append((keys, values))
        for index, row in enumerate(rows):
            mask[index, width - row.length :] = 1
            row.cache = None
        self.members = list(rows)
        self._cache = DynamicCache(ddp_cache_data=layers)
        self._mask = mask
