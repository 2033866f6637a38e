"""In-process stand-ins for the chat platforms' HTTP APIs (the tests run without internet)."""
