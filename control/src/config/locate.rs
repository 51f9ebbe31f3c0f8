//! Where a key is in the file: key paths (`vip[0].real[1].port`), their
//! lines, and the list of errors that carries both.

use std::fmt;

use super::ConfigError;

/// One step of a key path.
#[derive(Debug, Clone)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A key path such as `vip[0].real[1].port`.
#[derive(Debug, Clone, Default)]
pub(super) struct KeyPath(Vec<Seg>);

impl KeyPath {
    pub(super) fn key(&self, k: &str) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub(super) fn idx(&self, i: usize) -> KeyPath {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for s in &self.0 {
            match s {
                Seg::Key(k) => {
                    if !first {
                        write!(f, ".")?;
                    }
                    write!(f, "{k}")?;
                }
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// Finds the line of a key path in the source text.
pub(super) struct Locator {
    pub(super) doc: Option<toml_edit::ImDocument<String>>,
    pub(super) text: String,
}

impl Locator {
    pub(super) fn new(text: &str) -> Locator {
        Locator {
            doc: toml_edit::ImDocument::parse(text.to_string()).ok(),
            text: text.to_string(),
        }
    }

    pub(super) fn line_of_offset(&self, off: usize) -> usize {
        self.text.as_bytes()[..off.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line of the deepest part of `path` present in the file.
    pub(super) fn line(&self, path: &KeyPath) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<std::ops::Range<usize>> = None;
        let mut item: Option<&toml_edit::Item> = None;
        let mut table: Option<&dyn toml_edit::TableLike> = Some(doc.as_table());
        for seg in &path.0 {
            match seg {
                Seg::Key(k) => {
                    let Some((key, it)) = table.and_then(|t| t.get_key_value(k)) else {
                        break;
                    };
                    if let Some(s) = key.span() {
                        best = Some(s);
                    }
                    item = Some(it);
                    table = it.as_table_like();
                }
                Seg::Index(i) => match item {
                    Some(toml_edit::Item::ArrayOfTables(a)) => {
                        let Some(t) = a.get(*i) else { break };
                        if let Some(s) = t.span() {
                            best = Some(s);
                        }
                        table = Some(t);
                        item = None;
                    }
                    Some(toml_edit::Item::Value(toml_edit::Value::Array(a))) => {
                        let Some(v) = a.get(*i) else { break };
                        if let Some(s) = v.span() {
                            best = Some(s);
                        }
                        table = v.as_inline_table().map(|t| t as &dyn toml_edit::TableLike);
                        item = None;
                    }
                    _ => break,
                },
            }
        }
        best.map(|r| self.line_of_offset(r.start))
    }
}

/// Collects errors with their places.
pub(super) struct Errors<'a> {
    pub(super) file: &'a str,
    pub(super) loc: &'a Locator,
    pub(super) list: Vec<ConfigError>,
}

impl Errors<'_> {
    pub(super) fn at(&mut self, path: &KeyPath, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.file.to_string(),
            line: self.loc.line(path),
            key: path.to_string(),
            message: message.into(),
        });
    }
}
