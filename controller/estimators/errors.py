"""The estimators' one deliberate error: bad or insufficient input (database, estimator
directory, device name, model file). The CLI prints it as one line and exits 2."""

from joulefarm.errors import InputError


class EstimatorError(InputError):
    """An estimator cannot be fitted or used with what it was given."""
