"""What enrollments can answer with besides success."""

from __future__ import annotations

from coursehub.core.errors import Conflict, NotFound


class EnrollmentNotFound(NotFound):
    code = "enrollment_not_found"
    title = "No such enrollment"


class AlreadyEnrolled(Conflict):
    code = "already_enrolled"
    title = "The user is already enrolled in the course"


class EnrollmentNotActive(Conflict):
    code = "enrollment_not_active"
    title = "The enrollment is already revoked"
