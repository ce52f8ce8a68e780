//! Simplified Chinese (the default language), one file per console area.

mod common;
mod monitoring;
mod overview;

pub(super) const AREAS: &[super::Table] = &[common::STRINGS, monitoring::STRINGS, overview::STRINGS];
