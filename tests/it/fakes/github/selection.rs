//! The GitHub fake answers only what a GraphQL query selects, like GitHub: a small reader of
//! selection sets (fields, aliases, arguments skipped, inline fragments merged) and the pruning
//! of a full answer down to them. A field the fake does not know is an error, as GitHub's schema
//! validation makes it one.

use serde_json::{Map, Value};

/// The fields selected at one level, in order: (response key, field name, sub-selection).
#[derive(Debug, Default, Clone)]
pub struct Selection {
    pub fields: Vec<(String, String, Selection)>,
}

/// The selection set of the query's (single) operation.
pub fn parse(query: &str) -> Result<Selection, String> {
    let bytes = query.as_bytes();
    let mut i = 0;
    let mut parens = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => parens += 1,
            b')' => parens = parens.saturating_sub(1),
            b'{' if parens == 0 => break,
            _ => {}
        }
        i += 1;
    }
    let mut p = Parser { s: bytes, i };
    p.set()
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.s.get(self.i) {
            if b.is_ascii_whitespace() || b == b',' {
                self.i += 1;
            } else if b == b'#' {
                while self.s.get(self.i).is_some_and(|b| *b != b'\n') {
                    self.i += 1;
                }
            } else {
                return Some(b);
            }
        }
        None
    }

    fn name(&mut self) -> Result<String, String> {
        self.peek();
        let start = self.i;
        while self
            .s
            .get(self.i)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!("Parse error at byte {start}: expected a name"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// Skips a balanced `( … )` (strings and nested braces inside it included).
    fn skip_args(&mut self) -> Result<(), String> {
        let mut depth = 0usize;
        let mut in_str = false;
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            match (in_str, b) {
                (true, b'\\') => self.i += 1,
                (true, b'"') => in_str = false,
                (true, _) => {}
                (false, b'"') => in_str = true,
                (false, b'(') => depth += 1,
                (false, b')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ => {}
            }
        }
        Err("Parse error: unbalanced parentheses".into())
    }

    fn set(&mut self) -> Result<Selection, String> {
        if self.peek() != Some(b'{') {
            return Err("Parse error: expected '{'".into());
        }
        self.i += 1;
        let mut out = Selection::default();
        loop {
            match self.peek() {
                None => return Err("Parse error: unexpected end of query".into()),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'.') => {
                    // `... on Type { … }`: merged (the fake's actors are all users).
                    self.i += 3;
                    let on = self.name()?;
                    if on != "on" {
                        return Err("fake GitHub: only inline fragments are supported".into());
                    }
                    self.name()?;
                    let inner = self.set()?;
                    for f in inner.fields {
                        if !out.fields.iter().any(|(k, _, _)| *k == f.0) {
                            out.fields.push(f);
                        }
                    }
                }
                Some(_) => {
                    let mut key = self.name()?;
                    let mut field = key.clone();
                    if self.peek() == Some(b':') {
                        self.i += 1;
                        field = self.name()?;
                    }
                    if self.peek() == Some(b'(') {
                        self.skip_args()?;
                    }
                    let sub = if self.peek() == Some(b'{') {
                        self.set()?
                    } else {
                        Selection::default()
                    };
                    if key.is_empty() {
                        key.clone_from(&field);
                    }
                    out.fields.push((key, field, sub));
                }
            }
        }
    }
}

/// `full` cut down to `sel`; a selected field missing from `full` does not exist on its type.
pub fn prune(full: &Value, sel: &Selection, ty: &str) -> Result<Value, String> {
    if sel.fields.is_empty() {
        return Ok(full.clone());
    }
    match full {
        Value::Array(items) => items
            .iter()
            .map(|i| prune(i, sel, ty))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(m) => {
            let mut out = Map::new();
            for (key, field, sub) in &sel.fields {
                match m.get(field) {
                    Some(v) => {
                        out.insert(key.clone(), prune(v, sub, field)?);
                    }
                    None => {
                        return Err(format!("Field '{field}' doesn't exist on type '{ty}'"));
                    }
                }
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// `orderBy: {field: F, direction: D}` of the `issues` connection, if the query gives one.
pub fn order_by(query: &str) -> Option<(String, String)> {
    let i = query.find("orderBy:")?;
    let clause: String = query[i..].chars().take_while(|c| *c != '}').collect();
    let value = |name: &str| {
        let j = clause.find(&format!("{name}:"))?;
        let v: String = clause[j + name.len() + 1..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        Some(v)
    };
    Some((
        value("field").unwrap_or_default(),
        value("direction").unwrap_or_default(),
    ))
}
