"""A file-drop connector built on the connector SDK: Send writes files, Listen takes them."""

__version__ = "0.1.0"
