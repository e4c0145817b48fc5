"""nbgrader settings for the course; `cvcourse release` and `cvcourse grade` read this file too."""

from pathlib import Path

here = Path(__file__).resolve().parent
c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

c.CourseDirectory.course_id = "cvcourse"
c.CourseDirectory.root = str(here)
# One assignment per notebook folder NN-slug: solutions/ is the source, course/ the learner release.
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "course"
# nbgrader's working state stays in one ignored folder.
c.CourseDirectory.submitted_directory = ".nbgrader/submitted"
c.CourseDirectory.autograded_directory = ".nbgrader/autograded"
c.CourseDirectory.feedback_directory = ".nbgrader/feedback"
c.CourseDirectory.db_url = f"sqlite:///{here / '.nbgrader' / 'gradebook.db'}"
c.Exchange.root = str(here / ".nbgrader" / "exchange")
# Per cell; the ci profile keeps each notebook under 60 s, so a cell past this limit is stuck.
c.Execute.timeout = 180
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
