//! The web console in the server: identity (accounts, sessions, audit) and the dashboard
//! pages. In one process the dashboard calls the collector and alerting router directly with
//! a token minted at start; `--target dashboard` alone calls them over HTTP (`[dashboard.api]`).

use crate::config::Config;
use anyhow::Context;
use axum::Router;
use std::sync::Arc;
use tingzhen_alerting::notify::Language;
use tingzhen_alerting::notify::verification::CodeSms;
use tingzhen_core::db::{Db, DbError};
use tingzhen_core::token::Scope;
use tingzhen_dashboard::{Backend, Dashboard};
use tingzhen_identity::{CodeSender, Identity, Lang, SystemClock};

/// Password-reset codes go out through the SMS provider configured for alerting.
struct ResetTexts(CodeSms);

impl CodeSender for ResetTexts {
    fn send_code(&self, phone: &str, code: &str, minutes: u32, lang: Lang) -> Result<(), String> {
        let language = match lang {
            Lang::ZhCn => Language::ZhCn,
            Lang::En => Language::En,
        };
        self.0.send_code(phone, code, minutes, language).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The token the in-process dashboard presents to the APIs. Re-issued at every start (the old
/// one revoked), never printed or written anywhere but the token table's hash.
const INTERNAL_TOKEN: &str = "dashboard-internal";

pub struct Console {
    pub identity: Arc<Identity>,
    dashboard: Option<Dashboard>,
}

impl Console {
    pub fn identity(config: &Config, db: Arc<Db>) -> anyhow::Result<Arc<Identity>> {
        if config.server.tls.is_none() && config.identity.cookie_secure {
            tracing::warn!(
                "no [server.tls]: browsers keep the Secure session cookie only on localhost; serve HTTPS for other clients"
            );
        }
        let mut identity = Identity::new(db, config.identity.clone(), Arc::new(SystemClock)).context("[identity]")?;
        if let Some(reset) = &config.identity.password_reset {
            let sms = CodeSms::new(&config.alerting.notify, &reset.sms_provider, &reset.sms_template)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            identity = identity.with_code_sender(Arc::new(ResetTexts(sms)));
        }
        Ok(Arc::new(identity))
    }

    /// The console over this process's own API router.
    pub fn in_process(config: &Config, db: Arc<Db>, api: Router) -> anyhow::Result<Self> {
        let identity = Self::identity(config, db.clone())?;
        match db.revoke_token(INTERNAL_TOKEN) {
            Ok(()) | Err(DbError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let token = db.create_token(INTERNAL_TOKEN, &[Scope::Admin], &[])?.plaintext;
        let dashboard = Dashboard::new(identity.clone(), Backend::in_process(api, token), config.dashboard.clone())?;
        Ok(Self { identity, dashboard: Some(dashboard) })
    }

    /// `--target dashboard`: the console alone, over another process's APIs.
    pub fn remote(config: &Config, db: Arc<Db>) -> anyhow::Result<Self> {
        let api =
            config.dashboard.api.as_ref().context(
                "--target dashboard needs [dashboard.api] with the collector's url and an admin-scope token",
            )?;
        let token = api.token.resolve().context("dashboard.api.token")?;
        let identity = Self::identity(config, db)?;
        let dashboard = Dashboard::new(identity.clone(), Backend::http(&api.url, token), config.dashboard.clone())?;
        Ok(Self { identity, dashboard: Some(dashboard) })
    }

    /// Identity's API plus the dashboard's pages.
    pub fn router(&self) -> Router {
        let mut r = tingzhen_identity::api::router(self.identity.clone());
        if let Some(d) = &self.dashboard {
            r = r.merge(tingzhen_dashboard::router(d.clone()));
        }
        r
    }
}
