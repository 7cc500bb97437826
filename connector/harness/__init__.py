"""The runtime harness: runs any installed connector locally, as an integration runtime would.

It finds connectors only through the SDK's entry points; it never imports a connector.
The Python API is :class:`connector.harness.runtime.Runtime`.
"""
