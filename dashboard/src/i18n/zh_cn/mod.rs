//! Simplified Chinese (the default language), one file per console area.

mod common;
mod monitoring;
mod overview;
mod users;

pub(super) const AREAS: &[super::Table] = &[common::STRINGS, monitoring::STRINGS, overview::STRINGS, users::STRINGS];
