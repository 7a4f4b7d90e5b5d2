"""Errors raised by the model layer; the service maps them onto its own error vocabulary."""


class InputTooLong(ValueError):
    """The response (with one marker per segment) does not fit the model's token limit."""

    def __init__(self, field: str, needed: int, limit: int):
        self.field, self.needed, self.limit = field, needed, limit
        super().__init__(f"{field} needs {needed} tokens with its segment markers; the model's limit is {limit}")


class ConfigError(ValueError):
    """A feedback-type configuration that cannot be used (names the offending key)."""
