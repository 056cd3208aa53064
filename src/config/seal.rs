//! `[seal]`: which paths the bake-time integrity manifest covers.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SealConfig {}
