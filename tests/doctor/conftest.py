"""The doctor tests' helpers live in doctortools.py (a unique module name, so test
directories running in one pytest session never shadow each other)."""

import doctortools  # noqa: F401  (puts this directory on sys.path for the helpers)
