//! English, one file per console area (same keys as `zh_cn`).

mod common;
mod monitoring;
mod overview;
mod users;

pub(super) const AREAS: &[super::Table] = &[common::STRINGS, monitoring::STRINGS, overview::STRINGS, users::STRINGS];
