"""Each user's latest message, kept in memory for /mood why (engine/chat/why.py).

The bot stores no message text unless STORE_MESSAGE_TEXT=true, yet explaining a label needs
the text. So the chat service keeps the latest message of each user here, and only here:
never written to the database or a log, dropped after `keep` (WHY_KEEP), at most `max_users`
users (the least recently active go first), and gone with a restart or /forget.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.types import Sentiment, UserKey

WHY_KEEP = timedelta(minutes=30)
WHY_MAX_USERS = 1000


@dataclass(frozen=True)
class LastMessage:
    text: str
    sentiment: Sentiment
    at: datetime


class RecentMessages:
    def __init__(self, keep: timedelta = WHY_KEEP, max_users: int = WHY_MAX_USERS) -> None:
        self.keep = keep
        self._max_users = max_users
        self._by_user: OrderedDict[UserKey, LastMessage] = OrderedDict()

    def remember(self, user: UserKey, text: str, sentiment: Sentiment, at: datetime) -> None:
        self._by_user.pop(user, None)
        self._by_user[user] = LastMessage(text, sentiment, at)
        while len(self._by_user) > self._max_users:
            self._by_user.popitem(last=False)

    def latest(self, user: UserKey, now: datetime) -> LastMessage | None:
        found = self._by_user.get(user)
        if found is not None and now - found.at > self.keep:
            del self._by_user[user]
            return None
        return found

    def forget(self, user: UserKey) -> None:
        self._by_user.pop(user, None)

    def __len__(self) -> int:
        return len(self._by_user)
