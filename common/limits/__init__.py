"""Rate limits: the limiter, its shared counts in Redis, and the per-process fallback."""
