"""The plain types, the ports (what the chat logic needs of a store and of a model) and
every error type that crosses a package boundary. Imports nothing of the other packages."""
