//! `models`: the models the tool can price (built-in table and `--prices` overrides), with the
//! table's date and source, so a user can tell what a cost figure rests on.

use serde_json::{json, Value};

use crate::ai::pricing::{PriceTable, PRICES_AS_OF, PRICES_SOURCE};
use crate::cli::ModelsArgs;
use crate::commands::Ctx;
use crate::error::ExitStatus;
use crate::printer::{OutputFormat, Table};

pub fn run(ctx: &Ctx, args: &ModelsArgs) -> anyhow::Result<ExitStatus> {
    let table = match &args.prices {
        Some(p) => PriceTable::with_overrides(p)?,
        None => PriceTable::builtin(),
    };
    let mut t = Table::new([
        "model",
        "input_usd_per_mtok",
        "cached_input_usd_per_mtok",
        "cache_write_usd_per_mtok",
        "output_usd_per_mtok",
    ]);
    t.push(vec![
        json!("rules"),
        json!(0.0),
        Value::Null,
        Value::Null,
        json!(0.0),
    ]);
    for (model, p) in table.entries() {
        t.push(vec![
            json!(model),
            json!(p.input),
            json!(p.cached_input),
            json!(p.cache_write),
            json!(p.output),
        ]);
    }
    if ctx.printer.format == OutputFormat::Json {
        ctx.printer.json(&json!({
            "prices_as_of": PRICES_AS_OF,
            "source": PRICES_SOURCE,
            "overrides": args.prices,
            "batch_discount": table.batch_discount,
            "models": t.rows.iter().map(|r| json!({
                "model": r[0], "input": r[1], "cached_input": r[2],
                "cache_write": r[3], "output": r[4],
            })).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitStatus::Success);
    }
    ctx.printer.table(&t)?;
    ctx.printer.line(&format!(
        "Prices as of {PRICES_AS_OF} ({PRICES_SOURCE}); batch mode costs {:.0}% less. A model id \
         matches its family's entry only as a dated snapshot (e.g. gpt-4o-mini-2024-07-18); any \
         other model's cost is recorded as unknown. Add prices with --prices FILE.",
        table.batch_discount * 100.0
    ))?;
    Ok(ExitStatus::Success)
}
