"""Shared infrastructure for the cvcourse notebooks: runtime, data, models, training, plots, checks.

Nothing here implements a graded component: learners write those in the notebooks.
"""

from cvcourse.errors import CvcourseError

__all__ = ["CvcourseError", "__version__"]
__version__ = "0.1.0"
