//! What principals did: activity per principal, per access key and of the root account over the
//! tracking period, gathered from the lake's `ciem_events` (read by
//! [`crate::sink::read::account_events`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The columns of one event the findings need.
#[derive(Debug, Clone, Default)]
pub struct EventFacts {
    pub time_ms: i64,
    pub actor_user_type: Option<String>,
    pub actor_user_uid: Option<String>,
    pub actor_user_uid_alt: Option<String>,
    pub actor_session_issuer: Option<String>,
    pub actor_credential_uid: Option<String>,
    /// `service:Operation`.
    pub action: Option<String>,
    pub api_operation: Option<String>,
    /// The call succeeded (`status_id` 1). A denied call is activity of the principal and
    /// key, but not use of the action: the permission did not work.
    pub succeeded: bool,
}

/// Use of one principal, key or the root account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    pub events: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// Actions called successfully, lower-cased, with the spelling first seen and the last call.
    pub actions: BTreeMap<String, (String, i64)>,
    /// Console sign-ins (AWS `ConsoleLogin`) among the events.
    pub console_logins: u64,
    pub last_console_login_ms: Option<i64>,
}

impl Activity {
    fn add(&mut self, e: &EventFacts) {
        self.events += 1;
        self.first_ms = Some(self.first_ms.map_or(e.time_ms, |t| t.min(e.time_ms)));
        self.last_ms = Some(self.last_ms.map_or(e.time_ms, |t| t.max(e.time_ms)));
        if let Some(action) = e
            .action
            .as_deref()
            .filter(|a| e.succeeded && a.contains(':'))
        {
            let entry = self
                .actions
                .entry(action.to_ascii_lowercase())
                .or_insert_with(|| (action.to_string(), e.time_ms));
            entry.1 = entry.1.max(e.time_ms);
        }
        if e.api_operation.as_deref() == Some("ConsoleLogin") {
            self.console_logins += 1;
            self.last_console_login_ms = Some(
                self.last_console_login_ms
                    .map_or(e.time_ms, |t| t.max(e.time_ms)),
            );
        }
    }
}

/// Activity over `[start_ms, end_ms]`.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub start_ms: i64,
    pub end_ms: i64,
    /// By every name an event gives its actor: `actor_user_uid` and `actor_user_uid_alt`; for
    /// role sessions only `actor_session_issuer` (the role).
    pub principals: HashMap<String, Activity>,
    /// By access key (`actor_credential_uid`).
    pub keys: HashMap<String, Activity>,
    /// Events of the root account (AWS `userIdentity.type = Root`, Tencent `root`).
    pub root: Activity,
    /// Every action seen (the catalog of clouds without a bundled one).
    pub actions_seen: BTreeSet<String>,
    pub events: u64,
}

impl Usage {
    pub fn new(start_ms: i64, end_ms: i64) -> Self {
        Usage {
            start_ms,
            end_ms,
            ..Usage::default()
        }
    }

    /// Counts one event, if it falls in the period.
    pub fn record(&mut self, e: &EventFacts) {
        if e.time_ms < self.start_ms || e.time_ms > self.end_ms {
            return;
        }
        self.events += 1;
        // A session of an assumed role is the role's activity, and only the role's: its other
        // ids may name whoever assumed it (Tencent's sessionContext.uin).
        let issuer = e.actor_session_issuer.as_deref().filter(|s| !s.is_empty());
        let mut names: Vec<&str> = match issuer {
            Some(role) => vec![role],
            None => [e.actor_user_uid.as_deref(), e.actor_user_uid_alt.as_deref()]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect(),
        };
        names.dedup();
        for name in names {
            self.principals.entry(name.to_string()).or_default().add(e);
        }
        if let Some(key) = e.actor_credential_uid.as_deref().filter(|k| !k.is_empty()) {
            self.keys.entry(key.to_string()).or_default().add(e);
        }
        if e.actor_user_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("root"))
        {
            self.root.add(e);
        }
        if let Some(action) = e.action.as_deref().filter(|a| a.contains(':')) {
            self.actions_seen.insert(action.to_string());
        }
    }

    /// The activity of a principal known by `uid` (or its other id `alt_uid`).
    pub fn principal(&self, uid: &str, alt_uid: Option<&str>) -> Option<&Activity> {
        self.principals
            .get(uid)
            .or_else(|| alt_uid.and_then(|a| self.principals.get(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(uid: &str, alt: &str, issuer: Option<&str>, action: &str) -> EventFacts {
        EventFacts {
            time_ms: 1_000,
            actor_user_uid: Some(uid.into()),
            actor_user_uid_alt: Some(alt.into()),
            actor_session_issuer: issuer.map(str::to_string),
            action: Some(action.into()),
            succeeded: true,
            ..EventFacts::default()
        }
    }

    #[test]
    fn a_role_session_is_the_roles_activity_only() {
        let mut usage = Usage::new(0, 2_000);
        // A Tencent role session whose sessionContext.uin names the user who assumed it.
        usage.record(&event(
            "100000000012",
            "100000000012",
            Some("qcs::cam::uin/1:roleName/r"),
            "cvm:RunInstances",
        ));
        usage.record(&event(
            "100000000012",
            "100000000012",
            None,
            "cvm:DescribeInstances",
        ));
        let role = usage
            .principal("qcs::cam::uin/1:roleName/r", None)
            .expect("role");
        assert_eq!(
            role.actions.keys().collect::<Vec<_>>(),
            ["cvm:runinstances"]
        );
        let user = usage.principal("100000000012", None).expect("user");
        assert_eq!(
            user.actions.keys().collect::<Vec<_>>(),
            ["cvm:describeinstances"]
        );
        assert_eq!(user.events, 1);
    }
}
