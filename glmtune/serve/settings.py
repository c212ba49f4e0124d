"""The server's defaults and its API-key variable, in a module that imports nothing (``--help`` needs no FastAPI)."""

API_KEY_ENV = "GLMTUNE_API_KEY"
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_MAX_BATCH = 16
DEFAULT_MAX_QUEUE = 256
DEFAULT_BATCH_WINDOW_MS = 10.0
