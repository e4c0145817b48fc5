"""The one exception type for user mistakes: the CLI prints it as a single line, never a traceback."""


class CvcourseError(ValueError):
    """A mistake the user can fix (a wrong name, a missing file); its message says how."""


def unknown_choice(kind: str, name: str, valid) -> CvcourseError:
    """Build the error for a name that is not one of ``valid``, listing the valid ones."""
    return CvcourseError(f"unknown {kind} {name!r}; choose one of: {', '.join(sorted(valid))}")
