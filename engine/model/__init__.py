"""The model runtime: one worker thread owns a blocking runner (a backend plugin) and serves
labels and streamed replies behind an async facade. Knows nothing of chats: only `core`."""
