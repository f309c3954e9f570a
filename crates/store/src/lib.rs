//! Persistence for airlock behind one trait: SQLite (default) and PostgreSQL.
