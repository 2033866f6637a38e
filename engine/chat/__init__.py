"""The chat logic: the message service, the commands, prompts, mood maths, the chart and
every text users read. Knows no platform SDK and no model runtime: only `core`."""
