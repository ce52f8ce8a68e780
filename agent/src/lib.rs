//! tingzhen agent library.
