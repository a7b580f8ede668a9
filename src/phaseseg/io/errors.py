"""The one user-error class: a problem with the user's input, shown as one line."""


class PhasesegInputError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""
