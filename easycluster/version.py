"""The one version string: the package metadata (``pyproject.toml`` reads it from here),
``easycluster --version`` and the server's hello reply all say this."""

VERSION = "1.0.0.dev0"
