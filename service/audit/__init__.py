"""The audit log: who did what to which key, one row per admin action."""
