"""Owner-wide rate limits: one owner's keys share them, on top of each key's own."""
