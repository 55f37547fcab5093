"""The load harness (``make bench``): hot paths, overload and references in one run."""
