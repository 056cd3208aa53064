//! Instance facts and user-data from the cloud's metadata endpoint (one file per provider).
