"""Lambda-shaped event handlers: parse the event, call one service, report per-record failures."""
