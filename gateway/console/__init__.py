"""The operator and auditor web console, served by the gateway under ``/console``."""

from gateway.console.routes import install_console

__all__ = ["install_console"]
