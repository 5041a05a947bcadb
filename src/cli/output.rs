//! Output helpers shared by the command groups: aligned tables and Docker-style JSON.

use serde::Serialize;

/// Renders rows as columns separated by at least three spaces (Docker's tabwriter look).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}", width = w + 3));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// JSON with four-space indentation, as `docker inspect` prints.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8(buf)?)
}

/// Capitalises the first letter (`ready` -> `Ready`).
pub fn title(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_with_three_spaces() {
        let t = table(
            &["ID", "HOSTNAME"],
            &[
                vec!["abc *".into(), "h1".into()],
                vec!["a".into(), "host2".into()],
            ],
        );
        assert_eq!(t, "ID      HOSTNAME\nabc *   h1\na       host2\n");
    }

    #[test]
    fn title_case() {
        assert_eq!(title("ready"), "Ready");
        assert_eq!(title(""), "");
    }
}
