"""The one version of both programs; pyproject.toml reads it from here (setuptools ``attr:``)."""

__version__ = "0.1.0"
