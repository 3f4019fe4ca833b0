//! Output: aligned tables for people, JSON and YAML for programs.
//!
//! Every command maps the API's messages into small serde structs of its
//! own (the generated protobuf types have no serde), renders them as a
//! table through [`Render`], and serializes the same structs otherwise, so
//! table and JSON never disagree.

use std::fmt::{self, Write as _};

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde::Serialize;

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns.
    #[default]
    Table,
    /// JSON (one document; `observe --follow` prints one flow per line).
    Json,
    /// YAML (`observe --follow` prints one document per flow).
    Yaml,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    pub format: Format,
}

/// What a command prints as a table.
pub trait Render: Serialize {
    fn render(&self, out: &mut String);
}

/// Prints `value` in `format` on stdout.
pub fn emit<T: Render>(format: Format, value: &T) -> Result<()> {
    print!("{}", to_text(format, value)?);
    Ok(())
}

pub fn to_text<T: Render>(format: Format, value: &T) -> Result<String> {
    Ok(match format {
        Format::Table => {
            let mut out = String::new();
            value.render(&mut out);
            out
        }
        Format::Json => serde_json::to_string_pretty(value)? + "\n",
        Format::Yaml => serde_yaml::to_string(value)?,
    })
}

/// A list renders as the table of its rows (`Vec<Row>` where Row: [`Row`]).
impl<R: Row + Serialize> Render for Vec<R> {
    fn render(&self, out: &mut String) {
        let mut table = Table::new(R::HEADERS);
        for row in self {
            table.row(row.cells());
        }
        write!(out, "{table}").expect("writing to a String");
    }
}

/// One row of a list table.
pub trait Row {
    const HEADERS: &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded so lines carry no trailing blanks.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Rows with no header line (key/value listings).
    pub fn bare() -> Self {
        Self::new(&[])
    }

    fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                let len = cell.chars().count();
                match widths.get_mut(i) {
                    Some(w) => *w = (*w).max(len),
                    None => widths.push(len),
                }
            }
        }
        widths
    }
}

fn write_line(f: &mut fmt::Formatter<'_>, cells: &[String], widths: &[usize]) -> fmt::Result {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            write!(line, "{cell:<width$}  ", width = widths[i])?;
        }
    }
    writeln!(f, "{}", line.trim_end())
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        if !self.headers.is_empty() {
            write_line(f, &self.headers, &widths)?;
        }
        for row in &self.rows {
            write_line(f, row, &widths)?;
        }
        Ok(())
    }
}

/// A cell for an optional value: "-" when empty.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

/// Labels as one cell: "k8s:app=web,k8s:tier=front", "-" for none.
pub fn labels_cell(labels: &[String]) -> String {
    or_dash(&labels.join(","))
}

/// `Some(value)` unless empty: absent fields are `null` in JSON.
pub fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_blanks() {
        let mut table = Table::new(&["NAME", "IP", "LABELS"]);
        table.row(vec!["a".into(), "10.244.1.2".into(), String::new()]);
        table.row(vec!["longer".into(), "10.0.0.1".into(), "k8s:app=a".into()]);
        assert_eq!(
            table.to_string(),
            "NAME    IP          LABELS\n\
             a       10.244.1.2\n\
             longer  10.0.0.1    k8s:app=a\n"
        );
    }
}
