"""Redis rate limiter: exact per-key limits shared by every process and host."""
