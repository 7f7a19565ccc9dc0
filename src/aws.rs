//! Helpers shared by the AWS source and the S3 output: the SDK configuration from the default
//! credential chain, and error messages.

/// The AWS SDK configuration loader: the default chain (environment, profile, web identity,
/// SSO, EC2 / ECS role) with an optional region, named profile and endpoint.
pub fn config_loader(
    region: Option<&str>,
    profile: Option<&str>,
    endpoint_url: Option<&str>,
) -> aws_config::ConfigLoader {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    loader
}

/// An error and its causes, as one line of their messages (the SDK's own Display stops at
/// "service error" / "dispatch failure"; its Debug form is too noisy for a log line).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chains_are_one_line_without_repeats() {
        let e = E(
            "service error",
            Some(Box::new(E(
                "QueueDoesNotExist: no queue",
                Some(Box::new(E("no queue", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "service error: QueueDoesNotExist: no queue"
        );
    }
}
