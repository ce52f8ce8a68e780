//! tingzhen identity: users, campus-scoped roles and permissions, password policy, captcha,
//! lockout, sessions, TOTP and the tamper-evident audit log (MON-1, SEC). Every web-facing
//! target holds one `Identity` and calls `Identity::authorize`; `api::router` serves
//! `/api/v1/auth/*`, `/api/v1/users/*` and `/api/v1/audit/*`.

pub mod api;
pub mod audit;
pub mod captcha;
pub mod clock;
pub mod config;
pub mod messages;
pub mod password;
pub mod roles;
pub mod secretbox;
mod service;
pub mod totp;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::IdentityConfig;
pub use messages::{Lang, Msg};
pub use roles::{Permission, Role, RoleBinding};
pub use service::*;
