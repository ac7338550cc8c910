"""Apps that the real-process tests run under ``flask`` and ``gunicorn``."""
