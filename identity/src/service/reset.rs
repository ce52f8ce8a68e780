//! Self-service password reset by SMS verification code (MLPS 1.2, 1.5, 1.6).
//!
//! Asking for a code takes the account name, the phone number on record and a solved captcha.
//! Requests are rate-limited per account name before anything about the account is looked at
//! (a least interval and a number per hour), so the limits say nothing about which names
//! exist. A code is sent only when the number matches the account's (1.5: the number is checked
//! before any text goes out); the answer is the same whether it matched or not. The code (six
//! digits) is stored as a SHA-256 over the account id and the code, valid for `code_ttl`,
//! void after `max_attempts` wrong tries, and used once. A reset ends every live session of the
//! account and lifts a lockout. Every step is audited (`password_reset`); numbers appear masked.

use super::session::{name_key, same, sha256_hex};
use super::{Actor, Identity, IdentityError, Result, for_update, invalid};
use crate::audit::{Outcome, events};
use crate::config::{PasswordResetConfig, ms};
use crate::messages::{Lang, Msg};
use serde::Deserialize;
use std::sync::Arc;
use tingzhen_core::db::{DbError, Dialect};
use tingzhen_core::params;
use tingzhen_core::phone;

/// Sends a verification code by SMS. Blocking; the server implements it over the SMS provider
/// configured for alerting. The error text goes to the log and the audit, never to the client.
pub trait CodeSender: Send + Sync {
    fn send_code(&self, phone: &str, code: &str, minutes: u32, lang: Lang) -> std::result::Result<(), String>;
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub username: String,
    pub phone: String,
    #[serde(default)]
    pub captcha_id: Option<String>,
    #[serde(default)]
    pub captcha_answer: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub username: String,
    pub code: String,
    pub new_password: String,
}

const HOUR_MS: i64 = 3_600_000;

/// What checking a code found.
enum CodeCheck {
    Right,
    Wrong,
    /// None outstanding, expired, or out of attempts.
    Void,
}

impl Identity {
    /// Whether the console should offer "forgot password".
    pub fn password_reset_enabled(&self) -> bool {
        self.cfg.password_reset.is_some() && self.code_sender.is_some()
    }

    fn reset_setup(&self) -> Result<(&PasswordResetConfig, &Arc<dyn CodeSender>)> {
        match (&self.cfg.password_reset, &self.code_sender) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => Err(IdentityError::Denied(Msg::ResetUnavailable)),
        }
    }

    /// Step 1: a code to the phone on record. Returns the message to show, the same whether
    /// or not the account and number matched.
    pub fn request_reset(&self, req: &ResetRequest, ip: &str, lang: Lang) -> Result<Msg> {
        let (cfg, sender) = self.reset_setup()?;
        let username = req.username.trim();
        if username.is_empty() || username.len() > 128 {
            return Err(invalid("username", "must be 1–128 characters"));
        }
        let actor = Actor::new(username, ip);
        let refuse = |msg: Msg, detail: &str| -> Result<Msg> {
            self.record(&actor, events::PASSWORD_RESET, Outcome::Refused, detail)?;
            Err(IdentityError::Denied(msg))
        };
        let (Some(id), Some(answer)) = (&req.captcha_id, &req.captcha_answer) else {
            return refuse(Msg::CaptchaRequired, "code request: captcha missing");
        };
        if !self.take_captcha(id, answer)? {
            return refuse(Msg::CaptchaWrong, "code request: captcha wrong or expired");
        }
        let phone = phone::normalize(&req.phone).map_err(|e| invalid("phone", e))?;
        let minutes = (ms(cfg.code_ttl) / 60_000) as u32;
        let now = self.now_ms();
        match self.note_reset_request(&name_key(username), cfg, now)? {
            Ok(()) => {}
            Err(Msg::ResetTooMany) => {
                return refuse(Msg::ResetTooMany, &format!("code request: {} in the last hour", cfg.max_per_hour));
            }
            Err(m) => return refuse(m, "code request: too soon after the last one"),
        }
        let account = self.user_by_name(username)?;
        let Some(account) = account.filter(|a| a.status == "active" && a.phone.as_deref() == Some(phone.as_str()))
        else {
            self.record(
                &actor,
                events::PASSWORD_RESET,
                Outcome::Refused,
                format!("code not sent to {}: no active account with this name and phone number", phone::mask(&phone)),
            )?;
            return Ok(Msg::ResetCodeSent { minutes: i64::from(minutes) });
        };
        let code = format!("{:06}", rand::random_range(0..1_000_000u32));
        let code_hash = sha256_hex(&format!("{}:{code}", account.id));
        self.db.with_conn(|c| {
            c.execute(
                "INSERT INTO identity_reset_codes (user_id, code_sha256, expires_ms, attempts) VALUES (?1, ?2, ?3, 0)
                 ON CONFLICT(user_id) DO UPDATE SET code_sha256 = excluded.code_sha256,
                     expires_ms = excluded.expires_ms, attempts = 0",
                &params![account.id, code_hash, now + ms(cfg.code_ttl)],
            )
        })?;
        if let Err(e) = sender.send_code(&phone, &code, minutes, lang) {
            // A code nobody received must not stay usable.
            self.db.with_conn(|c| {
                c.execute(
                    "DELETE FROM identity_reset_codes WHERE user_id = ?1 AND code_sha256 = ?2",
                    &params![account.id, code_hash],
                )
            })?;
            tracing::warn!(user = %account.username, error = %e, "password reset code could not be sent");
            self.record(
                &actor,
                events::PASSWORD_RESET,
                Outcome::Failure,
                format!("code to {} not sent: {e}", phone::mask(&phone)),
            )?;
            return Err(IdentityError::Denied(Msg::SmsSendFailed));
        }
        self.record(
            &Actor::new(&account.username, ip),
            events::PASSWORD_RESET,
            Outcome::Success,
            format!("code sent to {}, valid {minutes} min", phone::mask(&phone)),
        )?;
        Ok(Msg::ResetCodeSent { minutes: i64::from(minutes) })
    }

    /// Counts a code request for `lc` within the limits (1.6), or says which limit it hit. One
    /// transaction, the table locked on PostgreSQL, so concurrent requests count one by one.
    fn note_reset_request(
        &self,
        lc: &str,
        cfg: &PasswordResetConfig,
        now: i64,
    ) -> Result<std::result::Result<(), Msg>> {
        let interval = ms(cfg.resend_interval);
        let max = i64::from(cfg.max_per_hour);
        Ok(self.db.with_conn(|c| {
            c.transaction(|tx| -> std::result::Result<_, DbError> {
                if tx.dialect() == Dialect::Postgres {
                    tx.execute_batch("LOCK TABLE identity_reset_requests IN EXCLUSIVE MODE")?;
                }
                tx.execute("DELETE FROM identity_reset_requests WHERE requested_ms <= ?1", &[now - HOUR_MS])?;
                let (count, last): (i64, Option<i64>) = tx.query_row(
                    "SELECT COUNT(*), MAX(requested_ms) FROM identity_reset_requests WHERE username_lc = ?1",
                    &[lc],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if count >= max {
                    return Ok(Err(Msg::ResetTooMany));
                }
                if let Some(last) = last.filter(|l| now - l < interval) {
                    return Ok(Err(Msg::ResetTooSoon { seconds: (interval - (now - last) + 999) / 1000 }));
                }
                tx.execute(
                    "INSERT INTO identity_reset_requests (username_lc, requested_ms) VALUES (?1, ?2)",
                    &params![lc, now],
                )?;
                Ok(Ok(()))
            })
        })?)
    }

    /// Step 2: the code and a new password. The password is checked against the policy before
    /// the code is used, so a refused password does not use it up.
    pub fn confirm_reset(&self, req: &ResetConfirm, ip: &str) -> Result<()> {
        let (cfg, _) = self.reset_setup()?;
        let username = req.username.trim();
        if username.is_empty() || username.len() > 128 {
            return Err(invalid("username", "must be 1–128 characters"));
        }
        let actor = Actor::new(username, ip);
        let refuse = |msg: Msg, detail: &str| -> Result<()> {
            self.record(&actor, events::PASSWORD_RESET, Outcome::Refused, detail)?;
            Err(IdentityError::Denied(msg))
        };
        let Some(account) = self.user_by_name(username)? else {
            return refuse(Msg::ResetCodeInvalid, "reset: no such account");
        };
        if account.status != "active" {
            return refuse(Msg::AccountDisabled, &format!("reset: account {}", account.status));
        }
        let violations = self.policy.violations(&account.username, &req.new_password);
        if !violations.is_empty() {
            return Err(self.policy_error(violations));
        }
        let code = req.code.trim();
        let given = sha256_hex(&format!("{}:{code}", account.id));
        let now = self.now_ms();
        let max_attempts = i64::from(cfg.max_attempts);
        let check = self.db.with_conn(|c| {
            c.transaction(|tx| -> std::result::Result<CodeCheck, DbError> {
                let row: Option<(String, i64, i64)> = tx.query_opt(
                    &format!(
                        "SELECT code_sha256, expires_ms, attempts FROM identity_reset_codes WHERE user_id = ?1{}",
                        for_update(tx)
                    ),
                    &[account.id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                let Some((stored, expires, attempts)) = row else { return Ok(CodeCheck::Void) };
                if expires <= now || attempts >= max_attempts {
                    tx.execute("DELETE FROM identity_reset_codes WHERE user_id = ?1", &[account.id])?;
                    return Ok(CodeCheck::Void);
                }
                if same(&stored, &given) {
                    tx.execute("DELETE FROM identity_reset_codes WHERE user_id = ?1", &[account.id])?;
                    return Ok(CodeCheck::Right);
                }
                if attempts + 1 >= max_attempts {
                    tx.execute("DELETE FROM identity_reset_codes WHERE user_id = ?1", &[account.id])?;
                } else {
                    tx.execute(
                        "UPDATE identity_reset_codes SET attempts = attempts + 1 WHERE user_id = ?1",
                        &[account.id],
                    )?;
                }
                Ok(CodeCheck::Wrong)
            })
        })?;
        match check {
            CodeCheck::Right => {}
            CodeCheck::Wrong => return refuse(Msg::ResetCodeInvalid, "reset: wrong code"),
            CodeCheck::Void => return refuse(Msg::ResetCodeInvalid, "reset: no valid code (none, expired or used up)"),
        }
        self.set_password(&actor, account.id, &account.username, &req.new_password, false)?;
        let ended = self.db.with_conn(|c| {
            c.execute(
                "UPDATE identity_sessions SET ended_ms = ?2, end_reason = 'password reset'
                 WHERE user_id = ?1 AND ended_ms IS NULL",
                &[account.id, now],
            )
        })?;
        self.clear_failures(&name_key(&account.username))?;
        self.record(
            &Actor::new(&account.username, ip),
            events::PASSWORD_RESET,
            Outcome::Success,
            format!("password reset by SMS code; {ended} session(s) ended, lockout lifted"),
        )
    }
}
