//! Credentials a user changes: the password (policy, history of the last N, forced change
//! after an administrator's reset) and TOTP enrolment (secret shown once, then never returned).

use super::{Actor, Identity, IdentityError, Result, Session, for_update, invalid};
use crate::audit::{Outcome, events};
use crate::messages::Msg;
use crate::totp;
use serde::Serialize;
use tingzhen_core::params;

#[derive(Debug, Clone, Serialize)]
pub struct TotpEnrolment {
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG) for the authenticator app to scan.
    pub qr_svg: Option<String>,
}

impl Identity {
    /// Changes the session user's own password: the old one must be right, the new one must
    /// pass the policy and differ from the current and the last `password_history` ones.
    pub fn change_password(&self, session: &Session, old: &str, new: &str) -> Result<()> {
        let user = self.user_by_id(session.user_id)?;
        if !self.policy.verify(old, &user.password_hash) {
            self.record(&session.actor(), events::PASSWORD_CHANGE, Outcome::Failure, "wrong current password")?;
            return Err(IdentityError::Denied(Msg::WrongOldPassword));
        }
        self.set_password(&session.actor(), user.id, &user.username, new, false)
    }

    /// Checks and stores a new password (history, policy), used by self-service change and by
    /// an administrator's reset (`must_change` then forces a change at next login).
    pub(crate) fn set_password(
        &self,
        actor: &Actor,
        user_id: i64,
        username: &str,
        new: &str,
        must_change: bool,
    ) -> Result<()> {
        let violations = self.policy.violations(username, new);
        if !violations.is_empty() {
            self.record(actor, events::PASSWORD_CHANGE, Outcome::Refused, format!("for {username}: policy"))?;
            return Err(self.policy_error(violations));
        }
        let n = self.cfg.password_history as i64;
        // Argon2 checks are slow, so they run outside the store; the write below goes ahead
        // only if the password they were checked against is still the current one.
        let (current, previous) = self.db.with_conn(|c| {
            let current: String =
                c.query_row("SELECT password_hash FROM identity_users WHERE id = ?1", &[user_id], |r| r.get(0))?;
            let previous = c.query_map(
                "SELECT password_hash FROM identity_password_history WHERE user_id = ?1 ORDER BY seq DESC LIMIT ?2",
                &[user_id, n],
                |r| r.get::<String>(0),
            )?;
            Ok::<_, tingzhen_core::db::DbError>((current, previous))
        })?;
        if std::iter::once(&current).chain(&previous).any(|h| self.policy.verify(new, h)) {
            self.record(actor, events::PASSWORD_CHANGE, Outcome::Refused, format!("for {username}: reuse"))?;
            return Err(self.policy_error(vec![Msg::PasswordReused { history: self.cfg.password_history }]));
        }
        let hash = self.policy.hash(new)?;
        let now = self.now_ms();
        self.db.with_conn(|c| {
            c.transaction(|tx| -> Result<()> {
                let still: String = tx.query_row(
                    &format!("SELECT password_hash FROM identity_users WHERE id = ?1{}", for_update(tx)),
                    &[user_id],
                    |r| r.get(0),
                )?;
                if still != current {
                    return Err(invalid("password", "changed by another request at the same time; try again"));
                }
                // The history is ordered by a per-user sequence (insertion order, even within
                // one millisecond); the row lock above makes MAX + 1 safe.
                let seq: i64 = tx.query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM identity_password_history WHERE user_id = ?1",
                    &[user_id],
                    |r| r.get(0),
                )?;
                tx.execute(
                    "INSERT INTO identity_password_history (user_id, password_hash, changed_ms, seq) VALUES (?1, ?2, ?3, ?4)",
                    &params![user_id, current, now, seq],
                )?;
                tx.execute(
                    "DELETE FROM identity_password_history WHERE user_id = ?1 AND seq <= ?2",
                    &[user_id, seq - n],
                )?;
                tx.execute(
                    "UPDATE identity_users SET password_hash = ?2, password_changed_ms = ?3, must_change = ?4, updated_ms = ?3
                     WHERE id = ?1",
                    &params![user_id, hash, now, i64::from(must_change)],
                )?;
                Ok(())
            })
        })?;
        self.record(actor, events::PASSWORD_CHANGE, Outcome::Success, format!("password of {username} changed"))
    }

    /// Starts TOTP enrolment: the secret is shown this once; it becomes active after
    /// `totp_confirm` with a valid code, and is never returned again.
    pub fn totp_begin(&self, session: &Session) -> Result<TotpEnrolment> {
        let user = self.user_by_id(session.user_id)?;
        if user.totp_secret.is_some() {
            return Err(invalid("totp", "already enrolled; an administrator must reset it first"));
        }
        let secret = totp::base32_encode(&rand::random::<[u8; 20]>());
        self.db.with_conn(|c| {
            c.execute(
                "UPDATE identity_users SET totp_pending = ?2 WHERE id = ?1",
                &params![user.id, self.secrets.seal(&secret)],
            )
        })?;
        let otpauth_uri = totp::otpauth_uri("tingzhen", &user.username, &secret);
        let qr_svg = totp::qr_svg(&otpauth_uri);
        Ok(TotpEnrolment { secret, otpauth_uri, qr_svg })
    }

    pub fn totp_confirm(&self, session: &Session, code: &str) -> Result<()> {
        let pending: Option<String> = self.db.with_conn(|c| {
            c.query_row("SELECT totp_pending FROM identity_users WHERE id = ?1", &[session.user_id], |r| r.get(0))
        })?;
        let Some(pending) = pending else { return Err(IdentityError::Denied(Msg::TotpNotPending)) };
        let key = totp::base32_decode(&self.secrets.open(&pending)?).unwrap_or_default();
        let Some(step) = totp::check(&key, code, self.now_ms() / 1000) else {
            self.record(&session.actor(), events::TOTP_ENROL, Outcome::Failure, "wrong one-time code")?;
            return Err(IdentityError::Denied(Msg::TotpWrong));
        };
        // Only the secret this code was checked against is activated: a new enrolment started
        // meanwhile replaced it, and then this confirmation no longer applies.
        let n = self.db.with_conn(|c| {
            c.execute(
                "UPDATE identity_users SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = ?2
                 WHERE id = ?1 AND totp_pending = ?3",
                &params![session.user_id, step, pending],
            )
        })?;
        if n == 0 {
            return Err(IdentityError::Denied(Msg::TotpNotPending));
        }
        self.record(&session.actor(), events::TOTP_ENROL, Outcome::Success, "two-factor authentication enrolled")
    }
}
