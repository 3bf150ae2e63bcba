"""CourseHub: the backend of an online-course store."""

__version__ = "0.1.0"
