"""Each exercise's starter as its lesson ships it: ``exKEY.py`` (course/README.md)."""
