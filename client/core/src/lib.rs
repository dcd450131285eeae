//! Pouch's sync engine.
