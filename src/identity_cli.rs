//! `tingzhen user create|list|disable|enable|unlock` and `tingzhen audit verify`: local
//! administration of web-console accounts and the audit chain, straight on `tingzhen.db`
//! (for the first administrator and for recovery). Every action is audited as `cli:<login>`.

use crate::cli::{StoreArgs, open_store};
use anyhow::Context;
use clap::Subcommand;
use std::sync::Arc;
use tingzhen_identity::{Actor, BulkAction, Identity, IdentityConfig, NewUser, RoleBinding, SystemClock, UserFilter};

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user with a random initial password (printed once on stdout; it must be
    /// changed at first login).
    Create {
        #[arg(long)]
        name: String,
        /// Role, optionally on one campus: `admin`, `ops@east`, `auditor`, `viewer@north`.
        /// Repeat for several. Without a campus the role applies to every campus.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long, default_value = "")]
        display_name: String,
        /// Mobile number for password reset by SMS code.
        #[arg(long)]
        phone: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users (fuzzy `--q` on name or display name, `--status`).
    List {
        #[arg(long)]
        q: Option<String>,
        /// active, disabled, cancelled or locked.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Disable a user and end their sessions.
    Disable {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Enable a disabled user.
    Enable {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Lift a lockout (unfreeze) before it runs out.
    Unlock {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Verify the audit chain; exits non-zero naming the first edited, deleted or inserted record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The identity store with the `[identity]` section of `--config` (its audit key and password
/// policy must be the server's, or CLI records would not chain and CLI passwords would skip
/// the configured rules).
fn open(store: &StoreArgs) -> anyhow::Result<Identity> {
    let db = Arc::new(open_store(store)?);
    let cfg: IdentityConfig = crate::config::Config::load_or_default(store.config_file())?.identity;
    Identity::new(db, cfg, Arc::new(SystemClock)).context("cannot open the identity store")
}

fn actor() -> Actor {
    let login = std::env::var("SUDO_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "unknown".into());
    Actor::new(format!("cli:{login}"), "local")
}

fn parse_role(s: &str) -> anyhow::Result<RoleBinding> {
    let (role, campus) = s.split_once('@').unwrap_or((s, "*"));
    let role = tingzhen_identity::Role::parse(role.trim())
        .ok_or_else(|| anyhow::anyhow!("--role {s:?}: role must be admin, ops, auditor or viewer"))?;
    Ok(RoleBinding { role, campus: campus.trim().to_string() })
}

pub fn user(command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create { name, roles, display_name, phone, store } => {
            let id = open(&store)?;
            let roles = roles.iter().map(|r| parse_role(r)).collect::<anyhow::Result<Vec<_>>>()?;
            let password = id.policy().generate(&name);
            let u = NewUser {
                username: name.clone(),
                display_name,
                password: password.clone(),
                roles,
                valid_until_ms: None,
                access_windows: Vec::new(),
                phone,
            };
            id.create_user(&actor(), &u)?;
            eprintln!("created user {name:?}; initial password (shown once, must be changed at first login):");
            println!("{password}");
            Ok(())
        }
        UserCommand::List { q, status, store } => {
            let users = open(&store)?.search(&UserFilter { q, status, ..Default::default() })?;
            println!("{:<24} {:<10} {:<7} {:<32} LAST LOGIN", "NAME", "STATUS", "LOGINS", "ROLES");
            for u in users {
                let roles = u.roles.iter().map(|b| format!("{}@{}", b.role.as_str(), b.campus)).collect::<Vec<_>>();
                let status = if u.locked_until_ms.is_some() { "locked".to_string() } else { u.status };
                let last = u
                    .last_login_ms
                    .map(|ms| {
                        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
                        humantime::format_rfc3339_seconds(t).to_string()
                    })
                    .unwrap_or_else(|| "never".into());
                println!("{:<24} {:<10} {:<7} {:<32} {last}", u.username, status, u.login_count, roles.join(","));
            }
            Ok(())
        }
        UserCommand::Disable { name, store } => bulk(&store, BulkAction::Disable, name),
        UserCommand::Enable { name, store } => bulk(&store, BulkAction::Enable, name),
        UserCommand::Unlock { name, store } => bulk(&store, BulkAction::Unfreeze, name),
    }
}

fn bulk(store: &StoreArgs, action: BulkAction, name: String) -> anyhow::Result<()> {
    let r = open(store)?.bulk(&actor(), action, std::slice::from_ref(&name))?;
    match r.into_iter().next() {
        Some(res) if res.ok => {
            eprintln!("{name}: {action:?} done");
            Ok(())
        }
        Some(res) => Err(anyhow::anyhow!("{name}: {}", res.error.unwrap_or_default())),
        None => Err(anyhow::anyhow!("{name}: no result")),
    }
}

pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify { store } => {
            let id = open(&store)?;
            let report = id.audit_log().verify()?;
            id.record(
                &actor(),
                tingzhen_identity::audit::events::AUDIT_VIEW,
                tingzhen_identity::audit::Outcome::Success,
                format!("chain verified from the CLI: ok={}", report.ok),
            )?;
            match report.problem {
                None => {
                    println!("audit log: {} records, chain intact", report.records);
                    Ok(())
                }
                Some(p) => Err(anyhow::anyhow!("audit log tampered at record {} ({:?}): {}", p.seq, p.kind, p.message)),
            }
        }
    }
}
