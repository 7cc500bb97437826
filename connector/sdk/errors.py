"""One error hierarchy for connectors and runtimes.

Every message is meant for a person: one line saying what is wrong and what to do, never a
secret. The runtime maps the classes to exit codes (ConfigError 2, ConnectError 3).
"""


class ConnectorError(Exception):
    """Base of every error a connector or the SDK raises on purpose."""


class ConfigError(ConnectorError):
    """A connection or operation configuration, or an input, is not valid.

    ``problems`` holds one line per problem (``path: sentence``) so that all of them can be
    shown at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class ConnectError(ConnectorError):
    """The connector cannot reach or is not allowed into the endpoint."""


class PluginError(ConnectorError):
    """A connector plugin is missing, broken, or implements a hook that has no spec."""
