//! Simplified Chinese (the default language), one file per console area.

mod common;
mod overview;

pub(super) const AREAS: &[super::Table] = &[common::STRINGS, overview::STRINGS];
