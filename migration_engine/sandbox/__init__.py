"""The sandbox: a simulator of eConnect's PSB, its identity server, the Peppol SML/SMP and
other providers, served over HTTP on loopback (``docs/sandbox.md``)."""

from migration_engine.sandbox.app import create_app
from migration_engine.sandbox.config import ECONNECT, ProviderConfig, SandboxConfig
from migration_engine.sandbox.model import SandboxModel
from migration_engine.sandbox.server import SandboxServer, serve

__all__ = [
    "ECONNECT",
    "ProviderConfig",
    "SandboxConfig",
    "SandboxModel",
    "SandboxServer",
    "create_app",
    "serve",
]
