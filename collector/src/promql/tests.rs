//! Unit tests of the PromQL engine on `MemStorage`.
