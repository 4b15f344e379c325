//! Unit tests of the engine rules.
