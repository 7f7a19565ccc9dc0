//! CIEM proper: what principals *may* do (entitlements, from the account sync) against what
//! they *did* (the lake's `ciem_events`), and the findings of the comparison.
//!
//! - [`model`]: an account's identities, policies and credentials as one sync run saw them;
//! - [`entitlements`]: the `entitlements` rows of a run, and each principal's grants;
//! - [`policy`]: policy documents (AWS IAM and Tencent CAM grammar) into statements, and a
//!   principal's effective grants;
//! - [`catalog`]: the catalog of each cloud's actions that wildcards expand against (AWS: the
//!   bundled service authorization reference; other clouds: actions seen in the lake);
//! - [`findings`]: unused roles, users, keys, passwords, services and actions, root use, old
//!   keys, full-admin grants;
//! - [`usage`]: what principals did over the tracking period, from the lake;
//! - [`rows`]: the rows of the `entitlements` and `ciem_findings` datasets.

pub mod catalog;
pub mod entitlements;
pub mod findings;
pub mod model;
pub mod policy;
pub mod rows;
pub mod usage;
