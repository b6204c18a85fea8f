//! The capability authorizer of a procedure's own statements: SQLite's
//! authorizer callback deciding, action by action, what a procedure's
//! grants allow (docs/security.md). Python parses and validates the grants
//! (`policy.Capabilities`); this decides with them.
//!
//! One [`StatementAuthorizer`] serves one statement: a DDL action it
//! allowed lets the rest of that statement read and rewrite the table it
//! names and the schema (an index reads its table, ALTER rewrites
//! sqlite_schema), nothing more.

use std::sync::Arc;

/// SQLite's authorizer action codes (sqlite3.h; stable across releases).
pub mod action {
    pub const CREATE_INDEX: i32 = 1;
    pub const CREATE_TABLE: i32 = 2;
    pub const CREATE_TEMP_INDEX: i32 = 3;
    pub const CREATE_TEMP_TABLE: i32 = 4;
    pub const CREATE_TEMP_TRIGGER: i32 = 5;
    pub const CREATE_TEMP_VIEW: i32 = 6;
    pub const CREATE_TRIGGER: i32 = 7;
    pub const CREATE_VIEW: i32 = 8;
    pub const DELETE: i32 = 9;
    pub const DROP_INDEX: i32 = 10;
    pub const DROP_TABLE: i32 = 11;
    pub const DROP_TEMP_INDEX: i32 = 12;
    pub const DROP_TEMP_TABLE: i32 = 13;
    pub const DROP_TEMP_TRIGGER: i32 = 14;
    pub const DROP_TEMP_VIEW: i32 = 15;
    pub const DROP_TRIGGER: i32 = 16;
    pub const DROP_VIEW: i32 = 17;
    pub const INSERT: i32 = 18;
    pub const PRAGMA: i32 = 19;
    pub const READ: i32 = 20;
    pub const TRANSACTION: i32 = 22;
    pub const UPDATE: i32 = 23;
    pub const ATTACH: i32 = 24;
    pub const DETACH: i32 = 25;
    pub const ALTER_TABLE: i32 = 26;
    pub const REINDEX: i32 = 27;
    pub const ANALYZE: i32 = 28;
    pub const CREATE_VTABLE: i32 = 29;
    pub const DROP_VTABLE: i32 = 30;
    pub const FUNCTION: i32 = 31;
    pub const SAVEPOINT: i32 = 32;
}

/// The authorizer's answers (sqlite3.h).
pub const OK: i32 = 0;
pub const DENY: i32 = 1;

/// Tables of the engine itself: never granted, never reached.
pub const REGISTRY_PREFIX: &str = "_heliosdb_";
const SCHEMA_TABLES: [&str; 4] = [
    "sqlite_master",
    "sqlite_schema",
    "sqlite_temp_master",
    "sqlite_temp_schema",
];

/// A procedure's normalized grants (`policy.Capabilities.grants`: tables
/// and procedures lower-cased, `kind:target` or a bare kind).
#[derive(Debug, Clone, Default)]
pub struct Grants {
    // (kind, target): a handful per procedure, scanned in place, since the
    // authorizer asks on every action of every statement and a scan of a
    // few short strings allocates nothing (a formatted key would).
    pairs: Vec<(Box<str>, Box<str>)>,
    // Bare kinds (`transaction`, `random`, ...).
    kinds: Vec<Box<str>>,
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

impl Grants {
    pub fn new<'a>(grants: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = Self::default();
        for grant in grants {
            match grant.split_once(':') {
                Some((kind, target)) => out.pairs.push((kind.into(), target.into())),
                None => out.kinds.push(grant.into()),
            }
        }
        out
    }

    /// Whether the bare grant `kind` (`transaction`) is given.
    pub fn has_kind(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| &**k == kind)
    }

    /// `target` compared as lower case (the grants are).
    fn has(&self, kind: &str, target: &str) -> bool {
        self.pairs
            .iter()
            .any(|(k, t)| &**k == kind && t.as_bytes().eq_ignore_ascii_case(target.as_bytes()))
    }

    /// `Capabilities.allows` for the kinds the authorizer asks about.
    pub fn allows(&self, kind: &str, target: &str) -> bool {
        if starts_with_ignore_case(target, REGISTRY_PREFIX) {
            return false;
        }
        // The wildcard covers user tables, not SQLite's own (sqlite_master).
        let wildcard = matches!(kind, "read" | "write")
            && self.has(kind, "*")
            && !starts_with_ignore_case(target, "sqlite_");
        wildcard || self.has(kind, target)
    }
}

fn is_write(action: i32) -> bool {
    matches!(action, action::INSERT | action::UPDATE | action::DELETE)
}

fn is_create(action: i32) -> bool {
    matches!(
        action,
        action::CREATE_INDEX..=action::CREATE_VIEW | action::CREATE_VTABLE
    )
}

fn is_ddl(action: i32) -> bool {
    is_create(action)
        || matches!(
            action,
            action::DROP_INDEX
                ..=action::DROP_VIEW
                    | action::DROP_VTABLE
                    | action::ALTER_TABLE
                    | action::REINDEX
                    | action::ANALYZE
        ) && action != action::DELETE
}

fn is_trigger(action: i32) -> bool {
    matches!(
        action,
        action::CREATE_TRIGGER
            | action::CREATE_TEMP_TRIGGER
            | action::DROP_TRIGGER
            | action::DROP_TEMP_TRIGGER
    )
}

/// The table a DDL action concerns. SQLite passes the object's own name in
/// p1, except for indexes and triggers (their table in p2) and ALTER TABLE
/// (the schema in p1, the table in p2).
pub fn ddl_table<'a>(act: i32, p1: Option<&'a str>, p2: Option<&'a str>) -> Option<&'a str> {
    let index_like = matches!(
        act,
        action::CREATE_INDEX
            | action::DROP_INDEX
            | action::CREATE_TRIGGER
            | action::DROP_TRIGGER
            | action::CREATE_TEMP_INDEX
            | action::DROP_TEMP_INDEX
            | action::CREATE_TEMP_TRIGGER
            | action::DROP_TEMP_TRIGGER
    );
    if index_like || act == action::ALTER_TABLE {
        p2
    } else {
        p1
    }
}

/// The engine table an action reads, writes or changes, if any (Python's
/// `policy._registry_access`): what no trigger or view body may touch,
/// whoever runs the statement.
pub fn registry_access<'a>(act: i32, p1: Option<&'a str>, p2: Option<&'a str>) -> Option<&'a str> {
    let table = if act == action::READ || is_write(act) {
        p1
    } else if is_ddl(act) {
        ddl_table(act, p1, p2)
    } else {
        None
    }?;
    table
        .to_ascii_lowercase()
        .starts_with(REGISTRY_PREFIX)
        .then_some(table)
}

fn always_denied(act: i32) -> Option<&'static str> {
    Some(match act {
        action::ATTACH => "ATTACH",
        action::DETACH => "DETACH",
        action::PRAGMA => "PRAGMA",
        action::TRANSACTION => "transaction statements (use begin-tx/commit-tx)",
        action::SAVEPOINT => "SAVEPOINT (use begin-tx/commit-tx)",
        _ => return None,
    })
}

/// A name as the denial says it: Python's `f"{p1}"` of the original
/// authorizer wrote a missing one as `None`, and so do the messages.
fn shown(name: Option<&str>) -> &str {
    name.unwrap_or("None")
}

/// The authorizer of one statement of a procedure.
#[derive(Debug)]
pub struct StatementAuthorizer {
    grants: Arc<Grants>,
    // The calling statement is itself writing: this call may not write.
    read_only: bool,
    ddl_tables: Vec<String>,
    denied: Vec<String>,
}

impl StatementAuthorizer {
    pub fn new(grants: Arc<Grants>, read_only: bool) -> Self {
        Self {
            grants,
            read_only,
            ddl_tables: Vec::new(),
            denied: Vec::new(),
        }
    }

    /// Forgets what the last statement created and was denied: the
    /// authorizer of the next statement of the same call.
    pub fn reset(&mut self) {
        self.ddl_tables.clear();
        self.denied.clear();
    }

    /// What was denied, first first: the grant the error should name
    /// (SQLite itself only says "not authorized").
    pub fn denied(&self) -> &[String] {
        &self.denied
    }

    fn deny(&mut self, what: String) -> i32 {
        self.denied.push(what);
        DENY
    }

    fn in_ddl(&self, table: &str) -> bool {
        self.ddl_tables.iter().any(|t| t == table)
    }

    /// The answer to one action; `is_procedure(name)` says whether a
    /// function is a registered procedure (calling one needs `call:`).
    pub fn authorize(
        &mut self,
        act: i32,
        p1: Option<&str>,
        p2: Option<&str>,
        is_procedure: impl FnOnce(&str) -> bool,
    ) -> i32 {
        if act == action::READ {
            let table = p1.unwrap_or("").to_ascii_lowercase();
            if self.in_ddl(&table)
                || (!self.ddl_tables.is_empty() && SCHEMA_TABLES.contains(&table.as_str()))
            {
                return OK;
            }
            if let Some(p1) = p1.filter(|p| !p.is_empty()) {
                if !self.grants.allows("read", p1) {
                    return self.deny(format!("read:{p1}"));
                }
            }
        } else if is_write(act) {
            let table = p1.unwrap_or("").to_ascii_lowercase();
            // SQLite writes its schema table only for a DDL action this
            // authorizer allows (writable_schema is a PRAGMA, always denied).
            if SCHEMA_TABLES.contains(&table.as_str()) {
                return OK;
            }
            let name = p1.unwrap_or("");
            if self.read_only {
                return self.deny(format!(
                    "write:{} (the calling statement is itself writing, so this call is \
                     read-only; call the procedure from SELECT or CALL)",
                    shown(p1)
                ));
            }
            if !self.in_ddl(&table) && !name.is_empty() && !self.grants.allows("write", name) {
                return self.deny(format!("write:{name}"));
            }
        } else if is_trigger(act) && is_create(act) {
            // A trigger runs with the rights of whoever writes its table
            // later: a procedure may not plant code that outlives its call.
            return self.deny("CREATE TRIGGER (procedures may not create triggers)".into());
        } else if act == action::REINDEX && !self.ddl_tables.is_empty() {
            // CREATE INDEX fills the index it created (p1 names the index).
        } else if is_ddl(act) {
            match ddl_table(act, p1, p2) {
                Some(t) if !t.is_empty() && !self.read_only && self.grants.allows("ddl", t) => {
                    self.ddl_tables.push(t.to_ascii_lowercase());
                }
                Some(t) => return self.deny(format!("ddl:{t}")),
                // As Python's f"ddl:{None}" says it.
                None => return self.deny("ddl:None".into()),
            }
        } else if let Some(what) = always_denied(act) {
            return self.deny(what.into());
        } else if act == action::FUNCTION {
            let name = p2.unwrap_or("").to_ascii_lowercase();
            if name == "load_extension" {
                return self.deny("load_extension".into());
            }
            if is_procedure(&name) && !self.grants.allows("call", &name) {
                return self.deny(format!("call:{name}"));
            }
        }
        OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(grants: &[&str], read_only: bool, act: i32, p1: &str, p2: &str) -> (i32, Vec<String>) {
        let grants = Arc::new(Grants::new(grants.iter().copied()));
        let mut a = StatementAuthorizer::new(grants, read_only);
        let code = a.authorize(act, Some(p1), Some(p2), |name| name == "proc");
        (code, a.denied().to_vec())
    }

    #[test]
    fn registry_access_names_the_engine_table() {
        let r = |act, p1, p2| registry_access(act, Some(p1), Some(p2));
        assert_eq!(
            r(action::READ, "_HeliosDB_versions", "x"),
            Some("_HeliosDB_versions")
        );
        assert_eq!(
            r(action::UPDATE, "_heliosdb_modules", "x"),
            Some("_heliosdb_modules")
        );
        assert_eq!(
            r(action::CREATE_INDEX, "i", "_heliosdb_versions"),
            Some("_heliosdb_versions")
        );
        assert_eq!(r(action::READ, "items", "x"), None);
        assert_eq!(r(action::FUNCTION, "", "_heliosdb_x"), None);
        assert_eq!(registry_access(action::READ, None, None), None);
    }

    #[test]
    fn reads_and_writes_need_their_grants() {
        assert_eq!(run(&["read:t"], false, action::READ, "T", "x").0, OK);
        assert_eq!(
            run(&[], false, action::READ, "t", "x"),
            (DENY, vec!["read:t".into()])
        );
        assert_eq!(run(&["read:*"], false, action::READ, "t", "x").0, OK);
        assert_eq!(
            run(&["read:*"], false, action::READ, "sqlite_stat1", "x").0,
            DENY
        );
        assert_eq!(
            run(&["read:*"], false, action::READ, "_heliosdb_versions", "x").0,
            DENY
        );
        assert_eq!(run(&["write:t"], false, action::INSERT, "t", "").0, OK);
        let (code, denied) = run(&["write:t"], true, action::INSERT, "t", "");
        assert_eq!(code, DENY);
        assert!(denied[0].contains("read-only"));
    }

    #[test]
    fn ddl_opens_its_table_and_the_schema_for_the_statement() {
        let grants = Arc::new(Grants::new(["ddl:t"]));
        let mut a = StatementAuthorizer::new(grants, false);
        let never = |_: &str| false;
        assert_eq!(
            a.authorize(action::ALTER_TABLE, Some("main"), Some("t"), never),
            OK
        );
        assert_eq!(
            a.authorize(action::READ, Some("sqlite_master"), None, never),
            OK
        );
        assert_eq!(a.authorize(action::UPDATE, Some("t"), None, never), OK);
        assert_eq!(a.authorize(action::READ, Some("t"), None, never), OK);
        assert_eq!(a.authorize(action::READ, Some("u"), None, never), DENY);
        // An index on another table is ddl of that table.
        assert_eq!(
            run(&["ddl:t"], false, action::CREATE_INDEX, "i", "u").0,
            DENY
        );
        assert_eq!(run(&["ddl:t"], false, action::CREATE_INDEX, "i", "t").0, OK);
        assert_eq!(
            run(&["ddl:t"], false, action::CREATE_TRIGGER, "g", "t").1,
            ["CREATE TRIGGER (procedures may not create triggers)"]
        );
        assert_eq!(run(&["ddl:t"], true, action::DROP_TABLE, "t", "").0, DENY);
    }

    #[test]
    fn always_denied_and_functions() {
        for act in [
            action::ATTACH,
            action::DETACH,
            action::PRAGMA,
            action::TRANSACTION,
            action::SAVEPOINT,
        ] {
            assert_eq!(run(&["read:*", "write:*"], false, act, "x", "y").0, DENY);
        }
        assert_eq!(
            run(&[], false, action::FUNCTION, "", "LOAD_EXTENSION").0,
            DENY
        );
        assert_eq!(
            run(&[], false, action::FUNCTION, "", "proc"),
            (DENY, vec!["call:proc".into()])
        );
        assert_eq!(
            run(&["call:proc"], false, action::FUNCTION, "", "Proc").0,
            OK
        );
        assert_eq!(run(&[], false, action::FUNCTION, "", "length").0, OK);
    }
}
