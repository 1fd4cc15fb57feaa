//! Moved to `tower_deadline::optional`, which the stacks use. This file goes away together with
//! the `mod optional;` line in `main.rs` (left to whoever edits `main.rs` next).
