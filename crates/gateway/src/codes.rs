//! Every code the gateway answers an agent with: its HTTP status and what it means, in one
//! place.
//!
//! This module owns [`RefusalCode`]. A refusal is built from a code (`Refusal::new`), so a
//! code has exactly one status; `docs/gateway.md`'s table of codes is held to this list by a
//! test. It must never grow a code without a doc line, and never reuse a code for a second
//! status.

use http::StatusCode;

macro_rules! codes {
    ($($variant:ident = ($code:literal, $status:ident, $doc:literal),)*) => {
        /// A stable, machine-readable refusal code (the `error` field of a refusal).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum RefusalCode {
            $(#[doc = $doc] $variant,)*
        }

        impl RefusalCode {
            /// Every code, in the order of the documentation.
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant,)*];

            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self { $(RefusalCode::$variant => $code,)* }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(RefusalCode::$variant => StatusCode::$status,)* }
            }

            /// What it means, in one line.
            pub const fn doc(self) -> &'static str {
                match self { $(RefusalCode::$variant => $doc,)* }
            }

            /// The code named `s`, if there is one.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($code => Some(RefusalCode::$variant),)* _ => None }
            }
        }
    };
}

codes! {
    AbsoluteUri = ("absolute_uri", BAD_REQUEST, "an absolute-form request target; agents send origin-form paths"),
    PathTraversal = ("path_traversal", BAD_REQUEST, "a path that would leave the upstream's route prefix after decoding"),
    BadRequest = ("bad_request", BAD_REQUEST, "a request the gateway cannot forward as it is"),
    UnparsableRequest = ("unparsable_request", BAD_REQUEST, "a body that cannot be classified (unparsable, repeated keys or arguments)"),
    BodyReadError = ("body_read_error", BAD_REQUEST, "the request body could not be read"),
    AmbiguousRequest = ("ambiguous_request", BAD_REQUEST, "a method override, or a GraphQL document in the URL next to the body"),
    TokenMisplaced = ("token_misplaced", BAD_REQUEST, "a task token in the query, a cookie or another header; it is never forwarded"),
    BadConnect = ("bad_connect", BAD_REQUEST, "a CONNECT whose target is not host:port (forward proxy)"),
    HostMismatch = ("host_mismatch", BAD_REQUEST, "a request inside a tunnel for another host than the CONNECT named (forward proxy)"),
    MissingToken = ("missing_token", UNAUTHORIZED, "no task token"),
    TokenInvalid = ("token_invalid", UNAUTHORIZED, "a token that is not a valid airlock task token"),
    TokenExpired = ("token_expired", UNAUTHORIZED, "the task token has expired"),
    TokenRevoked = ("token_revoked", UNAUTHORIZED, "the task has ended, or the token was revoked"),
    TokenWidened = ("token_widened", UNAUTHORIZED, "an attenuated token that claims more than its parent"),
    CrossEnvironment = ("cross_environment", FORBIDDEN, "the request touches another environment than the task's"),
    NotGranted = ("not_granted", FORBIDDEN, "no grant of the task covers the operation"),
    BackupSeparation = ("backup_separation", FORBIDDEN, "a backup-tier destroy by a task that can destroy primaries"),
    PolicyDenied = ("policy_denied", FORBIDDEN, "an operator policy forbids it"),
    PolicyError = ("policy_error", FORBIDDEN, "the policy could not be evaluated (fail closed)"),
    RawCredential = ("raw_credential", FORBIDDEN, "a credential airlock did not issue was sent"),
    ApprovalRequired = ("approval_required", FORBIDDEN, "the operation waits for a human; see approval_id"),
    ApprovalDenied = ("approval_denied", FORBIDDEN, "an admin denied the approval request"),
    ApprovalTimeout = ("approval_timeout", FORBIDDEN, "no admin decided within the hold timeout"),
    ApprovalUsed = ("approval_used", FORBIDDEN, "the approval was already used by an identical request"),
    UnknownHost = ("unknown_host", FORBIDDEN, "CONNECT to a host with no upstream and no pass-through (forward proxy)"),
    UnknownUpstream = ("unknown_upstream", NOT_FOUND, "no upstream of that name"),
    MethodNotAllowed = ("method_not_allowed", METHOD_NOT_ALLOWED, "GraphQL and MCP requests must be POST; only CONNECT opens a tunnel"),
    BodyTimeout = ("body_timeout", REQUEST_TIMEOUT, "the body did not arrive within the request timeout"),
    BodyTooLarge = ("body_too_large", PAYLOAD_TOO_LARGE, "the body exceeds the upstream's max_body"),
    ClassifyLimit = ("classify_limit", PAYLOAD_TOO_LARGE, "the body must be read to classify it and exceeds classify_limit"),
    CaError = ("ca_error", INTERNAL_SERVER_ERROR, "the local CA could not mint a certificate (forward proxy)"),
    SecretUnusable = ("secret_unusable", BAD_GATEWAY, "the vault value cannot be sent as the upstream expects"),
    UpstreamUnreachable = ("upstream_unreachable", BAD_GATEWAY, "the upstream could not be reached"),
    UpstreamError = ("upstream_error", BAD_GATEWAY, "the upstream connection failed"),
    UpstreamEncodedResponse = ("upstream_encoded_response", BAD_GATEWAY, "a response encoding the redactor cannot inspect; withheld"),
    UnfilterableResponse = ("unfilterable_response", BAD_GATEWAY, "an MCP tools/list answer that cannot be filtered; withheld"),
    AuditUnavailable = ("audit_unavailable", SERVICE_UNAVAILABLE, "the request could not be audited, so it was not forwarded"),
    SecretUnavailable = ("secret_unavailable", SERVICE_UNAVAILABLE, "the upstream's vault secret is unavailable"),
    SecretMismatch = ("secret_mismatch", SERVICE_UNAVAILABLE, "the vault secret belongs to another environment or upstream"),
    ApprovalStoreUnavailable = ("approval_store_unavailable", SERVICE_UNAVAILABLE, "the approval store failed"),
    StoreUnavailable = ("store_unavailable", SERVICE_UNAVAILABLE, "the token verifier cannot read revocations (fail closed)"),
    TokenKeyUnavailable = ("token_key_unavailable", SERVICE_UNAVAILABLE, "the token verifier has no key"),
    UpstreamTimeout = ("upstream_timeout", GATEWAY_TIMEOUT, "the upstream did not answer in time"),
}

impl RefusalCode {
    /// The code for a token verifier's error code (`token_malformed` is `token_invalid` to
    /// the agent); anything unknown is `token_invalid` (fail closed).
    pub fn for_token(code: &str) -> Self {
        match Self::parse(code) {
            Some(
                c @ (Self::TokenInvalid | Self::TokenExpired | Self::TokenRevoked | Self::TokenWidened | Self::StoreUnavailable | Self::TokenKeyUnavailable),
            ) => c,
            _ => Self::TokenInvalid,
        }
    }
}

/// The answer to a policy denial: its code, one to one (`expired` is the token's expiry).
impl From<airlock_policy::DenyCode> for RefusalCode {
    fn from(c: airlock_policy::DenyCode) -> Self {
        use airlock_policy::DenyCode as D;
        match c {
            D::CrossEnvironment => Self::CrossEnvironment,
            D::NotGranted => Self::NotGranted,
            D::BackupSeparation => Self::BackupSeparation,
            D::ApprovalRequired => Self::ApprovalRequired,
            D::PolicyDenied => Self::PolicyDenied,
            D::PolicyError => Self::PolicyError,
            D::Expired => Self::TokenExpired,
            // A code this build does not know yet: still a denial.
            _ => Self::PolicyDenied,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `docs/gateway.md`'s table of codes lists exactly these codes, each under its status.
    #[test]
    fn the_documented_table_is_this_list() {
        let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/gateway.md")).unwrap();
        let table = doc.split("| status | codes |").nth(1).expect("the codes table");
        let mut documented = BTreeSet::new();
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let mut cells = line.trim_matches('|').split('|');
            let status: u16 = cells.next().unwrap().trim().parse().unwrap();
            let codes = cells.next().unwrap();
            // Codes are the backticked words at the top level of the cell (not inside the
            // parenthesised explanations).
            let mut depth = 0;
            let mut word = String::new();
            let mut inside = false;
            for ch in codes.chars() {
                match ch {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    '`' if depth == 0 => {
                        if inside {
                            documented.insert((status, std::mem::take(&mut word)));
                        }
                        inside = !inside;
                    }
                    c if inside => word.push(c),
                    _ => {}
                }
            }
        }
        let listed: BTreeSet<(u16, String)> = RefusalCode::ALL.iter().map(|c| (c.status().as_u16(), c.as_str().to_owned())).collect();
        assert_eq!(documented, listed, "docs/gateway.md's codes table and RefusalCode disagree");
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        let names: BTreeSet<&str> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), RefusalCode::ALL.len());
        for c in RefusalCode::ALL {
            assert_eq!(RefusalCode::parse(c.as_str()), Some(*c));
            assert!(!c.doc().is_empty());
        }
        assert_eq!(RefusalCode::for_token("token_malformed"), RefusalCode::TokenInvalid);
        assert_eq!(RefusalCode::for_token("token_revoked"), RefusalCode::TokenRevoked);
        assert_eq!(RefusalCode::from(airlock_policy::DenyCode::NotGranted), RefusalCode::NotGranted);
        assert_eq!(RefusalCode::from(airlock_policy::DenyCode::Expired), RefusalCode::TokenExpired);
    }
}
