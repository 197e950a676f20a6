"""The operations console: `peppol-migrate serve`, web pages and the HTTP API (docs/console.md)."""
