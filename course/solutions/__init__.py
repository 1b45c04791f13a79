"""Each exercise's solution, for instructors: ``exKEY.py`` (course/README.md)."""
