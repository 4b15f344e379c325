//! A model of the engine, property-tested.
