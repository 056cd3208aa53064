//! STUB: filled by the harness work.
