"""Tools run from the checkout, not shipped: the install and container helpers (shell), and
`scripts.fitting`, which writes the label files the bot ships (engine/model/label_heads/)."""
