"""The course's sources: lessons, exercise starters and solutions (course/README.md).

Not shipped with durable_lab; a package so that ``python -m course.solutions.ex02`` runs.
"""
