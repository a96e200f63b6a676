//! The REST side of the GitHub fake: repositories, issues and comments with Link pagination in
//! `/repositories/{id}/…` form, pull requests mixed into issue lists, renames answered with 301.

use axum::http::Uri;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::{FakeIssue, FakeRepo, Inner, Reply, DOCS};

fn query_map(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(qk, _)| qk == k).map(|(_, v)| v.as_str())
}

pub(super) fn rest(g: &mut Inner, uri: &Uri) -> Reply {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let q = query_map(uri);
    let repo_idx = |g: &Inner, o: &str, r: &str| {
        g.repos
            .iter()
            .position(|x| x.owner.eq_ignore_ascii_case(o) && x.name.eq_ignore_ascii_case(r))
    };
    let by_id = |g: &Inner, id: &str| g.repos.iter().position(|x| x.id.to_string() == id);
    if let ["repos", o, r, rest @ ..] = segs.as_slice() {
        let moved = g
            .renames
            .iter()
            .find(|(ro, rr, _)| ro.eq_ignore_ascii_case(o) && rr.eq_ignore_ascii_case(r));
        if let (None, Some((_, _, id))) = (repo_idx(g, o, r), moved) {
            let mut url = format!("{}/repositories/{id}", g.base);
            for part in rest {
                url.push('/');
                url.push_str(part);
            }
            if let Some(q) = uri.query() {
                url.push('?');
                url.push_str(q);
            }
            return Reply::json(
                301,
                json!({"message": "Moved Permanently", "url": url, "documentation_url": DOCS}),
            )
            .header("location", url);
        }
    }
    match segs.as_slice() {
        ["orgs", org, "repos"] => org_repos(g, org, &q),
        ["organizations", id, "repos"] => {
            let org = g
                .orgs
                .iter()
                .find(|(_, v)| v.to_string() == *id)
                .map(|(k, _)| k.clone());
            match org {
                Some(o) => org_repos(g, &o, &q),
                None => Reply::error(404, "Not Found", DOCS),
            }
        }
        ["repos", o, r, "issues"] => match repo_idx(g, o, r) {
            Some(i) => list_issues(g, i, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues"] => match by_id(g, id) {
            Some(i) => list_issues(g, i, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repos", o, r, "issues", n] => match repo_idx(g, o, r) {
            Some(i) => get_issue(g, i, n),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues", n] => match by_id(g, id) {
            Some(i) => get_issue(g, i, n),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repos", o, r, "issues", n, "comments"] => match repo_idx(g, o, r) {
            Some(i) => list_comments(g, i, n, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        ["repositories", id, "issues", n, "comments"] => match by_id(g, id) {
            Some(i) => list_comments(g, i, n, &q),
            None => Reply::error(404, "Not Found", DOCS),
        },
        _ => Reply::error(404, "Not Found", DOCS),
    }
}

/// Slices `items` by `page`/`per_page` (default 30, clamped to 100) and adds the Link header,
/// whose URLs use `link_path` and keep the other query parameters.
fn paginate(g: &Inner, items: Vec<Value>, q: &[(String, String)], link_path: &str) -> Reply {
    let per_page = param(q, "per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = param(q, "page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let slice: Vec<Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut reply = Reply::json(200, Value::Array(slice));
    if last > 1 {
        let link = |p: usize| {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in q.iter().filter(|(k, _)| k != "page") {
                ser.append_pair(k, v);
            }
            ser.append_pair("page", &p.to_string());
            format!("{}{link_path}?{}", g.base, ser.finish())
        };
        let mut rels = Vec::new();
        if page > 1 {
            rels.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
        }
        if page < last {
            rels.push(format!("<{}>; rel=\"next\"", link(page + 1)));
            rels.push(format!("<{}>; rel=\"last\"", link(last)));
        }
        if page > 1 {
            rels.push(format!("<{}>; rel=\"first\"", link(1)));
        }
        if !rels.is_empty() {
            reply = reply.header("link", rels.join(", "));
        }
    }
    reply
}

fn org_repos(g: &Inner, org: &str, q: &[(String, String)]) -> Reply {
    let Some(org_id) = g
        .orgs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(org))
        .map(|(_, v)| *v)
    else {
        return Reply::error(404, "Not Found", DOCS);
    };
    let items: Vec<Value> = g
        .repos
        .iter()
        .filter(|r| r.owner.eq_ignore_ascii_case(org))
        .map(|r| {
            json!({
                "id": r.id, "node_id": format!("R_{}", r.id), "name": r.name,
                "full_name": format!("{}/{}", r.owner, r.name),
                "owner": {"login": r.owner, "id": org_id, "type": "Organization"},
                "private": false, "fork": false, "archived": r.archived, "disabled": false,
                "html_url": format!("https://github.com/{}/{}", r.owner, r.name),
                "default_branch": "main", "has_issues": true,
                "open_issues_count": r.issues.iter().filter(|i| i.state == "open").count(),
                "created_at": "2020-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                "pushed_at": "2024-01-01T00:00:00Z"
            })
        })
        .collect();
    paginate(g, items, q, &format!("/organizations/{org_id}/repos"))
}

fn simple_user(login: &str) -> Value {
    let id = login
        .bytes()
        .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64))
        % 1_000_000;
    json!({
        "login": login, "id": id, "node_id": format!("U_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": format!("https://api.github.com/users/{login}"), "html_url": format!("https://github.com/{login}"),
        "type": "User", "site_admin": false
    })
}

pub(super) fn user_id(login: &str) -> u64 {
    simple_user(login)["id"].as_u64().unwrap_or(0)
}

pub(super) fn label_json(name: &str) -> Value {
    json!({"id": name.len() as u64 * 1000, "node_id": format!("LA_{name}"), "url": format!("https://api.github.com/labels/{name}"),
           "name": name, "color": "d73a4a", "default": false,
           "description": if name == "bug" { Value::String("Something isn't working".into()) } else { Value::Null }})
}

fn rest_issue(g: &Inner, r: &FakeRepo, i: &FakeIssue) -> Value {
    let api = format!("{}/repos/{}/{}", g.base, r.owner, r.name);
    let mut v = json!({
        "url": format!("{api}/issues/{}", i.number),
        "repository_url": api,
        "labels_url": format!("{api}/issues/{}/labels{{/name}}", i.number),
        "comments_url": format!("{api}/issues/{}/comments", i.number),
        "events_url": format!("{api}/issues/{}/events", i.number),
        "html_url": format!("https://github.com/{}/{}/issues/{}", r.owner, r.name, i.number),
        "id": i.id, "node_id": format!("I_{}", i.id), "number": i.number, "title": i.title,
        "user": i.author.as_deref().map_or(Value::Null, simple_user),
        "labels": i.labels.iter().map(|l| label_json(l)).collect::<Vec<_>>(),
        "state": i.state, "locked": false, "assignee": null, "assignees": [], "milestone": null,
        "comments": i.comments.len(), "created_at": i.created_at, "updated_at": i.updated_at,
        "closed_at": i.closed_at, "author_association": "MEMBER", "active_lock_reason": null,
        "body": i.body, "state_reason": if i.state == "closed" { json!("completed") } else { Value::Null },
        "performed_via_github_app": null,
    });
    if i.pull_request {
        v["pull_request"] = json!({
            "url": format!("{api}/pulls/{}", i.number),
            "html_url": format!("https://github.com/{}/{}/pull/{}", r.owner, r.name, i.number),
            "diff_url": null, "patch_url": null, "merged_at": null
        });
    }
    v
}

fn list_issues(g: &Inner, idx: usize, q: &[(String, String)]) -> Reply {
    let r = &g.repos[idx];
    let state = param(q, "state").unwrap_or("open");
    if !matches!(state, "open" | "closed" | "all") {
        return Reply::json(
            422,
            json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "state", "code": "invalid"}], "documentation_url": DOCS, "status": "422"}),
        );
    }
    let since = match param(q, "since").map(DateTime::parse_from_rfc3339) {
        Some(Err(_)) => {
            return Reply::json(
                422,
                json!({"message": "Validation Failed", "errors": [{"resource": "Issue", "field": "since", "code": "invalid"}], "documentation_url": DOCS, "status": "422"}),
            )
        }
        Some(Ok(t)) => Some(t.to_utc()),
        None => None,
    };
    let labels: Vec<&str> = param(q, "labels")
        .map(|l| l.split(',').collect())
        .unwrap_or_default();
    let mut items: Vec<&FakeIssue> = r
        .issues
        .iter()
        .filter(|i| !i.deleted && i.moved_to.is_none())
        .filter(|i| state == "all" || i.state == state)
        .filter(|i| since.is_none_or(|s| parse_ts(&i.updated_at) >= s))
        .filter(|i| labels.iter().all(|l| i.labels.iter().any(|il| il == l)))
        .collect();
    let by_updated = param(q, "sort") == Some("updated");
    items.sort_by(|a, b| {
        let k = if by_updated {
            parse_ts(&a.updated_at).cmp(&parse_ts(&b.updated_at))
        } else {
            a.number.cmp(&b.number)
        };
        k.then(a.number.cmp(&b.number))
    });
    if param(q, "direction") != Some("asc") {
        items.reverse();
    }
    let values = items.into_iter().map(|i| rest_issue(g, r, i)).collect();
    paginate(g, values, q, &format!("/repositories/{}/issues", r.id))
}

/// The issue of `r` whose number is `n` (the path segment), if any.
fn issue_numbered<'a>(r: &'a FakeRepo, n: &str) -> Option<&'a FakeIssue> {
    let n = n.parse::<u64>().ok()?;
    r.issues.iter().find(|i| i.number == n)
}

fn get_issue(g: &Inner, idx: usize, n: &str) -> Reply {
    let r = &g.repos[idx];
    let Some(i) = issue_numbered(r, n) else {
        return Reply::error(404, "Not Found", DOCS);
    };
    if i.deleted {
        return Reply::error(410, "This issue was deleted", DOCS);
    }
    if let Some((repo, number)) = &i.moved_to {
        let target = g
            .repos
            .iter()
            .find(|x| x.owner == r.owner && x.name == *repo)
            .map(|x| format!("{}/repositories/{}/issues/{number}", g.base, x.id));
        if let Some(url) = target {
            return Reply::json(
                301,
                json!({"message": "Moved Permanently", "url": url, "documentation_url": DOCS}),
            )
            .header("location", url);
        }
    }
    Reply::json(200, rest_issue(g, r, i))
}

fn list_comments(g: &Inner, idx: usize, n: &str, q: &[(String, String)]) -> Reply {
    let r = &g.repos[idx];
    let Some(i) = issue_numbered(r, n) else {
        return Reply::error(404, "Not Found", DOCS);
    };
    let api = format!("{}/repos/{}/{}", g.base, r.owner, r.name);
    let items = i
        .comments
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "node_id": format!("IC_{}", c.id),
                "url": format!("{api}/issues/comments/{}", c.id),
                "html_url": format!("https://github.com/{}/{}/issues/{}#issuecomment-{}", r.owner, r.name, i.number, c.id),
                "issue_url": format!("{api}/issues/{}", i.number),
                "body": c.body, "user": c.author.as_deref().map_or(Value::Null, simple_user),
                "created_at": c.created_at, "updated_at": c.updated_at,
                "author_association": "CONTRIBUTOR", "performed_via_github_app": null
            })
        })
        .collect();
    paginate(
        g,
        items,
        q,
        &format!("/repositories/{}/issues/{}/comments", r.id, i.number),
    )
}

pub(super) fn parse_ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.to_utc())
        .unwrap_or_default()
}
