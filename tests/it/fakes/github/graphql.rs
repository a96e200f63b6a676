//! The GraphQL side of the GitHub fake: the issues and comments queries our client sends, with
//! cursors, `first` limits, point costs, and errors answered with HTTP 200.

use chrono::{DateTime, SecondsFormat};
use serde_json::{json, Value};

use super::rest::{label_json, parse_ts, user_id};
use super::selection;
use super::{FakeIssue, Inner, Reply};

fn gql_error(message: String) -> Reply {
    Reply::json(
        200,
        json!({"errors": [{"message": message, "locations": [{"line": 1, "column": 1}]}]}),
    )
}

/// Answers the two query shapes `collect` sends, validating what GitHub validates for them,
/// with only the fields the query selects.
pub(super) fn graphql(g: &Inner, body: &[u8]) -> (Reply, u64) {
    let (mut reply, cost) = answer(g, body);
    let query = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("query").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    let data = reply
        .body
        .as_ref()
        .and_then(|b| b.get("data"))
        .filter(|d| d.is_object())
        .cloned();
    if let Some(data) = data {
        let pruned =
            selection::parse(&query).and_then(|sel| selection::prune(&data, &sel, "Query"));
        match pruned {
            Ok(d) => {
                if let Some(b) = reply.body.as_mut() {
                    b["data"] = d;
                }
            }
            Err(e) => return (gql_error(e), 0),
        }
    }
    (reply, cost)
}

fn answer(g: &Inner, body: &[u8]) -> (Reply, u64) {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return (
            Reply::error(
                400,
                "Problems parsing JSON",
                "https://docs.github.com/graphql",
            ),
            0,
        );
    };
    let Some(query) = req.get("query").and_then(Value::as_str) else {
        return (
            gql_error("A query attribute must be specified and must be a string.".into()),
            0,
        );
    };
    let vars = req.get("variables").cloned().unwrap_or(json!({}));
    // `first` over 100 (literal or variable) is refused.
    let literal_firsts = query
        .match_indices("first:")
        .filter_map(|(i, _)| {
            let rest = query[i + 6..].trim_start();
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<u64>().ok()
        })
        .collect::<Vec<_>>();
    // The `issues` connection's `first`: its variable, or the literal in the query.
    let var_first = vars.get("first").and_then(Value::as_u64).or_else(|| {
        let rest = &query[query.find("issues(")? + 7..];
        let rest = rest[rest.find("first:")? + 6..].trim_start();
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    for f in literal_firsts.iter().copied().chain(var_first) {
        if f > 100 {
            return (
                gql_error(format!("Requesting {f} records on the `issues` connection exceeds the `first` limit of 100 records.")),
                0,
            );
        }
    }
    // GitHub's default order of a repository's issues: oldest first.
    let (order_field, descending) = match selection::order_by(query) {
        None => ("CREATED_AT".to_string(), false),
        Some((field, direction)) => {
            let known_field = matches!(field.as_str(), "CREATED_AT" | "UPDATED_AT" | "COMMENTS");
            if !known_field || !matches!(direction.as_str(), "ASC" | "DESC") {
                return (
                    gql_error(format!("Argument 'orderBy' on Field 'issues' has an invalid value ({{field: {field}, direction: {direction}}}). Expected type 'IssueOrder'.")),
                    0,
                );
            }
            (field, direction == "DESC")
        }
    };
    let owner = vars.get("owner").and_then(Value::as_str);
    let name = vars.get("name").and_then(Value::as_str);
    let (Some(owner), Some(name)) = (owner, name) else {
        return (
            gql_error("Variable $owner of type String! was provided invalid value".into()),
            0,
        );
    };
    let renamed_id = g
        .renames
        .iter()
        .find(|(o, n, _)| o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name))
        .map(|(_, _, id)| *id);
    let repo = g.repos.iter().find(|r| {
        (r.owner.eq_ignore_ascii_case(owner) && r.name.eq_ignore_ascii_case(name))
            || Some(r.id) == renamed_id
    });
    let cost_of = |first: u64| (((1 + 2 * first) as f64 / 100.0).round() as u64).max(1);
    let kind = if query.contains("issue(number:") {
        "comments"
    } else if query.contains("issues(") {
        "issues"
    } else {
        return (gql_error("fake GitHub: unsupported query".into()), 0);
    };
    let cost = if kind == "issues" {
        cost_of(var_first.unwrap_or(100))
    } else {
        1
    };
    let rate = json!({"cost": cost, "remaining": g.graphql_limit.saturating_sub(g.graphql_used + cost),
                      "resetAt": DateTime::from_timestamp(g.reset, 0).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Secs, true)});
    let Some(repo) = repo else {
        return (
            Reply::json(
                200,
                json!({
                    "data": {"repository": null, "rateLimit": rate},
                    "errors": [{"type": "NOT_FOUND", "path": ["repository"], "locations": [{"line": 2, "column": 3}],
                                "message": format!("Could not resolve to a Repository with the name '{owner}/{name}'.")}]
                }),
            ),
            1,
        );
    };
    let cursor = vars.get("cursor").and_then(Value::as_str);
    let offset = match cursor.map(decode_cursor) {
        None => 0,
        Some(Some(o)) => o,
        Some(None) => {
            return (
                gql_error(format!(
                    "`{}` does not appear to be a valid cursor.",
                    cursor.unwrap_or("")
                )),
                0,
            )
        }
    };
    if kind == "comments" {
        let number = vars.get("number").and_then(Value::as_u64);
        let issue = number.and_then(|n| {
            repo.issues
                .iter()
                .find(|i| i.number == n && !i.pull_request)
        });
        let data = match issue {
            None => json!({"repository": {"issue": null}, "rateLimit": rate}),
            Some(i) => {
                json!({"repository": {"issue": {"comments": comment_page(i, offset)}}, "rateLimit": rate})
            }
        };
        return (Reply::json(200, json!({"data": data})), cost);
    }
    let first = var_first.unwrap_or(100) as usize;
    let filter = vars.get("filter").cloned().unwrap_or(Value::Null);
    let since =
        match filter
            .get("since")
            .and_then(Value::as_str)
            .map(DateTime::parse_from_rfc3339)
        {
            Some(Err(_)) => return (
                gql_error(
                    "Variable $filter of type IssueFilters was provided invalid value for since"
                        .into(),
                ),
                0,
            ),
            Some(Ok(t)) => Some(t.to_utc()),
            None => None,
        };
    let states: Vec<String> = strings(filter.get("states"));
    if states.iter().any(|s| s != "OPEN" && s != "CLOSED") {
        return (
            gql_error(
                "Variable $filter of type IssueFilters was provided invalid value for states"
                    .into(),
            ),
            0,
        );
    }
    let labels: Vec<String> = strings(filter.get("labels"));
    let mut matching: Vec<&FakeIssue> = repo
        .issues
        .iter()
        .filter(|i| !i.pull_request && !i.deleted && i.moved_to.is_none())
        .filter(|i| states.is_empty() || states.contains(&i.state.to_ascii_uppercase()))
        .filter(|i| since.is_none_or(|s| parse_ts(&i.updated_at) >= s))
        .filter(|i| labels.is_empty() || i.labels.iter().any(|l| labels.contains(l)))
        .collect();
    matching.sort_by(|a, b| {
        let by = match order_field.as_str() {
            "UPDATED_AT" => parse_ts(&a.updated_at).cmp(&parse_ts(&b.updated_at)),
            "COMMENTS" => a.comments.len().cmp(&b.comments.len()),
            _ => parse_ts(&a.created_at).cmp(&parse_ts(&b.created_at)),
        }
        .then(a.number.cmp(&b.number));
        if descending {
            by.reverse()
        } else {
            by
        }
    });
    let total = matching.len();
    let nodes: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(first)
        .map(|i| issue_node(i, &repo.owner, &repo.name))
        .collect();
    let end = offset + nodes.len();
    let data = json!({
        "repository": {"nameWithOwner": format!("{}/{}", repo.owner, repo.name), "issues": {
            "totalCount": total,
            "pageInfo": {"hasNextPage": end < total, "endCursor": if nodes.is_empty() { Value::Null } else { json!(encode_cursor(end)) }},
            "nodes": nodes
        }},
        "rateLimit": rate
    });
    (Reply::json(200, json!({"data": data})), cost)
}

fn encode_cursor(offset: usize) -> String {
    format!("Y3Vyc29yOnYyOpK5{offset:08}")
}

fn decode_cursor(c: &str) -> Option<usize> {
    c.strip_prefix("Y3Vyc29yOnYyOpK5")?.parse().ok()
}

fn actor(login: &Option<String>) -> Value {
    match login {
        Some(l) => json!({"login": l, "databaseId": user_id(l)}),
        None => Value::Null,
    }
}

fn comment_page(i: &FakeIssue, offset: usize) -> Value {
    let nodes: Vec<Value> = i
        .comments
        .iter()
        .skip(offset)
        .take(100)
        .map(|c| json!({"databaseId": c.id, "author": actor(&c.author), "body": c.body, "createdAt": c.created_at, "updatedAt": c.updated_at}))
        .collect();
    let end = offset + nodes.len();
    json!({
        "totalCount": i.comments.len(),
        "pageInfo": {"hasNextPage": end < i.comments.len(), "endCursor": if nodes.is_empty() { Value::Null } else { json!(encode_cursor(end)) }},
        "nodes": nodes
    })
}

fn issue_node(i: &FakeIssue, owner: &str, name: &str) -> Value {
    json!({
        "databaseId": i.id, "number": i.number, "title": i.title,
        // GraphQL's body is `String!`: "" when empty.
        "body": i.body.clone().unwrap_or_default(),
        "state": i.state.to_ascii_uppercase(),
        "url": format!("https://github.com/{owner}/{name}/issues/{}", i.number),
        "createdAt": i.created_at, "updatedAt": i.updated_at, "closedAt": i.closed_at,
        "author": actor(&i.author),
        "labels": {"totalCount": i.labels.len(), "nodes": i.labels.iter().map(|l| {
            let v = label_json(l);
            json!({"name": v["name"], "color": v["color"], "description": v["description"]})
        }).collect::<Vec<_>>()},
        "comments": comment_page(i, 0),
    })
}

/// The strings in a JSON array (none when `v` is not one).
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
