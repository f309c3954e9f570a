//! Cedar policy for airlock: schema, default rules, Allow / Deny / NeedsApproval.
