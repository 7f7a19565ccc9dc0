//! The SQL of the documentation pages, run as a reader runs it.

use std::path::Path;

use serde_json::{Value, json};

/// A file of this repository.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Every ```sql block of a Markdown page: (the `##` section, the heading just above, the SQL).
pub fn sql_blocks(page: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    let mut out = Vec::new();
    for line in page.lines() {
        if let Some(sql) = block.as_mut() {
            if line.trim_start().starts_with("```") {
                let sql = block.take().unwrap_or_default();
                out.push((section.clone(), heading.clone(), sql));
            } else {
                sql.push_str(line);
                sql.push('\n');
            }
        } else if line.trim() == "```sql" {
            block = Some(String::new());
        } else if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
            heading = section.clone();
        } else if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_string();
        }
    }
    out
}

/// A ```sql block as a reader runs it in the directory holding `lake/`: in the DuckDB CLI's
/// session style, `.read <file>` (a file of this repository) is read in; a block that does not
/// load the views itself runs after `SET VARIABLE lake = 'lake'` and the views file, as the
/// pages tell readers to load them first.
pub fn as_run(sql: &str) -> String {
    let mut loads_views = false;
    let lines: Vec<String> = sql
        .lines()
        .map(|l| match l.trim().strip_prefix(".read ") {
            Some(file) => {
                loads_views = true;
                read(file.trim())
            }
            None => l.to_string(),
        })
        .collect();
    let sql = lines.join("\n");
    if loads_views {
        sql
    } else {
        format!(
            "SET VARIABLE lake = 'lake';\n{}\n{sql}",
            read("schemas/duckdb_views.sql")
        )
    }
}

/// Whether `rows` are a result a reader can see something in: at least one row, and not only
/// zeros and nulls (a `count(*)` of nothing is one row too).
pub fn has_rows(rows: &[Vec<Value>]) -> bool {
    let something = |v: &Value| !(v.is_null() || v == &json!(0) || v == &json!(""));
    rows.iter().any(|r| r.iter().any(something))
}
