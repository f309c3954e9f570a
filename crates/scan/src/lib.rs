//! airlock scan: find every credential an agent could read.
