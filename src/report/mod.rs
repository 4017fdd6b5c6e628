//! Results formatting.
