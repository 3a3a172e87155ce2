"""The estimators' one deliberate error: bad or insufficient input (database, estimator
directory, device name, model file). The CLI prints it as one line and exits 2."""

from controller.errors import JoulefarmError


class EstimatorError(JoulefarmError):
    """An estimator cannot be fitted or used with what it was given."""
