"""What the catalogue can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound


class CourseNotFound(NotFound):
    code = "course_not_found"
    title = "No such course"


class SlugTaken(Conflict):
    code = "slug_taken"
    title = "The slug is taken"


class CourseInUse(Conflict):
    code = "course_in_use"
    title = "The course has orders or enrollments"
