//! `query sql | alias | list`: user SQL and named queries on a read-only connection.

use serde_json::json;

use crate::cli::QueryCommand;
use crate::commands::Ctx;
use crate::error::{user, ExitStatus};
use crate::printer::Table;

/// A named query. `sql_with_ai`, when set, replaces `sql` once `ai_results` has rows.
pub struct Alias {
    pub name: &'static str,
    pub description: &'static str,
    pub sql: &'static str,
    pub sql_with_ai: Option<&'static str>,
}

pub const ALIASES: &[Alias] = &[
    Alias {
        name: "open_issues",
        description: "Open issues, most recently updated first",
        sql: "SELECT org, repo, number, title, author, labels_count AS labels, \
              comments_count AS comments, created_at, updated_at \
              FROM issues WHERE state = 'open' ORDER BY updated_at DESC NULLS LAST, id",
        sql_with_ai: None,
    },
    Alias {
        name: "label_summary",
        description: "Issues per label (with AI recommendation counts once results exist)",
        sql: "SELECT l.name AS label, count(*) AS issues, \
              count(*) FILTER (WHERE i.state = 'open') AS open, \
              count(*) FILTER (WHERE i.state = 'closed') AS closed \
              FROM labels l JOIN issues i ON i.id = l.issue_id \
              GROUP BY l.name ORDER BY issues DESC, label",
        sql_with_ai: Some(
            "WITH cur AS (SELECT l.name AS label, count(*) AS issues, \
                 count(*) FILTER (WHERE i.state = 'open') AS open, \
                 count(*) FILTER (WHERE i.state = 'closed') AS closed \
                 FROM labels l JOIN issues i ON i.id = l.issue_id GROUP BY l.name), \
             ai AS (SELECT value AS label, count(*) AS ai_recommended, \
                 round(avg(confidence), 3) AS ai_avg_confidence \
                 FROM ai_recommendations WHERE kind = 'label' GROUP BY value) \
             SELECT coalesce(cur.label, ai.label) AS label, coalesce(cur.issues, 0) AS issues, \
                 coalesce(cur.open, 0) AS open, coalesce(cur.closed, 0) AS closed, \
                 coalesce(ai.ai_recommended, 0) AS ai_recommended, ai.ai_avg_confidence \
             FROM cur FULL OUTER JOIN ai ON cur.label = ai.label \
             ORDER BY issues DESC, ai_recommended DESC, label",
        ),
    },
    Alias {
        name: "repo_summary",
        description: "Issues, open/closed, comments and AI coverage per repository",
        sql: "SELECT i.org, i.repo, count(*) AS issues, \
              count(*) FILTER (WHERE i.state = 'open') AS open, \
              count(*) FILTER (WHERE i.state = 'closed') AS closed, \
              sum(i.comments_count)::BIGINT AS comments, \
              count(DISTINCT r.issue_id) AS with_ai_results, max(i.updated_at) AS last_updated \
              FROM issues i LEFT JOIN ai_results r ON r.issue_id = i.id \
              GROUP BY i.org, i.repo ORDER BY issues DESC, i.org, i.repo",
        sql_with_ai: None,
    },
    Alias {
        name: "unlabeled_issues",
        description: "Open issues that carry no label",
        sql: "SELECT org, repo, number, title, created_at FROM issues \
              WHERE state = 'open' AND labels_count = 0 ORDER BY created_at DESC NULLS LAST, id",
        sql_with_ai: None,
    },
    Alias {
        name: "ai_summary",
        description: "AI results per processor, model and mode",
        sql: "SELECT processor, model, mode, count(*) AS results, \
              round(avg(confidence), 3) AS avg_confidence, \
              sum(prompt_tokens + completion_tokens)::BIGINT AS tokens, \
              round(sum(cost_usd), 4) AS cost_usd, max(created_at) AS latest \
              FROM ai_results GROUP BY ALL ORDER BY processor, model, mode",
        sql_with_ai: None,
    },
];

pub fn run(ctx: &Ctx, q: QueryCommand) -> anyhow::Result<ExitStatus> {
    match q {
        QueryCommand::Sql { sql, limit } => sql_cmd(ctx, &sql, limit),
        QueryCommand::Alias { name, limit } => alias(ctx, &name, limit),
        QueryCommand::List => list(ctx),
    }?;
    Ok(ExitStatus::Success)
}

fn sql_cmd(ctx: &Ctx, sql: &str, limit: Option<usize>) -> anyhow::Result<()> {
    if sql.trim().is_empty() {
        return Err(user("the SQL statement is empty"));
    }
    let db = ctx.read_only_db()?;
    let table = db.query(sql, limit)?;
    print_rows(ctx, &table)
}

fn alias(ctx: &Ctx, name: &str, limit: Option<usize>) -> anyhow::Result<()> {
    let Some(a) = ALIASES.iter().find(|a| a.name == name) else {
        let known: Vec<&str> = ALIASES.iter().map(|a| a.name).collect();
        return Err(user(format!(
            "unknown alias {name:?}; known aliases: {}",
            known.join(", ")
        )));
    };
    let db = ctx.read_only_db()?;
    let sql = match a.sql_with_ai {
        Some(with_ai) if db.has_rows("ai_results")? => with_ai,
        _ => a.sql,
    };
    let table = db.query(sql, limit)?;
    print_rows(ctx, &table)
}

fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut t = Table::new(["name", "description", "sql"]);
    for a in ALIASES {
        t.push(vec![json!(a.name), json!(a.description), json!(a.sql)]);
    }
    ctx.printer.table(&t)?;
    Ok(())
}

fn print_rows(ctx: &Ctx, table: &Table) -> anyhow::Result<()> {
    ctx.printer.table(table)?;
    ctx.printer.note(&format!(
        "({} row{})",
        table.rows.len(),
        if table.rows.len() == 1 { "" } else { "s" }
    ));
    Ok(())
}
