//! The bake-time integrity manifest: written by `kiln seal`, verified at boot and watched after.
