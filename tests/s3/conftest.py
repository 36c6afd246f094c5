"""Fixtures for the object-storage tests; the code lives in s3tools.py (a unique module
name, so test directories running in one pytest session never shadow each other)."""

from s3tools import rclone_s3  # noqa: F401
