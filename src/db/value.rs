//! Conversion of DuckDB values to typed JSON values for the printer.

use chrono::{DateTime, NaiveDate, NaiveTime};
use duckdb::types::{TimeUnit, Value};
use serde_json::{json, Number, Value as Json};

pub fn to_json(v: Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(b),
        Value::TinyInt(i) => json!(i),
        Value::SmallInt(i) => json!(i),
        Value::Int(i) => json!(i),
        Value::BigInt(i) => json!(i),
        Value::UTinyInt(i) => json!(i),
        Value::USmallInt(i) => json!(i),
        Value::UInt(i) => json!(i),
        Value::UBigInt(i) => json!(i),
        // Beyond 64 bits JSON numbers lose precision in most readers: keep digits as a string.
        Value::HugeInt(i) => i64::try_from(i).map_or_else(|_| json!(i.to_string()), |v| json!(v)),
        Value::UHugeInt(i) => u64::try_from(i).map_or_else(|_| json!(i.to_string()), |v| json!(v)),
        Value::Float(f) => float(f64::from(f)),
        Value::Double(f) => float(f),
        Value::Decimal(d) => {
            let s = d.to_string();
            s.parse::<f64>().map_or(Json::String(s), float)
        }
        Value::Timestamp(unit, t) => timestamp(unit, t),
        Value::Text(s) | Value::Enum(s) => Json::String(s),
        Value::Blob(b) | Value::Geometry(b) => Json::String(hex::encode(b)),
        Value::Date32(d) => NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(i64::from(d))))
            .map_or(Json::Null, |d| Json::String(d.to_string())),
        Value::Time64(unit, t) => {
            let micros = to_micros(unit, t);
            NaiveTime::from_num_seconds_from_midnight_opt(
                (micros / 1_000_000) as u32,
                ((micros % 1_000_000) * 1000) as u32,
            )
            .map_or(Json::Null, |t| Json::String(t.to_string()))
        }
        Value::Interval {
            months,
            days,
            nanos,
        } => {
            json!({"months": months, "days": days, "nanos": nanos})
        }
        Value::List(items) | Value::Array(items) => {
            Json::Array(items.into_iter().map(to_json).collect())
        }
        Value::Struct(fields) => Json::Object(
            fields
                .iter()
                .map(|(k, v)| (k.clone(), to_json(v.clone())))
                .collect(),
        ),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match to_json(k.clone()) {
                        Json::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, to_json(v.clone()))
                })
                .collect(),
        ),
        Value::Union(inner) => to_json(*inner),
        // The enum is non-exhaustive: show future variants rather than fail the query.
        other => Json::String(format!("{other:?}")),
    }
}

fn float(f: f64) -> Json {
    Number::from_f64(f).map_or_else(|| Json::String(f.to_string()), Json::Number)
}

fn to_micros(unit: TimeUnit, t: i64) -> i64 {
    match unit {
        TimeUnit::Second => t.saturating_mul(1_000_000),
        TimeUnit::Millisecond => t.saturating_mul(1000),
        TimeUnit::Microsecond => t,
        TimeUnit::Nanosecond => t / 1000,
    }
}

/// Timestamps are stored in UTC; they print as RFC 3339 with a `Z`.
fn timestamp(unit: TimeUnit, t: i64) -> Json {
    DateTime::from_timestamp_micros(to_micros(unit, t)).map_or(Json::Null, |d| {
        Json::String(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    })
}
