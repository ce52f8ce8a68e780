//! The console's pages, one module per area, each with its own `routes()`; this module joins
//! them and serves the embedded assets.

mod account;
mod alerts;
mod assets;
mod audit;
mod auth;
mod config;
pub(crate) mod data;
mod hosts;
mod interfaces;
mod overview;
mod search;
mod targets;
mod users;

use crate::Dashboard;
use axum::Router;
use axum::response::Redirect;
use axum::routing::get;

pub fn routes() -> Router<Dashboard> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .merge(assets::routes())
        .merge(auth::routes())
        .merge(overview::routes())
        .merge(hosts::routes())
        .merge(targets::routes())
        .merge(interfaces::routes())
        .merge(search::routes())
        .merge(users::routes())
        .merge(audit::routes())
        .merge(account::routes())
        .merge(alerts::routes())
        .merge(config::routes())
}

#[cfg(test)]
pub(crate) mod testkit;
