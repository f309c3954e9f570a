//! Task tokens for airlock (Biscuit): mint, attenuate, verify, revoke.
