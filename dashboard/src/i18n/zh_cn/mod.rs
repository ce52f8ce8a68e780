//! Simplified Chinese (the default language), one file per console area.

mod alerts;
mod common;
mod config;
mod monitoring;
mod overview;
mod users;

pub(super) const AREAS: &[super::Table] =
    &[alerts::STRINGS, common::STRINGS, config::STRINGS, monitoring::STRINGS, overview::STRINGS, users::STRINGS];
