"""Domain errors of the engine. They subclass ValueError so every caller (CLI, API, worker) can turn
them into a message naming what was wrong without knowing each kind."""


class EngineError(ValueError):
    """Base class of every error the engine raises on purpose."""


class DataError(EngineError):
    """A data set is missing or malformed; the message names the path and the expected layout."""


class ModelError(EngineError):
    """Unknown model name, bad input shape, or a weights file that does not fit."""


class PruningError(EngineError):
    """A pruning target or plan that cannot be met."""


class QuantisationError(EngineError):
    """Export or quantisation of a model failed."""
