"""User-facing errors: each carries one readable line naming the problem."""


class RunnerError(Exception):
    """Base for errors shown to the user as a single line, without a traceback."""


class ConfigError(RunnerError):
    """A configuration value is invalid or two values contradict each other."""


class InputError(RunnerError):
    """The documents (or another input) cannot be used."""


class TrackingError(RunnerError):
    """The MLflow tracking server cannot be reached or used."""


class LLMError(RunnerError):
    """The language model backend failed in a way retries could not fix."""
