"""The one exception type of the model toolkit."""

from __future__ import annotations


class ModelError(ValueError):
    """A model the toolkit cannot read, split or run.

    Raised for corrupt or truncated bytes, files that are not TFLite models, graphs with several
    subgraphs, custom or unsupported operators (the message names the node index and the op), and
    runtime failures to load or allocate a model.
    """
