//! tingzhen dashboard: the ops console (MON-1, MON-8..14, PLAT-3). Server-rendered pages
//! (handlebars), every template and asset embedded in the binary, zh-CN first with English,
//! light/dark/big-screen themes. Logins, sessions, CSRF and permissions come from `identity`;
//! monitoring data and every configuration change go through the collector and alerting JSON
//! APIs via `backend::Backend`, so the console works in one process or against split targets.
//!
//! Map: `web` (who is asking: session, language, theme, campus scope), `render` (templates and
//! helpers), `charts` (SVG drawn on the server), `pages/*` (one module per console area, each
//! with its `routes()`), `i18n/*` (UI strings per language), `assets/` and `templates/`.

pub mod backend;
pub mod charts;
pub mod config;
pub mod i18n;
pub mod mask;
mod pages;
pub mod render;
pub mod web;

pub use backend::{Backend, BackendError};
pub use config::DashboardConfig;

use axum::Router;
use std::sync::Arc;
use tingzhen_identity::Identity;

/// Everything a page handler needs; cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    pub identity: Arc<Identity>,
    pub backend: Backend,
    pub config: Arc<DashboardConfig>,
    pub views: Arc<render::Views>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("backend", &self.backend).finish()
    }
}

impl Dashboard {
    pub fn new(
        identity: Arc<Identity>,
        backend: Backend,
        config: DashboardConfig,
    ) -> Result<Self, render::RenderSetupError> {
        Ok(Self { identity, backend, config: Arc::new(config), views: Arc::new(render::Views::load()?) })
    }
}

/// The console's routes: `/` redirects to `/ui/`; pages under `/ui/`, their actions under
/// `/ui/api/`, assets under `/ui/assets/`. The identity API (`/api/v1/auth/*` …) is mounted
/// by the server beside it.
pub fn router(state: Dashboard) -> Router {
    pages::routes().with_state(state)
}
