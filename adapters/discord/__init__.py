"""Discord via discord.py. The config module imports no platform library."""
