//! Secrets at rest for airlock: envelope encryption, master keys, zeroized plaintext.
