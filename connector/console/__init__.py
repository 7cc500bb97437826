"""The local web console (``<prog> console``): any installed connector's Connection and Options
tabs rendered in a browser from its schemas, and its operations run from there (check, Send,
Listen). It knows no connector by name: it finds them as the harness does, by entry point.
Needs the ``console`` extra (Starlette, uvicorn)."""
