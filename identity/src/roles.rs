//! Built-in roles and the permissions each grants. Roles are bound to a user per campus
//! (`*` = every campus). Separation of duties (MLPS level 3: system, security and audit
//! administrators apart): the auditor only reads the audit log; the admin manages users and
//! configuration but does not read the audit log.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Ops,
    Auditor,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Ops, Role::Auditor, Role::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ops => "ops",
            Role::Auditor => "auditor",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn grants(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => matches!(p, ViewMonitoring | OperateAlerts | ManageConfig | ManageUsers | ViewSensitive),
            Role::Ops => matches!(p, ViewMonitoring | OperateAlerts | ManageConfig),
            Role::Auditor => matches!(p, ViewAudit),
            Role::Viewer => matches!(p, ViewMonitoring),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read dashboards, targets, alerts of a campus.
    ViewMonitoring,
    /// Acknowledge and silence alerts.
    OperateAlerts,
    /// Change rules, receivers, targets, time windows.
    ManageConfig,
    /// Create users, change roles, bulk account actions, account reports.
    ManageUsers,
    /// Read the audit log and verify its chain.
    ViewAudit,
    /// See unmasked sensitive fields (every view is audited by the caller).
    ViewSensitive,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::ViewMonitoring,
        Permission::OperateAlerts,
        Permission::ManageConfig,
        Permission::ManageUsers,
        Permission::ViewAudit,
        Permission::ViewSensitive,
    ];

    /// Group-wide permissions: only a binding on every campus (`*`) grants them, so a campus
    /// admin cannot create users or read the audit log of the whole group.
    pub fn is_global(self) -> bool {
        matches!(self, Permission::ManageUsers | Permission::ViewAudit)
    }
}

/// One role on one campus (`*` for all).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBinding {
    pub role: Role,
    #[serde(default = "all_campuses")]
    pub campus: String,
}

pub const ALL_CAMPUSES: &str = "*";

fn all_campuses() -> String {
    ALL_CAMPUSES.into()
}

/// Whether `bindings` grant `perm` on `campus` (`None` = a group-wide action).
pub fn allowed(bindings: &[RoleBinding], perm: Permission, campus: Option<&str>) -> bool {
    bindings.iter().any(|b| {
        b.role.grants(perm)
            && (b.campus == ALL_CAMPUSES || (!perm.is_global() && campus.is_some_and(|c| c == b.campus)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(role: Role, campus: &str) -> RoleBinding {
        RoleBinding { role, campus: campus.into() }
    }

    #[test]
    fn campus_scoping_and_separation_of_duties() {
        let viewer_a = [b(Role::Viewer, "A")];
        assert!(allowed(&viewer_a, Permission::ViewMonitoring, Some("A")));
        assert!(!allowed(&viewer_a, Permission::ViewMonitoring, Some("B")));
        assert!(!allowed(&viewer_a, Permission::ViewMonitoring, None));
        let campus_admin = [b(Role::Admin, "A")];
        assert!(!allowed(&campus_admin, Permission::ManageUsers, Some("A")), "user management is group-wide");
        let admin = [b(Role::Admin, "*")];
        assert!(allowed(&admin, Permission::ManageUsers, None));
        assert!(!allowed(&admin, Permission::ViewAudit, None));
        let auditor = [b(Role::Auditor, "*")];
        assert!(allowed(&auditor, Permission::ViewAudit, None));
        for p in Permission::ALL.into_iter().filter(|p| *p != Permission::ViewAudit) {
            assert!(!allowed(&auditor, p, Some("A")), "{p:?}");
        }
    }
}
