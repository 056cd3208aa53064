//! Test support for kiln.
