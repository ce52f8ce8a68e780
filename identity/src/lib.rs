//! tingzhen identity: users, campus-scoped roles and permissions, password policy, captcha,
//! lockout, sessions, TOTP and the tamper-evident audit log.
