//! The airlock gateway: verify, classify, decide, audit, inject, forward, redact.
