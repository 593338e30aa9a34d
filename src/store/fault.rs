//! What a database error means for the write that met it: a fault of that write's own data,
//! which no retry mends, or of the database, which passes.

use sqlx::error::DatabaseError;
use sqlx::postgres::PgDatabaseError;
use sqlx::sqlite::SqliteError;

use super::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write's data was refused (bad encoding, too long, a constraint of its row): dropping
    /// that write is the only way on.
    Data,
    /// The database is away, busy, locked, full or failing: the write is retried.
    Transient,
}

/// SQLite primary result codes of a write's own data: TOOBIG, CONSTRAINT, MISMATCH, RANGE.
const SQLITE_DATA: [i64; 4] = [18, 19, 20, 25];
/// PostgreSQL SQLSTATE classes of a write's own data: data exception, integrity constraint
/// violation, program limit exceeded (a value too large).
const POSTGRES_DATA: [&str; 3] = ["22", "23", "54"];

impl StoreError {
    pub fn fault(&self) -> Fault {
        match self {
            StoreError::Db(sqlx::Error::Database(e)) if is_data(e.as_ref()) => Fault::Data,
            // A value the driver could not encode for the database.
            StoreError::Db(sqlx::Error::Encode(_)) => Fault::Data,
            _ => Fault::Transient,
        }
    }
}

fn is_data(e: &dyn DatabaseError) -> bool {
    if let Some(pg) = e.try_downcast_ref::<PgDatabaseError>() {
        return POSTGRES_DATA
            .iter()
            .any(|class| pg.code().starts_with(class));
    }
    if e.try_downcast_ref::<SqliteError>().is_some() {
        // The extended result code; its low byte is the primary one.
        let code = e.code().and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
        return SQLITE_DATA.contains(&(code & 0xff));
    }
    false
}
